"""``--token`` of imagecatcher-client and -simulator (the header: tests/integration)."""

from __future__ import annotations

import pytest

from imagecatcher.cli import client, simulator
from imagecatcher.cli.sender import (
    TOKEN_ENV,
)

TOKEN = "wr1t3-9f8e7d6c5b4a39281706"


def test_token_flag_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """--token wins; without it the variable is used; neither shows in repr."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert client.parse_args(["--acq-dir", "/x"]).token == ""
    monkeypatch.setenv(TOKEN_ENV, "from-the-variable-0123456")
    o = client.parse_args(["--acq-dir", "/x"])
    assert o.token == "from-the-variable-0123456"
    o = client.parse_args(["--acq-dir", "/x", "--token", TOKEN])
    assert o.token == TOKEN and TOKEN not in repr(o)
    s = simulator.parse_args(["-token", TOKEN])
    assert s.token == TOKEN and TOKEN not in repr(s)
    assert simulator.parse_args([]).token == "from-the-variable-0123456"
