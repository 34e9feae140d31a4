"""``imagecatcher-tools``: schema, migrations and calibration import (§10.3).

New form::

    imagecatcher-tools [--config FILE]... db-init|db-reset|db-upgrade|db-downgrade|db-status
    imagecatcher-tools [--config FILE]... import-calibration --calibration FILE [--mask_root URL]

The old command line keeps working: ``-tool db-upgrade -dbhost localhost:3306
-dbname image_capture -dbuser ... -dbpass ... -migrations_dir DIR -n N``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from twisted.internet import task
from twisted.internet.defer import Deferred

from imagecatcher.calibrations import mask_url, parse_calibrations
from imagecatcher.config import Config, ConfigError
from imagecatcher.db.migrations import MigrationError, Migrator
from imagecatcher.db.pool import open_database
from imagecatcher.db.repository import Repository
from imagecatcher.domain import CalibrationError

COMMANDS = (
    "db-init",
    "db-reset",
    "db-upgrade",
    "db-downgrade",
    "db-status",
    "import-calibration",
)
_OLD_TOOLS = ("db-upgrade", "db-downgrade", "import-calibration", "db-init", "db-reset")


class ToolError(Exception):
    """A tool failed; the message is printed and the exit status is 1."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imagecatcher-tools",
        description="Create and migrate the imagecatcher database; import calibrations.",
        allow_abbrev=False,
    )
    p.add_argument("command", nargs="?", choices=COMMANDS, help="what to do")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="configuration file(s) for the database keys; repeatable and"
        " comma-separated (default: ./config.json)",
    )
    p.add_argument(
        "--to", type=int, metavar="N", help="db-upgrade/db-downgrade target id"
    )
    p.add_argument(
        "--calibration", "-calibration", metavar="FILE", help="calibration JSON file"
    )
    p.add_argument(
        "--mask_root",
        "--mask-root",
        "-mask_root",
        default="",
        metavar="URL",
        help="mask URL root for import-calibration",
    )
    p.add_argument(
        "--migrations-dir",
        "-migrations_dir",
        metavar="DIR",
        help="migrations directory (default: the sql/ files shipped with the package)",
    )
    old = p.add_argument_group("old command line (MySQL)")
    old.add_argument(
        "-tool", metavar="NAME", help="db-upgrade, db-downgrade, import-calibration"
    )
    old.add_argument("-dbhost", metavar="HOST:PORT")
    old.add_argument("-dbname")
    old.add_argument("-dbuser")
    old.add_argument("-dbpass")
    old.add_argument(
        "-n", type=int, default=1, help="repeat db-upgrade/db-downgrade N times"
    )
    return p


def _config(args: argparse.Namespace) -> Config:
    old_db = any(
        v is not None
        for v in (args.tool, args.dbhost, args.dbname, args.dbuser, args.dbpass)
    )
    if args.config:
        paths = [
            Path(p.strip()) for v in args.config for p in v.split(",") if p.strip()
        ]
        config = Config.load(paths)
    elif old_db:
        config = Config(
            db_driver="mysql",
            db_host="localhost:3306",
            db_name="image_capture",
            db_user="image_capture",
            db_password="image_capture",
        )
    else:
        config = Config.load([Path("config.json")])
    if old_db:
        config = attrs.evolve(
            config,
            db_driver="mysql" if (args.dbhost or args.tool) else config.db_driver,
            db_host=args.dbhost or config.db_host or "localhost:3306",
            db_name=args.dbname or config.db_name or "image_capture",
            db_user=args.dbuser or config.db_user or "image_capture",
            db_password=args.dbpass or config.db_password or "image_capture",
        )
    return config


async def _run(reactor: Any, args: argparse.Namespace, command: str) -> None:
    config = _config(args)
    if config.db_driver == "sqlite":
        Path(config.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
    db = open_database(config, reactor)
    repo = Repository(db, reactor)
    migrations_dir = Path(args.migrations_dir) if args.migrations_dir else None
    migrator = Migrator(repo, migrations_dir)
    try:
        if command == "db-init":
            applied = await migrator.init()
            print(
                f"Database initialised; migrations applied: {applied or 'none pending'}"
            )
        elif command == "db-reset":
            applied = await migrator.reset()
            print(f"Database reset; migrations applied: {applied or 'none pending'}")
        elif command == "db-upgrade":
            done: list[int] = []
            for _ in range(1 if args.to is not None else max(args.n, 1)):
                done += await migrator.upgrade(args.to)
            print(f"Applied migrations: {done or 'none pending'}")
        elif command == "db-downgrade":
            if args.to is not None:
                done = await migrator.downgrade(to=args.to)
            else:
                done = await migrator.downgrade(steps=max(args.n, 1))
            print(f"Reverted migrations: {done or 'none applied'}")
        elif command == "db-status":
            status = await migrator.status()
            print(f"driver: {config.db_driver}")
            print(f"initialised: {'yes' if status.initialised else 'no'}")
            for m in status.available:
                state = "applied" if m.id in status.applied else "pending"
                print(f"{m.id:>4} {m.name:<30} {state}")
        elif command == "import-calibration":
            await _import_calibration(repo, args)
    finally:
        db.close()


async def _import_calibration(repo: Repository, args: argparse.Namespace) -> None:
    if not args.calibration:
        raise ToolError("import-calibration needs --calibration FILE")
    try:
        body = Path(args.calibration).read_bytes()
    except OSError as e:
        raise ToolError(f"Cannot read calibration file {args.calibration}: {e}") from e
    calibrations = parse_calibrations(body)
    if args.mask_root:  # a mask URL too long for its column fails before any import
        for cal in calibrations:
            mask_url(args.mask_root, cal.temca, cal.camera)
    ids = await repo.import_calibrations(calibrations)
    print(f"Imported {len(ids)} calibration(s) from {args.calibration}")
    failed = 0
    if args.mask_root:
        for cal in calibrations:
            try:
                await repo.set_mask_url(args.mask_root, cal)
            except CalibrationError as e:
                failed += 1
                print(f"Mask URL for {cal.name}: {e}", file=sys.stderr)
    if failed:
        raise ToolError(f"{failed} mask URL update(s) failed")


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command
    if args.tool is not None:
        tool = args.tool.lower()
        if tool == "none":
            print("No tool has been specified", file=sys.stderr)
            sys.exit(1)
        if tool not in _OLD_TOOLS:
            parser.error(f"invalid value for -tool: {args.tool!r}")
        command = tool
    if command is None:
        parser.print_usage(sys.stderr)
        print("No tool has been specified", file=sys.stderr)
        sys.exit(1)

    async def run(reactor: Any) -> None:
        await _run(reactor, args, command)

    try:
        task.react(lambda reactor: _react(reactor, run))
    except SystemExit as e:
        sys.exit(e.code)


def _react(reactor: Any, run: Any) -> Any:
    d: Deferred[None] = Deferred.fromCoroutine(run(reactor))

    def report(failure: Any) -> None:
        err = failure.value
        if isinstance(err, ToolError | ConfigError | MigrationError | CalibrationError):
            print(f"error: {err}", file=sys.stderr)
        else:
            print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1)

    d.addErrback(report)
    return d
