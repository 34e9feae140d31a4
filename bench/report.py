"""The results: machine description, text tables, JSON file.

Every capture and query figure is printed next to its ratio to the ceiling
that bounds it, measured in the same run: MB/s over the loopback ceiling and
over one core's MD5 rate, stored MB/s over the store's write ceiling, query
latencies over the daemon's own HTTP round-trip floor; the capture figures
also next to their targets (:mod:`bench.report_capture`).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench.ceilings import Ceilings
from bench.report_capture import LEGEND, matrix_section, rig_section
from bench.table import num, size, table, times


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


def _header(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    load = " ".join(str(v) for v in m["load_average_at_start"])
    config = results["daemon_config"]
    workers = config.get("WORKERS", "not set (the daemon's default)")
    store = {"file": "file store", "s3": "S3 store on a private SeaweedFS"}
    rss = results["daemon_rss_at_start"]
    return [
        f"imagecatcher benchmarks, {results['mode']} mode"
        + (", rig profile only" if results["rig_only"] else ""),
        f"  date     {m['date']}",
        f"  machine  {m['uname']}; {m['cpu_model']}; {m['cores']} cores;"
        f" {m['memory_gib']} GiB; load average at start {load}",
        f"  software Python {m['python']}; MariaDB {results['mariadb_version']}",
        f"  daemon   {store[results['store']]}; WORKERS {workers};"
        f" CONTENT_STORE_WORKERS {config['CONTENT_STORE_WORKERS']};"
        f" RSS at start {rss['rss_mib']:.0f} MiB over {rss['processes']}"
        " process(es)",
        "",
    ]


def _ceilings(results: dict[str, Any], ceilings: Ceilings) -> list[str]:
    rows = [
        ("loopback TCP, one connection, Python threads", ceilings.loopback_mb_s),
        ("MD5, one core (hashlib, 16 MiB buffer)", ceilings.md5_mb_s),
        ("SHA-1, one core (hashlib, 16 MiB buffer)", ceilings.sha1_mb_s),
        ("store write+fsync, 16 MiB files", ceilings.store_write_mb_s),
    ]
    if ceilings.s3_put_mb_s is not None:
        rows.append(("S3 PUT (SeaweedFS), 16 MiB, one at a time", ceilings.s3_put_mb_s))
    sizes = results["tile_sizes"]
    per_size = ", ".join(
        f"{num(ceilings.hash_tiles_per_s(n))} at {size(n)}"
        f" ({num(1000 / ceilings.hash_tiles_per_s(n))} ms)"
        for n in sizes
    )
    return [
        "Ceilings (measured in this run)",
        *table(
            ("", "MB/s", *(f"tiles/s at {size(n)}" for n in sizes)),
            [
                [label, num(v), *(num(Ceilings.tiles_per_s(v, n)) for n in sizes)]
                for label, v in rows
            ],
        ),
        f"  hash ceiling (MD5 + SHA-1 once per tile, one core), tiles/s (CPU per"
        f" tile): {per_size}",
        f"  meanwhile other processes used"
        f" {results['ceilings_cpu']['other_cpu_pct']:.0f}% of a core, steal"
        f" {results['ceilings_cpu'].get('steal_cpu_pct', 0.0):.0f}%",
        "",
    ]


def _query_row(label: str, q: dict[str, Any], floor_ms: float, extra: str) -> list[str]:
    return [
        label,
        num(q["median_ms"], 2),
        num(q["min_ms"], 2),
        num(q["max_ms"], 2),
        num(q["median_ms"] / floor_ms, 1),
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
            f"{num(1000 / page['median_ms'] * 1000, 0)} rows/s",
        ),
        _query_row(
            f"next-tile?acqid=<uid>&ntiles=100 ({claim['runs']} calls)",
            claim,
            floor,
            f"{num(claim['tiles_per_s'], 0)} tiles/s",
        ),
        _query_row(
            "acquisition/<uid>/tile/<col>/<row>/content, 16 MiB",
            content,
            floor,
            f"{num(content_mb)} MB/s"
            f" = {times(content_mb, ceilings.loopback_mb_s)} x loopback",
        ),
    ]
    return [
        f"Queries: acquisition of {seed['tiles']:,} stored READY tiles on MariaDB"
        f" (inserted in {seed['seconds']:.1f} s), median of"
        f" {q['acquisitions_ready']['runs']} runs after one warm-up",
        *table(("", "median ms", "min ms", "max ms", "x floor", "throughput"), rows),
        f"  floor: HTTP round trip without the database (404) {floor:.2f} ms;"
        f" SQL SELECT 1 over TCP {q['sql_floor_ms']:.2f} ms",
        "",
    ]


def render(results: dict[str, Any]) -> str:
    """The text tables of one run."""
    ceilings = Ceilings(**results["ceilings"])
    lines = [
        *_header(results),
        *_ceilings(results, ceilings),
        *rig_section(results, ceilings),
    ]
    if not results["rig_only"]:
        lines += matrix_section(results, ceilings)
        lines += _queries(results, ceilings)
    return "\n".join([*lines, LEGEND])


def write_json(results: dict[str, Any], directory: Path) -> Path:
    """Write ``results`` to ``<directory>/<timestamp>.json``; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ".json")
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
