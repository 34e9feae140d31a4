"""Log observer factories for ``twistd --logger=...``."""

from __future__ import annotations

import sys

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    formatEventAsClassicLogText,
    jsonFileLogObserver,
)


def json_observer() -> ILogObserver:
    """One JSON object per line on standard output (production)."""
    return jsonFileLogObserver(sys.stdout)


def stderr_observer() -> ILogObserver:
    """Classic text lines on standard error (the old ``-logtostderr``)."""
    return FileLogObserver(sys.stderr, formatEventAsClassicLogText)
