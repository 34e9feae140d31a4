"""The capture tables: rig profile, gateway outage, throughput matrix.

Each measurement gets two rows: one against its target and the ceilings of
the same run, one with where the time went (latencies, spool, CPU).
"""

from __future__ import annotations

import math
from typing import Any

from bench.ceilings import Ceilings
from bench.table import num, share, size, table, times, yes_no
from bench.targets import RSS_LIMIT_MIB, cell_goal, rig_goal, rig_met

LEGEND = """\
Columns: tiles/s = tiles acknowledged per second (matrix: median of the runs,
each listed under runs); MB/s in 10^6 B/s; p50/p99/max = acknowledgement
latency; <=150ms = share of acks within 150 ms; ÷target = tiles/s / target;
0.8xMD5 = one connection's bound, 0.8 x one core's MD5 rate in tiles/s, and
÷bound = tiles/s / that; met = tiles/s >= target, or >= the bound where that is
lower (md5); ÷loop = MB/s / loopback; ÷md5 = MB/s / one core's MD5;
stored÷store = stored MB/s / the store's ceiling (write+fsync, or S3 PUT);
RSS MiB = peak RSS summed over the daemon's process tree, sampled every 100 ms
from the start of the window to the end of the drain (matrix: highest run);
stored/s = tiles whose content was in the store when the window closed, per
second; spooled = acknowledged tiles still in the spool then; drain s = wait
until all were stored; cpu ms/tile = CPU time of the daemon's process tree per
acknowledged tile.  CPU in % of one core: reactor% = the daemon's main thread,
pool% = the rest of its process tree (threads, worker processes), db% =
mariadbd, bench% = load generator, other% = rest of the host, steal% = time
the hypervisor gave this machine's cores to other machines (more than a few
percent: not a quiet machine, figures not comparable); iowait% = host, all
cores; procs = processes in the daemon's tree.
"""

_CEILING_HEADERS = ("MB/s", "÷loop", "÷md5", "stored÷store", "RSS MiB")
_LATENCY_HEADERS = ("p50 ms", "p99 ms", "max ms", "<=150ms")
_TIME_HEADERS = (
    "stored/s",
    "spooled",
    "drain s",
    "err",
    "cpu ms/tile",
    "reactor%",
    "pool%",
    "db%",
    "bench%",
    "other%",
    "steal%",
    "iowait%",
    "procs",
)


def _against_ceilings(run: dict[str, Any], ceilings: Ceilings) -> list[str]:
    return [
        num(run["mb_per_s"]),
        times(run["mb_per_s"], ceilings.loopback_mb_s),
        times(run["mb_per_s"], ceilings.md5_mb_s),
        times(run["stored_mb_per_s"], ceilings.store_mb_s),
        num(run["rss_peak_mib"], 0),
    ]


def _latencies(run: dict[str, Any]) -> list[str]:
    return [
        num(run["ack_p50_ms"]),
        num(run["ack_p99_ms"]),
        num(run["ack_max_ms"]),
        share(run["acks_within_150ms"]),
    ]


def _time_row(run: dict[str, Any]) -> list[str]:
    reactor = run["daemon_main_cpu_pct"]
    cpu_ms = run["daemon_cpu_pct"] * 10 / run["tiles_per_s"] if run["acked"] else None
    return [
        num(run["stored_tiles_per_s"]),
        str(run["spooled_at_end"]),
        num(run["drain_s"]),
        str(run["failed"]),
        num(cpu_ms),
        f"{reactor:.0f}",
        f"{run['daemon_cpu_pct'] - reactor:.0f}",
        f"{run['mariadbd_cpu_pct']:.0f}",
        f"{run['bench_cpu_pct']:.0f}",
        f"{run['other_cpu_pct']:.0f}",
        f"{run.get('steal_cpu_pct', 0.0):.0f}",
        f"{run['host_iowait_pct']:.0f}",
        str(run["daemon_processes"]),
    ]


def _rig_label(run: dict[str, Any]) -> str:
    rigs = run["rigs"]
    label = f"{rigs} rig{'s' if rigs > 1 else ''}, {run['connections']} conns"
    if "outage" in run:
        label += f", S3 down {run['outage']['outage_s']:g} s"
    return label


def rig_section(results: dict[str, Any], ceilings: Ceilings) -> list[str]:
    """The rig profile: against its targets and the ceilings, then the time."""
    runs = results["rig"]
    goals = []
    for r in runs:
        met = rig_met(r["rigs"], r["ack_p99_ms"], r["acks_within_150ms"])
        goals.append(
            [
                _rig_label(r),
                f"{num(r['tiles_per_s'])} of {num(r['target_tiles_per_s'])}",
                *_latencies(r),
                rig_goal(r["rigs"]),
                yes_no(met),
                *_against_ceilings(r, ceilings),
            ]
        )
    headers = ("", "tiles/s", *_LATENCY_HEADERS, "target")
    lines = [
        "Rig profile: 4 cameras x 5,557,452 B every 150 ms per camera, TCP,"
        f" one connection per camera, {runs[0]['window_s']:.0f} s",
        *table((*headers, "met", *_CEILING_HEADERS), goals),
        "",
        *table(
            ("spool and CPU", *_TIME_HEADERS),
            [[_rig_label(r), *_time_row(r)] for r in runs],
        ),
        "",
    ]
    for r in runs:
        if "outage" in r:
            lines += outage_section(r["outage"], r["window_s"])
    return lines


def outage_section(outage: dict[str, Any], window_s: float) -> list[str]:
    """Before, during and after the gateway outage; the spool's drain."""
    rows = [
        [
            phase,
            str(outage[phase]["tiles"]),
            share(outage[phase]["acks_within_150ms"]),
            num(outage[phase]["ack_p99_ms"]),
            num(outage[phase]["ack_max_ms"]),
        ]
        for phase in ("before", "during", "after")
    ]
    drain = outage["spool_drain_s"]
    drained = (
        f"drained {drain:.1f} s after the gateway answered again"
        if drain is not None
        else f"not drained within {outage['drain_limit_s']:.0f} s of the gateway's return"
    )
    lines = [
        f"S3 gateway outage in the {window_s:.0f} s run: killed at"
        f" {outage['down_at_s']:.1f} s, answering again at {outage['up_at_s']:.1f} s"
        f" (its restart took {outage['restart_s']:.1f} s); acks by when the tile was sent",
        *table(("", "tiles", "<=150ms", "p99 ms", "max ms"), rows),
        f"  spool: peak {outage['spool_peak_tiles']} tiles; {drained}",
    ]
    if outage["error"]:
        lines.append(f"  outage error: {outage['error']}")
    return [*lines, ""]


def _cell_label(cell: dict[str, Any]) -> str:
    return (
        f"{cell['protocol'].upper()} {size(cell['tile_bytes'])} x{cell['connections']}"
    )


def _cell_row(cell: dict[str, Any], ceilings: Ceilings) -> list[str]:
    goal = cell_goal(
        cell["protocol"], cell["tile_bytes"], cell["connections"], ceilings.md5_mb_s
    )
    tiles = cell["tiles_per_s"]
    met = yes_no(tiles >= goal.need)
    if goal.need < goal.target:
        met += " (md5)"
    rss_met = ""
    if goal.rss_limit_mib is not None:
        rss_met = yes_no(cell["rss_peak_mib"] < goal.rss_limit_mib)
    bound = math.nan if goal.md5_bound is None else goal.md5_bound
    return [
        _cell_label(cell),
        num(tiles),
        " ".join(num(t) for t in cell["runs_tiles_per_s"]),
        num(goal.go),
        num(goal.target),
        times(tiles, goal.target),
        num(bound),
        times(tiles, bound),
        met,
        *_against_ceilings(cell, ceilings),
        rss_met,
    ]


def matrix_section(results: dict[str, Any], ceilings: Ceilings) -> list[str]:
    """The eight cells: against the Go figures, targets and ceilings; the time."""
    cells = results["matrix"]
    headers = ("", "tiles/s", "runs", "Go", "target", "÷target", "0.8xMD5", "÷bound")
    return [
        "Throughput matrix: back to back, one tile in flight per connection,"
        f" {cells[0]['window_s']:.0f} s per run, {len(cells[0]['runs_tiles_per_s'])}"
        " run(s) per cell",
        *table(
            (*headers, "met", *_CEILING_HEADERS, f"RSS < {RSS_LIMIT_MIB:.0f}"),
            [_cell_row(c, ceilings) for c in cells],
        ),
        "",
        *table(
            ("latency, spool, CPU", *_LATENCY_HEADERS, *_TIME_HEADERS),
            [[_cell_label(c), *_latencies(c), *_time_row(c)] for c in cells],
        ),
        "",
    ]
