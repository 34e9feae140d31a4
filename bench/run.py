"""Run the benchmark suite: ``python -m bench.run --mode short|full [options]``.

Starts a private MariaDB, the store (a directory, or a private SeaweedFS with
``--store s3``) and the daemon on loopback ports, measures the ceilings, the
rig profile (with ``--outage``, the S3 gateway goes down in the middle of
the 1-rig run), the throughput matrix and the query figures (not with
``--rig-only``), prints the tables to stdout and writes the JSON to
``bench/results/<timestamp>.json``.  Progress goes to stderr.  Every process
it starts is stopped on the way out, on errors, Ctrl-C, SIGTERM and its own
overall deadline too.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench import ceilings as ceiling_probe
from bench.capture import (
    MATRIX_SIZES,
    RIG_TILE,
    CaptureEnv,
    rig_profile,
    throughput_matrix,
)
from bench.daemon import DATABASE, Daemon, daemon_settings, prepare, running_daemon
from bench.mariadb import SERVER_OPTIONS, MariaDB, private_mariadb
from bench.outage import DRAIN_LIMIT_S, OutagePlan
from bench.proctree import tree_rss_now
from bench.queries import query_figures
from bench.report import machine, render, write_json
from bench.seed import seed_tiles
from bench.stores import STORES, ContentStore, S3Store, content_store

PROJECT = Path(__file__).resolve().parents[1]
INILOG = PROJECT.parent / "shared" / "fixtures" / "123_logfile.ini"
RESULTS = PROJECT / "bench" / "results"


@dataclass(frozen=True)
class Mode:
    """Durations and sizes of one mode."""

    name: str
    ceiling_s: float  # per loopback / hash ceiling
    store_files: int  # 16 MiB files for the store ceiling
    rig_s: float  # window of each rig measurement
    cell_s: float  # window of each run of a matrix cell
    repetitions: int  # runs per matrix cell
    query_tiles: int
    grid_width: int
    query_runs: int
    next_tile_calls: int
    content_tiles: int
    drain_timeout_s: float
    query_budget_s: float  # per route, once 3 runs are done
    deadline_s: int  # the whole run


MODES = {
    "short": Mode(
        name="short",
        ceiling_s=1.0,
        store_files=8,
        rig_s=10,
        cell_s=3,
        repetitions=1,
        query_tiles=5_000,
        grid_width=100,
        query_runs=5,
        next_tile_calls=5,
        content_tiles=3,
        drain_timeout_s=15,
        query_budget_s=10,
        deadline_s=300,
    ),
    "full": Mode(
        name="full",
        ceiling_s=3.0,
        store_files=32,
        rig_s=60,
        cell_s=15,
        repetitions=3,
        query_tiles=50_000,
        grid_width=250,
        query_runs=11,
        next_tile_calls=10,
        content_tiles=3,
        drain_timeout_s=120,
        query_budget_s=60,
        deadline_s=3600,
    ),
}


@dataclass(frozen=True)
class Options:
    """What to run, from the command line."""

    mode: Mode
    store: str  # "file" or "s3"
    workers: int | None  # WORKERS for the daemon; None: its default
    rig_only: bool
    outage_s: float | None  # S3 gateway outage in the 1-rig run
    keep: bool  # keep the scratch directory

    @property
    def deadline_s(self) -> int:
        """The whole run's deadline, with room for an outage and its drain."""
        extra = 3 * self.outage_s + DRAIN_LIMIT_S if self.outage_s else 0
        return self.mode.deadline_s + int(extra)


def _progress(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)


def _uids() -> Iterator[int]:
    """Acquisition uids unique to this run (the database is fresh anyway)."""
    return itertools.count(int(time.strftime("%y%m%d%H%M")) * 10_000)


def _finite(value: Any) -> Any:
    """NaN and infinities become None so that the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class DeadlinePassed(Exception):
    """The run's own deadline (not an ``OSError``, which waits retry on)."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise DeadlinePassed("the benchmark ran past its deadline")
    raise SystemExit(128 + signum)


def _environment(
    results: dict[str, Any],
    db: MariaDB,
    daemon: Daemon,
    store: ContentStore,
    settings: dict[str, Any],
    mode: Mode,
) -> CaptureEnv:
    """Describe the server side in ``results``; the capture environment."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        results["mariadb_version"] = cur.fetchone()[0]
    results["mariadb_options"] = list(SERVER_OPTIONS)
    results["daemon_config"] = settings
    results["tile_sizes"] = sorted({RIG_TILE, *MATRIX_SIZES})
    rss = tree_rss_now(daemon.pid)
    results["daemon_rss_at_start"] = {
        "rss_mib": rss.peak_mib,
        "processes": rss.processes,
    }
    return CaptureEnv(
        daemon=daemon,
        db=db,
        store=store,
        inilog=INILOG.read_bytes(),
        uids=_uids(),
        processes={"daemon": daemon.pid, "mariadbd": db.pid, "bench": os.getpid()},
        drain_timeout_s=mode.drain_timeout_s,
    )


def _ceilings(results: dict[str, Any], env: CaptureEnv, mode: Mode) -> None:
    _progress("ceilings")
    meter = env.meter()
    ceilings = ceiling_probe.measure(
        env.daemon.workdir / "ceiling-probe",
        mode.ceiling_s,
        mode.store_files,
        env.store.put_ceiling_mb_s,
    )
    results["ceilings"] = ceilings.as_dict()
    results["ceilings_cpu"] = meter.stop()


def _rigs(
    results: dict[str, Any], env: CaptureEnv, mode: Mode, outage: OutagePlan | None
) -> None:
    results["rig"] = []
    for rigs in (1, 2):
        down = outage if rigs == 1 else None
        window = down.window_s(mode.rig_s) if down else mode.rig_s
        note = f", S3 gateway down {down.seconds:g} s in the middle" if down else ""
        _progress(f"rig profile, {rigs} rig(s), {window:.0f} s{note}")
        results["rig"].append(rig_profile(env, mode.rig_s, rigs, down))


def _matrix(results: dict[str, Any], env: CaptureEnv, mode: Mode) -> None:
    _progress(
        f"throughput matrix, 8 cells x {mode.repetitions} run(s) of {mode.cell_s:.0f} s"
    )
    results["matrix"] = throughput_matrix(env, mode.cell_s, mode.repetitions)


def _queries(results: dict[str, Any], env: CaptureEnv, mode: Mode) -> None:
    _progress(f"queries: seeding {mode.query_tiles:,} tiles")
    uid = env.new_acquisition()
    with env.db.connect(DATABASE) as conn:
        seeded = seed_tiles(conn, uid, mode.query_tiles, mode.grid_width)
    results["seed"] = asdict(seeded)
    _progress("queries: timing the routes")
    results["queries"] = query_figures(
        env.daemon,
        env.db,
        uid,
        mode.query_tiles,
        mode.query_runs,
        mode.next_tile_calls,
        mode.content_tiles,
        mode.query_budget_s,
    )


def _outage(options: Options, store: ContentStore) -> OutagePlan | None:
    if options.outage_s is None:
        return None
    if not isinstance(store, S3Store):
        raise ValueError("--outage needs --store s3")
    return OutagePlan(store.weed, options.outage_s)


def run(options: Options, base: Path) -> dict[str, Any]:
    """All measurements ``options`` ask for, with ``base`` as scratch space."""
    mode = options.mode
    results: dict[str, Any] = {
        "mode": mode.name,
        "settings": asdict(mode),
        "store": options.store,
        "rig_only": options.rig_only,
        "outage_s": options.outage_s,
        "machine": machine(),
    }
    with ExitStack() as stack:
        _progress("starting MariaDB")
        db = stack.enter_context(private_mariadb(_mkdir(base / "db")))
        workdir = _mkdir(base / "work")
        if options.store == "s3":
            _progress("starting SeaweedFS")
        store = stack.enter_context(content_store(options.store, workdir))
        settings = daemon_settings(db, workdir, store.settings(), options.workers)
        config = prepare(db, workdir, settings)
        _progress("starting the daemon")
        daemon = stack.enter_context(running_daemon(config, workdir))
        env = _environment(results, db, daemon, store, settings, mode)
        _ceilings(results, env, mode)
        _rigs(results, env, mode, _outage(options, store))
        if not options.rig_only:
            _matrix(results, env, mode)
            _queries(results, env, mode)
        _progress("stopping the daemon, the store and MariaDB")
    return results


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="short")
    parser.add_argument(
        "--store", choices=STORES, default="file", help="the daemon's content store"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="the daemon's WORKERS (default: not set, the daemon's own default)",
    )
    parser.add_argument(
        "--rig-only", action="store_true", help="only the ceilings and the rig profile"
    )
    parser.add_argument(
        "--outage",
        type=float,
        metavar="SECONDS",
        help="with --store s3: kill the S3 gateway for SECONDS in the 1-rig run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = parser.parse_args(argv)
    if args.outage is not None and (args.store != "s3" or args.outage <= 0):
        parser.error("--outage takes a positive number of seconds and --store s3")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return Options(
        MODES[args.mode],
        args.store,
        args.workers,
        args.rig_only,
        args.outage,
        args.keep,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print and save; the exit status."""
    options = _options(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _interrupt)
    signal.alarm(options.deadline_s)
    base = Path(tempfile.mkdtemp(prefix="icbench-"))
    started = time.monotonic()
    try:
        results = run(options, base)
    except BaseException:
        _save_logs(base)
        raise
    finally:
        signal.alarm(0)
        if options.keep:
            _progress(f"scratch kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    results["wall_s"] = time.monotonic() - started
    sys.stdout.write(render(results))
    path = write_json(_finite(results), RESULTS)
    _progress(
        f"results written to {path.relative_to(PROJECT)} ({results['wall_s']:.0f} s)"
    )
    return 0


def _save_logs(base: Path) -> None:
    """Copy the daemon's and MariaDB's logs next to the results after a failure."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = [base / "work" / "daemon.log", base / "db" / "mariadbd.log"]
    logs += sorted((base / "work" / "seaweed").glob("*.log"))
    for log in logs:
        if log.exists():
            target = RESULTS / f"{stamp}-failed-{log.name}"
            shutil.copyfile(log, target)
            _progress(f"kept {log.name} as {target.relative_to(PROJECT)}")


if __name__ == "__main__":
    sys.exit(main())
