"""The configuration keys that limit hostile and sloppy clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagecatcher.config import Config, ConfigError


def load(tmp_path: Path, data: dict[str, object]) -> Config:
    """Load one JSON file with an empty environment."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return Config.load([path], environ={})


def test_limits_default_to_generous_values(tmp_path: Path) -> None:
    """Absent keys: 1000 connections per server, bodies watched over 60 s
    windows, no minimum body rate."""
    config = load(tmp_path, {})
    assert (config.tcp_max_connections, config.http_max_connections) == (1000, 1000)
    assert (config.http_body_timeout, config.http_body_min_rate) == (60.0, 0)


def test_limits_are_read(tmp_path: Path) -> None:
    """Each key sets its field; the body timeout may be fractional."""
    config = load(
        tmp_path,
        {
            "TCP_MAX_CONNECTIONS": 5,
            "HTTP_MAX_CONNECTIONS": 0,
            "HTTP_BODY_TIMEOUT": 1.5,
            "HTTP_BODY_MIN_RATE": 1024,
        },
    )
    assert (config.tcp_max_connections, config.http_max_connections) == (5, 0)
    assert (config.http_body_timeout, config.http_body_min_rate) == (1.5, 1024)


def test_limits_come_from_the_environment(tmp_path: Path) -> None:
    """IMAGECATCHER_<KEY> sets a limit too."""
    path = tmp_path / "c.json"
    path.write_text("{}", encoding="utf-8")
    config = Config.load(
        [path],
        environ={
            "IMAGECATCHER_TCP_MAX_CONNECTIONS": "7",
            "IMAGECATCHER_HTTP_BODY_TIMEOUT": "2",
        },
    )
    assert (config.tcp_max_connections, config.http_body_timeout) == (7, 2.0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TCP_MAX_CONNECTIONS", -1),
        ("HTTP_MAX_CONNECTIONS", "many"),
        ("HTTP_BODY_TIMEOUT", -0.5),
        ("HTTP_BODY_TIMEOUT", "60s"),
        ("HTTP_BODY_MIN_RATE", -10),
    ],
)
def test_bad_limits_are_refused(tmp_path: Path, key: str, value: object) -> None:
    """A negative or non-numeric limit stops the daemon with the key's name."""
    with pytest.raises(ConfigError, match=key):
        load(tmp_path, {key: value})
