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


def test_tcp_connections_default_to_1000(tmp_path: Path) -> None:
    """Absent TCP_MAX_CONNECTIONS: 1000 connections per server."""
    assert load(tmp_path, {}).tcp_max_connections == 1000


def test_tcp_connection_limit_is_read(tmp_path: Path) -> None:
    """TCP_MAX_CONNECTIONS sets the field; 0 is allowed (no limit)."""
    assert load(tmp_path, {"TCP_MAX_CONNECTIONS": 5}).tcp_max_connections == 5
    assert load(tmp_path, {"TCP_MAX_CONNECTIONS": 0}).tcp_max_connections == 0


@pytest.mark.parametrize("value", [-1, "many"])
def test_bad_tcp_connection_limit_is_refused(tmp_path: Path, value: object) -> None:
    """A negative or non-numeric limit stops the daemon with the key's name."""
    with pytest.raises(ConfigError, match="TCP_MAX_CONNECTIONS"):
        load(tmp_path, {"TCP_MAX_CONNECTIONS": value})
