"""API_TOKENS, READ_REQUIRES_TOKEN and TCP_ALLOWED_CLIENTS at configuration load."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from imagecatcher.config import ConfigError
from imagecatcher.tokens import Role
from tests.unit.test_config import load, write_json

WRITE = "w-3f9a1c7e5b2d4f60a8c1"
RENDER = "r-8e2b6d0f4a1c3e57b9d2"


def tokens_json(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """The JSON list form of API_TOKENS."""
    return [{"token": token, "role": role} for token, role in pairs]


def test_access_control_is_off_by_default(tmp_path: Path) -> None:
    """Without the keys there are no tokens, reads are open and any peer connects."""
    config = load(write_json(tmp_path, "a.json", {}))
    assert config.api_tokens is None
    assert config.read_requires_token is False
    assert config.tcp_allowed_clients == ()


def test_token_list_is_read_with_roles(tmp_path: Path) -> None:
    """A JSON list gives each token its role; unknown tokens have none."""
    path = write_json(
        tmp_path,
        "a.json",
        {"API_TOKENS": tokens_json((WRITE, "write"), (RENDER, "render"))},
    )
    tokens = load(path).api_tokens
    assert tokens is not None and len(tokens) == 2
    assert tokens.role_of(WRITE.encode()) is Role.WRITE
    assert tokens.role_of(RENDER.encode()) is Role.RENDER
    assert tokens.role_of(b"x" + WRITE.encode()) is None
    assert tokens.role_of(WRITE.encode()[:-1]) is None


def test_token_file_is_read_with_comments(tmp_path: Path) -> None:
    """A file path reads ``role token`` lines, skipping blanks and comments."""
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# rig 3\nwrite {WRITE}\n\n  render   {RENDER}  \n")
    config = load(write_json(tmp_path, "a.json", {"API_TOKENS": str(token_file)}))
    assert config.api_tokens is not None
    assert config.api_tokens.role_of(RENDER.encode()) is Role.RENDER


def test_token_file_from_the_environment(tmp_path: Path) -> None:
    """IMAGECATCHER_API_TOKENS may name the token file."""
    token_file = tmp_path / "tokens"
    token_file.write_text(f"write {WRITE}\n")
    config = load(
        write_json(tmp_path, "a.json", {}),
        environ={"IMAGECATCHER_API_TOKENS": str(token_file)},
    )
    assert config.api_tokens is not None
    assert config.api_tokens.role_of(WRITE.encode()) is Role.WRITE


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (tokens_json(("short-token", "write")), "too short"),
        (tokens_json((WRITE, "admin")), "unknown role 'admin'"),
        (tokens_json((WRITE + " x", "write")), "characters other than"),
        (tokens_json((WRITE, "write"), (WRITE, "render")), "configured twice"),
        ([], "no tokens"),
        ([{"token": WRITE}], "entry 1"),
        ([{"token": 12345678901234567890, "role": "write"}], "must be strings"),
        ({"token": WRITE, "role": "write"}, "expected a list"),
        ("/nonexistent/tokens", "cannot read token file"),
    ],
)
def test_bad_tokens_are_refused_at_load(
    tmp_path: Path, value: Any, message: str
) -> None:
    """Each bad value fails the load, naming the key, never the token."""
    path = write_json(tmp_path, "a.json", {"API_TOKENS": value})
    with pytest.raises(ConfigError) as raised:
        load(path)
    text = str(raised.value)
    assert "API_TOKENS" in text and message in text
    assert WRITE not in text


def test_bad_line_of_a_token_file_names_the_line(tmp_path: Path) -> None:
    """A malformed line is refused with its number."""
    token_file = tmp_path / "tokens"
    token_file.write_text(f"write {WRITE}\nrender\n")
    path = write_json(tmp_path, "a.json", {"API_TOKENS": str(token_file)})
    with pytest.raises(ConfigError, match="line 2: expected 'role token'"):
        load(path)


def test_tokens_are_not_in_the_repr(tmp_path: Path) -> None:
    """repr(Config) counts the tokens per role but shows none."""
    path = write_json(
        tmp_path,
        "a.json",
        {"API_TOKENS": tokens_json((WRITE, "write"), (RENDER, "render"))},
    )
    text = repr(load(path))
    assert WRITE not in text and RENDER not in text
    assert "TokenTable(write=1, render=1)" in text


def test_read_requires_token_needs_tokens(tmp_path: Path) -> None:
    """READ_REQUIRES_TOKEN without API_TOKENS would lock every read: refused."""
    path = write_json(tmp_path, "a.json", {"READ_REQUIRES_TOKEN": True})
    with pytest.raises(ConfigError, match="API_TOKENS is not set"):
        load(path)
    with_tokens = write_json(
        tmp_path,
        "b.json",
        {"READ_REQUIRES_TOKEN": True, "API_TOKENS": tokens_json((WRITE, "write"))},
    )
    assert load(with_tokens).read_requires_token is True


def test_allowed_clients_take_ipv4_and_ipv6(tmp_path: Path) -> None:
    """CIDR networks of both families, and bare addresses, are read."""
    path = write_json(
        tmp_path,
        "a.json",
        {"TCP_ALLOWED_CLIENTS": ["10.0.0.0/8", "fd00::/8", "192.168.1.7"]},
    )
    assert load(path).tcp_allowed_clients == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.168.1.7/32"),
    )


def test_allowed_clients_from_the_environment(tmp_path: Path) -> None:
    """IMAGECATCHER_TCP_ALLOWED_CLIENTS takes one network or a JSON list."""
    base = write_json(tmp_path, "a.json", {})
    one = load(base, environ={"IMAGECATCHER_TCP_ALLOWED_CLIENTS": "127.0.0.0/8"})
    assert one.tcp_allowed_clients == (ipaddress.ip_network("127.0.0.0/8"),)
    many = load(
        base, environ={"IMAGECATCHER_TCP_ALLOWED_CLIENTS": json.dumps(["::1/128"])}
    )
    assert many.tcp_allowed_clients == (ipaddress.ip_network("::1/128"),)


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "300.0.0.0/8", "rig-3", "fd00::/129"])
def test_bad_networks_are_refused(tmp_path: Path, bad: str) -> None:
    """A network with host bits, a bad address or prefix fails the load."""
    path = write_json(tmp_path, "a.json", {"TCP_ALLOWED_CLIENTS": [bad]})
    with pytest.raises(ConfigError, match="TCP_ALLOWED_CLIENTS: invalid network"):
        load(path)
