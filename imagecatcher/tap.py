"""The ``twistd imagecatcher`` plugin's options and service maker."""

from __future__ import annotations

from pathlib import Path

from twisted.application.service import IService
from twisted.python import usage

from imagecatcher.config import Config, ConfigError
from imagecatcher.db.pool import DatabaseUnavailable, check_database
from imagecatcher.service import build_service


class Options(usage.Options):
    """``twistd imagecatcher`` options (CONTRACT §10.2)."""

    synopsis = "--config FILE [--config FILE...] [--httpserver ADDR] [--tcpserver ADDR]"
    longdesc = (
        "Capture TEMCA tiles over HTTP and raw TCP.  ADDR is a Twisted endpoint"
        " string (tcp:5001:interface=127.0.0.1) or the old :5001 / host:5001 form;"
        " leave one out to run without that server."
    )
    optParameters = [
        ["httpserver", None, None, "HTTP endpoint, e.g. tcp:5001 or :5001."],
        ["tcpserver", None, None, "Raw TCP tile endpoint, e.g. tcp:5002 or :5002."],
    ]

    def opt_config(self, value: str) -> None:
        """Configuration file(s); repeatable and comma-separated; later files win."""
        self.setdefault("config", []).extend(
            p.strip() for p in value.split(",") if p.strip()
        )

    def postOptions(self) -> None:
        try:
            config = Config.load(
                [Path(p) for p in self.get("config", [])],
                http=self["httpserver"],
                tcp=self["tcpserver"],
            )
            check_database(config)
        except ConfigError as e:
            raise usage.UsageError(f"Error reading the configuration(s): {e}") from e
        except DatabaseUnavailable as e:
            raise usage.UsageError(f"Database unavailable: {e}") from e
        self["parsed"] = config


def makeService(options: Options) -> IService:
    """Build the daemon's service tree on the global reactor."""
    from twisted.internet import reactor

    return build_service(options["parsed"], reactor)
