"""Unit tests for the WORKERS and SO_REUSEPORT keys and the --workers option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twisted.python import usage

from imagecatcher.config import Config, ConfigError
from imagecatcher.tap import Options


def _load(tmp_path: Path, data: dict[str, object], **environ: str) -> Config:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    return Config.load([path], environ=environ)


def test_defaults_are_one_worker_and_reuseport_on(tmp_path: Path) -> None:
    """Absent keys: one worker, SO_REUSEPORT set."""
    config = _load(tmp_path, {})
    assert config.workers == 1 and config.so_reuseport is True


def test_workers_takes_a_count(tmp_path: Path) -> None:
    """WORKERS is a JSON number (fractions truncated); 0 is allowed (one per CPU)."""
    assert _load(tmp_path, {"WORKERS": 4}).workers == 4
    assert _load(tmp_path, {"WORKERS": 2.9}).workers == 2
    assert _load(tmp_path, {"WORKERS": 0}).workers == 0
    assert _load(tmp_path, {}, IMAGECATCHER_WORKERS="3").workers == 3


@pytest.mark.parametrize("value", [-1, "2", True])
def test_bad_worker_counts_are_refused(tmp_path: Path, value: object) -> None:
    """A negative or non-numeric WORKERS names the key."""
    with pytest.raises(ConfigError, match="WORKERS"):
        _load(tmp_path, {"WORKERS": value})


def test_so_reuseport_is_a_boolean(tmp_path: Path) -> None:
    """SO_REUSEPORT takes true or false only."""
    assert _load(tmp_path, {"SO_REUSEPORT": False}).so_reuseport is False
    with pytest.raises(ConfigError, match="SO_REUSEPORT"):
        _load(tmp_path, {"SO_REUSEPORT": 0})


def test_workers_option_is_documented() -> None:
    """twistd imagecatcher --help lists --workers."""
    assert "--workers=" in str(Options())


def test_negative_workers_option_is_a_usage_error() -> None:
    """--workers -1 is refused before anything else is read."""
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--workers", "-1"])
