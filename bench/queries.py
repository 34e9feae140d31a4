"""Query figures (issue 4) on a large acquisition, and their floors.

Every route is timed over one keep-alive connection, several times, and the
median is kept (the first call is a warm-up and not counted).  A figure's
floor is the median round trip of a request the daemon answers without the
database (an unknown path, 404); the SQL floor is ``SELECT 1`` over TCP as the
daemon's user.  The content route is read into a preallocated buffer and
given in MB/s, to be compared with the loopback ceiling.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pymysql

from bench.daemon import DATABASE, Daemon
from bench.httpclient import Response
from bench.mariadb import MariaDB
from bench.stats import MB, MiB, median
from bench.tiles import TcpSender, Tile, TileImage

CONTENT_TILE = 16 * MiB
CONTENT_COL = 9000  #: content tiles sit outside the seeded grid


def _timed(
    call: Callable[[], Response],
    runs: int,
    budget_s: float,
    check: Callable[[Response], None],
) -> list[float]:
    """Seconds of up to ``runs`` calls after one warm-up, within ``budget_s``."""
    check(call())
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs and (
        len(times) < 3 or time.perf_counter() - start < budget_s
    ):
        t0 = time.perf_counter()
        resp = call()
        times.append(time.perf_counter() - t0)
        check(resp)
    return times


def _status(expected: int) -> Callable[[Response], None]:
    def check(resp: Response) -> None:
        if resp.status != expected:
            raise RuntimeError(f"HTTP {resp.status} (wanted {expected}): {resp.text()}")

    return check


def _json_check(
    predicate: Callable[[Any], bool], what: str
) -> Callable[[Response], None]:
    def check(resp: Response) -> None:
        _status(200)(resp)
        if not predicate(json.loads(bytes(resp.body))):
            raise RuntimeError(f"unexpected answer ({what}): {resp.text()}")

    return check


def _summary(times: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "runs": len(times),
        "median_ms": median(times) * 1000,
        "min_ms": min(times) * 1000,
        "max_ms": max(times) * 1000,
        **extra,
    }


def sql_floor_ms(db: MariaDB, runs: int) -> float:
    """Median ``SELECT 1`` round trip over TCP as the daemon's user, in ms."""
    conn = pymysql.connect(
        host="127.0.0.1",
        port=db.port,
        user=db.user,
        password=db.password,
        database=DATABASE,
        autocommit=True,
    )
    try:
        times = []
        with conn.cursor() as cur:
            for _ in range(runs):
                t0 = time.perf_counter()
                cur.execute("SELECT 1")
                cur.fetchall()
                times.append(time.perf_counter() - t0)
        return median(times) * 1000
    finally:
        conn.close()


def capture_content_tiles(daemon: Daemon, uid: int, count: int) -> list[Tile]:
    """Capture ``count`` 16 MiB tiles over TCP outside the seeded grid."""
    image = TileImage(CONTENT_TILE)
    sender = TcpSender("127.0.0.1", daemon.tcp_port, uid, image, 120.0)
    tiles = []
    try:
        for k in range(count):
            tail = image.tail(uid, 0, k)
            tile = Tile(CONTENT_COL + k, CONTENT_COL, 0, tail, image.md5(tail))
            error = sender.send(tile)
            if error:
                raise RuntimeError(f"content tile: {error}")
            tiles.append(tile)
    finally:
        sender.close()
    return tiles


def query_figures(
    daemon: Daemon,
    db: MariaDB,
    uid: int,
    tiles: int,
    runs: int,
    next_tile_calls: int,
    content_tiles: int,
    budget_s: float,
) -> dict[str, Any]:
    """Time the query routes of issue 4 on acquisition ``uid`` (``tiles`` seeded)."""
    conn = daemon.http(timeout=120)
    try:
        figures: dict[str, Any] = {"tiles": tiles}
        floor = _timed(
            lambda: conn.request("GET", "/service/v1/no-such-route"),
            max(runs, 20),
            budget_s,
            _status(404),
        )
        figures["http_floor_ms"] = median(floor) * 1000
        figures["sql_floor_ms"] = sql_floor_ms(db, max(runs, 20))

        path = "/service/v1/acquisitions?exists-tile-in-state=READY"
        times = _timed(
            lambda: conn.request("GET", path),
            runs,
            budget_s,
            _json_check(
                lambda b: uid in [a["AcqUID"] for a in b["acquisitions"]], "acq"
            ),
        )
        figures["acquisitions_ready"] = _summary(times, route=f"GET {path}")

        offset = tiles * 2 // 5  # 20,000 of 50,000
        path = f"/service/v1/acquisition/{uid}/tiles?length=1000&offset={offset}"
        times = _timed(
            lambda: conn.request("GET", path),
            runs,
            budget_s,
            _json_check(lambda b: b["n_returned_tiles_for_all_acqs"] == 1000, "page"),
        )
        figures["tiles_page"] = _summary(times, route=f"GET {path}", rows=1000)

        path = f"/service/v1/next-tile?acqid={uid}&ntiles=100"
        times = _timed(
            lambda: conn.request("POST", path),
            next_tile_calls,
            budget_s,
            _json_check(lambda b: b["nTilesFound"] == 100, "next-tile"),
        )
        figures["next_tile"] = _summary(
            times,
            route=f"POST {path}",
            tiles_per_s=100 / median(times),
        )

        captured = capture_content_tiles(daemon, uid, content_tiles)
        buf = bytearray(CONTENT_TILE)
        targets = [
            f"/service/v1/acquisition/{uid}/tile/{t.col}/{t.row}/content"
            for t in captured
        ]
        served = iter(range(1 << 30))

        def get_content() -> Response:
            return conn.request("GET", targets[next(served) % len(targets)], into=buf)

        def full_tile(resp: Response) -> None:
            _status(200)(resp)
            if len(resp.body) != CONTENT_TILE:
                raise RuntimeError(f"content: {len(resp.body)} bytes")

        times = _timed(get_content, runs, budget_s, full_tile)
        figures["content"] = _summary(
            times,
            route=f"GET /service/v1/acquisition/{uid}/tile/<col>/<row>/content",
            tile_bytes=CONTENT_TILE,
            mb_per_s=CONTENT_TILE / MB / median(times),
        )
        return figures
    finally:
        conn.close()
