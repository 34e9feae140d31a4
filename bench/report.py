"""The results: machine description, text table, JSON file.

Every capture and query figure is printed next to its ratio to the ceiling
that bounds it: MB/s over the loopback ceiling, stored MB/s over the store's
write ceiling, tiles/s over what one core can hash (MD5 + SHA-1 per tile),
query latencies over the daemon's own HTTP round-trip floor.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.ceilings import Ceilings
from bench.stats import MiB, ratio

LEGEND = """\
Columns: MB/s in 10^6 B/s; p50/p99/max = acknowledgement latency; <=150ms = share
of acks within 150 ms; stored/s = tiles whose content is in the store at the end
of the window, per second; spooled = acknowledged tiles still in the spool then;
÷loop = MB/s / loopback; stored÷store = stored MB/s / store write; tiles÷hash =
tiles/s / hash ceiling; cpu ms/tile = daemon CPU time per acknowledged tile.
CPU in % of one core: reactor% = daemon main thread, pool% = daemon's other
threads (hashing, file I/O, DB calls), db% = mariadbd, bench% = load generator,
other% = rest of the host; iowait% = host, all cores.
"""

_LOAD_HEADERS = (
    "",
    "tiles/s",
    "MB/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "<=150ms",
    "stored/s",
    "spooled",
    "err",
    "MB/s÷loop",
    "stored÷store",
    "tiles÷hash",
    "cpu ms/tile",
    "reactor%",
    "pool%",
    "db%",
    "bench%",
    "other%",
    "iowait%",
)


def machine() -> dict[str, Any]:
    """Date, ``uname -srm``, CPU model, cores, memory and load of this host."""
    u = os.uname()
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "uname": f"{u.sysname} {u.release} {u.machine}",
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(value: float, ceiling: float) -> str:
    r = ratio(value, ceiling)
    if math.isnan(r):
        return "-"
    return f"{r:.3f}" if r < 0.1 else f"{r:.2f}"


def _size(nbytes: int) -> str:
    if nbytes % MiB == 0:
        return f"{nbytes // MiB} MiB"
    return f"{nbytes / MiB:.1f} MiB"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    everything = [headers, *rows]
    widths = [max(len(r[i]) for r in everything) for i in range(len(headers))]
    lines = []
    for r in everything:
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _header(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    load = " ".join(str(v) for v in m["load_average_at_start"])
    workers = results["daemon_config"]["CONTENT_STORE_WORKERS"]
    return [
        f"imagecatcher benchmarks, {results['mode']} mode",
        f"  date     {m['date']}",
        f"  machine  {m['uname']}; {m['cpu_model']}; {m['cores']} cores;"
        f" {m['memory_gib']} GiB; load average at start {load}",
        f"  software Python {m['python']}; MariaDB {results['mariadb_version']};"
        f" file store, CONTENT_STORE_WORKERS {workers}",
        "",
    ]


def _ceilings(results: dict[str, Any], ceilings: Ceilings) -> list[str]:
    rows = [
        ("loopback TCP, one connection, Python threads", ceilings.loopback_mb_s),
        ("MD5, one core (hashlib, 16 MiB buffer)", ceilings.md5_mb_s),
        ("SHA-1, one core (hashlib, 16 MiB buffer)", ceilings.sha1_mb_s),
        ("store write+fsync, 16 MiB files", ceilings.store_write_mb_s),
    ]
    per_size = ", ".join(
        f"{_num(ceilings.hash_tiles_per_s(size))} at {_size(size)}"
        f" ({_num(1000 / ceilings.hash_tiles_per_s(size))} ms)"
        for size in results["tile_sizes"]
    )
    return [
        "Ceilings (measured in this run)",
        *_table(("", "MB/s"), [(label, _num(v)) for label, v in rows]),
        f"  hash ceiling (MD5 + SHA-1 once per tile, one core), tiles/s (CPU per"
        f" tile): {per_size}",
        f"  meanwhile other processes used"
        f" {results['ceilings_cpu']['other_cpu_pct']:.0f}% of a core",
        "",
    ]


def _load_row(label: str, cell: dict[str, Any], ceilings: Ceilings) -> list[str]:
    tiles = _num(cell["tiles_per_s"])
    if "target_tiles_per_s" in cell:
        tiles += f" of {_num(cell['target_tiles_per_s'])}"
    reactor = cell["daemon_main_cpu_pct"]
    return [
        label,
        tiles,
        _num(cell["mb_per_s"]),
        _num(cell["ack_p50_ms"]),
        _num(cell["ack_p99_ms"]),
        _num(cell["ack_max_ms"]),
        f"{100 * cell['acks_within_150ms']:.1f}%",
        _num(cell["stored_tiles_per_s"]),
        str(cell["spooled_at_end"]),
        str(cell["failed"]),
        _ratio(cell["mb_per_s"], ceilings.loopback_mb_s),
        _ratio(cell["stored_mb_per_s"], ceilings.store_write_mb_s),
        _ratio(cell["tiles_per_s"], ceilings.hash_tiles_per_s(cell["tile_bytes"])),
        _num(
            cell["daemon_cpu_pct"] * 10 / cell["tiles_per_s"] if cell["acked"] else None
        ),
        f"{reactor:.0f}",
        f"{cell['daemon_cpu_pct'] - reactor:.0f}",
        f"{cell['mariadbd_cpu_pct']:.0f}",
        f"{cell['bench_cpu_pct']:.0f}",
        f"{cell['other_cpu_pct']:.0f}",
        f"{cell['host_iowait_pct']:.0f}",
    ]


def _rig(results: dict[str, Any], ceilings: Ceilings) -> list[str]:
    rig = results["rig"]
    rows = [
        _load_row(
            f"{r['rigs']} rig{'s' if r['rigs'] > 1 else ''}, {r['connections']} conns",
            r,
            ceilings,
        )
        for r in rig
    ]
    return [
        "Rig profile: 4 cameras x 5,557,452 B every 150 ms per camera, TCP,"
        f" one connection per camera, {rig[0]['window_s']:.0f} s",
        *_table(_LOAD_HEADERS, rows),
        "",
    ]


def _matrix(results: dict[str, Any], ceilings: Ceilings) -> list[str]:
    cells = results["matrix"]
    rows = [
        _load_row(
            f"{c['protocol'].upper()} {_size(c['tile_bytes'])} x{c['connections']}",
            c,
            ceilings,
        )
        for c in cells
    ]
    return [
        "Throughput matrix: back to back, one tile in flight per connection,"
        f" {cells[0]['window_s']:.0f} s per cell",
        *_table(_LOAD_HEADERS, rows),
        "",
    ]


def _query_row(label: str, q: dict[str, Any], floor_ms: float, extra: str) -> list[str]:
    return [
        label,
        _num(q["median_ms"], 2),
        _num(q["min_ms"], 2),
        _num(q["max_ms"], 2),
        _num(q["median_ms"] / floor_ms, 1),
        extra,
    ]


def _queries(results: dict[str, Any], ceilings: Ceilings) -> list[str]:
    q, seed = results["queries"], results["seed"]
    floor = q["http_floor_ms"]
    page, claim, content = q["tiles_page"], q["next_tile"], q["content"]
    offset = page["route"].rsplit("=", 1)[1]
    content_mb = content["mb_per_s"]
    rows = [
        _query_row(
            "acquisitions?exists-tile-in-state=READY",
            q["acquisitions_ready"],
            floor,
            "",
        ),
        _query_row(
            f"acquisition/<uid>/tiles?length=1000&offset={offset}",
            page,
            floor,
            f"{_num(1000 / page['median_ms'] * 1000, 0)} rows/s",
        ),
        _query_row(
            f"next-tile?acqid=<uid>&ntiles=100 ({claim['runs']} calls)",
            claim,
            floor,
            f"{_num(claim['tiles_per_s'], 0)} tiles/s",
        ),
        _query_row(
            "acquisition/<uid>/tile/<col>/<row>/content, 16 MiB",
            content,
            floor,
            f"{_num(content_mb)} MB/s"
            f" = {_ratio(content_mb, ceilings.loopback_mb_s)} x loopback",
        ),
    ]
    return [
        f"Queries: acquisition of {seed['tiles']:,} stored READY tiles on MariaDB"
        f" (inserted in {seed['seconds']:.1f} s), median of"
        f" {q['acquisitions_ready']['runs']} runs after one warm-up",
        *_table(("", "median ms", "min ms", "max ms", "x floor", "throughput"), rows),
        f"  floor: HTTP round trip without the database (404) {floor:.2f} ms;"
        f" SQL SELECT 1 over TCP {q['sql_floor_ms']:.2f} ms",
        "",
    ]


def render(results: dict[str, Any]) -> str:
    """The text table of one run."""
    ceilings = Ceilings(**results["ceilings"])
    return "\n".join(
        [
            *_header(results),
            *_ceilings(results, ceilings),
            *_rig(results, ceilings),
            *_matrix(results, ceilings),
            *_queries(results, ceilings),
            LEGEND,
        ]
    )


def write_json(results: dict[str, Any], directory: Path) -> Path:
    """Write ``results`` to ``<directory>/<timestamp>.json``; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ".json")
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
