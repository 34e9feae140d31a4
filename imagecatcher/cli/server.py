"""``imagecatcher``: the old server command line (§10.2), run through twistd.

The lab's start scripts call ``imagecatcher -config config.json -config
config.local.json -httpserver :5001 -tcpserver :5002 -logtostderr``.  This
translates that into ``twistd -n imagecatcher ...`` so both run the same
service the same way, in the foreground.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from twisted.scripts import twistd


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imagecatcher",
        description="Capture TEMCA tiles over HTTP and raw TCP (old command line).",
        allow_abbrev=False,
    )
    p.add_argument(
        "-config",
        action="append",
        default=[],
        metavar="FILES",
        help="configuration file(s); repeatable and comma-separated (required)",
    )
    p.add_argument(
        "-httpserver",
        default="",
        metavar="ADDR",
        help="HTTP listen address, e.g. :5001; empty = no HTTP server",
    )
    p.add_argument(
        "-tcpserver",
        default="",
        metavar="ADDR",
        help="raw TCP listen address, e.g. :5002; empty = no TCP server",
    )
    p.add_argument("-cpuprofile", metavar="FILE", help="write a cProfile profile here")
    p.add_argument("-logtostderr", action="store_true", help="log to standard error")
    p.add_argument("-alsologtostderr", action="store_true", help="same as -logtostderr")
    p.add_argument(
        "-log_dir",
        metavar="DIR",
        help="write imagecatcher.log in DIR (created if missing)",
    )
    p.add_argument("-v", type=int, default=0, help="accepted for compatibility")
    for ignored in (
        "-memprofile",
        "-tracefile",
        "-stderrthreshold",
        "-vmodule",
        "-log_backtrace_at",
    ):
        p.add_argument(
            ignored, metavar="VALUE", help="accepted for compatibility; ignored"
        )
    return p


def twistd_argv(argv: Sequence[str]) -> list[str]:
    """The twistd command line equivalent to an old one; exits on bad flags."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.config:
        parser.print_help(sys.stderr)
        sys.exit(1)
    out = ["twistd", "--nodaemon", "--pidfile="]
    if args.log_dir and not (args.logtostderr or args.alsologtostderr):
        from pathlib import Path

        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        out.append(f"--logfile={Path(args.log_dir) / 'imagecatcher.log'}")
    else:
        out.append("--logger=imagecatcher.logs.stderr_observer")
    if args.cpuprofile:
        out += [f"--profile={args.cpuprofile}", "--profiler=cprofile", "--savestats"]
    out.append("imagecatcher")
    for value in args.config:
        out.append(f"--config={value}")
    if args.httpserver:
        out.append(f"--httpserver={args.httpserver}")
    if args.tcpserver:
        out.append(f"--tcpserver={args.tcpserver}")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    sys.argv = twistd_argv(sys.argv[1:] if argv is None else argv)
    twistd.run()
