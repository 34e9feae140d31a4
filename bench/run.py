"""Run the benchmark suite: ``python -m bench.run --mode short|full``.

Starts a private MariaDB and the daemon on loopback ports, measures the
ceilings, the rig profile, the throughput matrix and the query figures, prints
the table to stdout and writes the JSON to ``bench/results/<timestamp>.json``.
Progress goes to stderr.  Every process it starts is stopped on the way out,
on errors, Ctrl-C, SIGTERM and its own overall deadline too.
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
from bench.queries import query_figures
from bench.report import machine, render, write_json
from bench.seed import seed_tiles

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
    cell_s: float  # window of each matrix cell
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
        query_tiles=50_000,
        grid_width=250,
        query_runs=11,
        next_tile_calls=10,
        content_tiles=3,
        drain_timeout_s=120,
        query_budget_s=60,
        deadline_s=3000,
    ),
}


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


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise TimeoutError("the benchmark ran past its deadline")
    raise SystemExit(128 + signum)


def _environment(
    results: dict[str, Any], db: MariaDB, daemon: Daemon, mode: Mode
) -> CaptureEnv:
    """Describe the server side in ``results``; the capture environment."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        results["mariadb_version"] = cur.fetchone()[0]
    results["mariadb_options"] = list(SERVER_OPTIONS)
    results["daemon_config"] = daemon_settings(db, daemon.objects.parent)
    results["tile_sizes"] = sorted({RIG_TILE, *MATRIX_SIZES})
    return CaptureEnv(
        daemon=daemon,
        db=db,
        inilog=INILOG.read_bytes(),
        uids=_uids(),
        processes={"daemon": daemon.pid, "mariadbd": db.pid, "bench": os.getpid()},
        drain_timeout_s=mode.drain_timeout_s,
    )


def _ceilings(results: dict[str, Any], env: CaptureEnv, mode: Mode) -> None:
    _progress("ceilings")
    meter = env.meter()
    ceilings = ceiling_probe.measure(
        env.daemon.objects / "acquisitions" / "ceiling-probe",
        mode.ceiling_s,
        mode.store_files,
    )
    results["ceilings"] = ceilings.as_dict()
    results["ceilings_cpu"] = meter.stop()


def _captures(results: dict[str, Any], env: CaptureEnv, mode: Mode) -> None:
    results["rig"] = []
    for rigs in (1, 2):
        _progress(f"rig profile, {rigs} rig(s), {mode.rig_s:.0f} s")
        results["rig"].append(rig_profile(env, mode.rig_s, rigs))
    _progress(f"throughput matrix, 8 cells of {mode.cell_s:.0f} s")
    results["matrix"] = throughput_matrix(env, mode.cell_s)


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


def run(mode: Mode, base: Path) -> dict[str, Any]:
    """All measurements of one mode, with ``base`` as scratch space."""
    results: dict[str, Any] = {"mode": mode.name, "settings": asdict(mode)}
    results["machine"] = machine()
    with ExitStack() as stack:
        _progress("starting MariaDB")
        db = stack.enter_context(private_mariadb(_mkdir(base / "db")))
        workdir = _mkdir(base / "work")
        config = prepare(db, workdir)
        _progress("starting the daemon")
        daemon = stack.enter_context(running_daemon(config, workdir))
        env = _environment(results, db, daemon, mode)
        _ceilings(results, env, mode)
        _captures(results, env, mode)
        _queries(results, env, mode)
        _progress("stopping the daemon and MariaDB")
    return results


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print and save; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="short")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = parser.parse_args(argv)
    mode = MODES[args.mode]
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _interrupt)
    signal.alarm(mode.deadline_s)
    base = Path(tempfile.mkdtemp(prefix="icbench-"))
    started = time.monotonic()
    try:
        results = run(mode, base)
    except BaseException:
        _save_logs(base)
        raise
    finally:
        signal.alarm(0)
        if args.keep:
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
    for log in (base / "work" / "daemon.log", base / "db" / "mariadbd.log"):
        if log.exists():
            target = RESULTS / f"{stamp}-failed-{log.name}"
            shutil.copyfile(log, target)
            _progress(f"kept {log.name} as {target.relative_to(PROJECT)}")


if __name__ == "__main__":
    sys.exit(main())
