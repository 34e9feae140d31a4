"""Benchmarks of the live pages (issue 11): ``python -m bench.live [options]``.

Two figures, each on a private MariaDB and the daemon on loopback ports
(file store under a temporary directory):

``page``
    An acquisition of ``--tiles`` (default 50,000) stored tiles, seeded in SQL
    (:mod:`bench.seed`).  The acquisition page's document
    (``/service/v1/acquisition/<uid>/live``) is fetched ``--runs`` times,
    each after the daemon's one-second reuse of a built document has run out,
    so each is a real refresh; for each, the SELECT statements the server ran
    (``Com_select`` of the global status, the benchmark's own reads taken
    off) and the time.  ``EXPLAIN`` of the page's query shows which index
    every table is read through.  With ``--browser`` (Debian's chromium and
    chromedriver), the time from opening the page to its first drawn mosaic.

``capture``
    The capture rate of ``--connections`` TCP senders of real 16-bit TIFF
    tiles (``--tile-pixels`` square) during ``--window`` seconds, first
    alone, then while ``--browsers`` threads browse as a person would, only
    faster: the page's document every second, and previews of the tiles just
    captured (each preview a cache miss: a different tile every time) as fast
    as they are answered, plus a mosaic image every ten seconds.

Results go to stdout as JSON (and to ``--out`` if given).  ``--quick``
shrinks everything to a smoke test of the script itself.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from bench.daemon import DATABASE, Daemon, daemon_settings, prepare, running_daemon
from bench.mariadb import MariaDB, private_mariadb
from bench.seed import seed_tiles
from bench.stats import median
from bench.tiles import TAIL, TcpSender, Tile, TileImage
from imagecatcher.db.live import MOSAIC_SQL

PROJECT = Path(__file__).resolve().parents[1]
INILOG = PROJECT.parent / "shared" / "fixtures" / "123_logfile.ini"
FIRST_UID = 170301120000


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def _rig(base: Path) -> Iterator[tuple[MariaDB, Daemon]]:
    with private_mariadb(base / "mariadb") as db:
        work = base / "daemon"
        work.mkdir(parents=True)
        (work / "objects").mkdir()
        settings = daemon_settings(
            db, work, {"CONTENT_STORE_URL": f"file://{work / 'objects'}"}, None
        )
        config = prepare(db, work, settings)
        with running_daemon(config, work) as daemon:
            yield db, daemon


def _selects(db: MariaDB) -> int:
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
            return int(cur.fetchone()[1])
    finally:
        conn.close()


def _params(uid: int) -> tuple[Any, ...]:
    """The page query's parameters as the daemon binds them (see db/live.py)."""
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
    return since, uid, uid


def _explain(db: MariaDB, uid: int) -> list[dict[str, Any]]:
    conn = db.connect(DATABASE)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN " + MOSAIC_SQL, _params(uid))
            names = [d[0] for d in cur.description]
            return [
                {k: v for k, v in zip(names, row, strict=True) if k in _PLAN}
                for row in cur.fetchall()
            ]
    finally:
        conn.close()


_PLAN = ("table", "type", "key", "rows", "Extra")


def _sql_ms(db: MariaDB, uid: int, runs: int) -> float:
    """Median milliseconds of the page's query and fetch alone (pymysql)."""
    conn = db.connect(DATABASE)
    try:
        times = []
        with conn.cursor() as cur:
            for _ in range(runs):
                t0 = time.perf_counter()
                cur.execute(MOSAIC_SQL, _params(uid))
                cur.fetchall()
                times.append(time.perf_counter() - t0)
        return 1000 * median(times)
    finally:
        conn.close()


def _browser_first_draw(daemon: Daemon, uid: int) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
        options=options,
    )
    try:
        url = f"http://127.0.0.1:{daemon.http_port}/ui/acquisition/{uid}"
        driver.get(f"http://127.0.0.1:{daemon.http_port}/ui/static/live.css")
        time.sleep(1.2)  # the document built by nobody yet
        start = time.perf_counter()
        driver.get(url)
        WebDriverWait(driver, 60, poll_frequency=0.02).until(
            lambda d: d.execute_script("return document.body.dataset.refreshes")
        )
        return time.perf_counter() - start
    finally:
        driver.quit()


def page_figures(base: Path, tiles: int, runs: int, browser: bool) -> dict[str, Any]:
    """The acquisition page of ``tiles`` tiles: time and queries per refresh."""
    with _rig(base) as (db, daemon):
        uid = daemon.start_acquisition(FIRST_UID, INILOG.read_bytes())
        conn = db.connect(DATABASE)
        try:
            seeded = seed_tiles(conn, uid, tiles, width=250)
        finally:
            conn.close()
        _log(f"seeded {seeded.tiles} tiles in {seeded.seconds:.1f} s")
        http = daemon.http()
        path = f"/service/v1/acquisition/{uid}/live"
        times: list[float] = []
        queries: list[int] = []
        size = 0
        first = _selects(db)
        overhead = _selects(db) - first  # what reading the counter itself costs
        for _ in range(runs + 1):  # the first is a warm-up
            time.sleep(1.1)  # past the reuse of the last document
            before = _selects(db)
            t0 = time.perf_counter()
            resp = http.request("GET", path)
            elapsed = time.perf_counter() - t0
            after = _selects(db)
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status} {resp.text()}")
            doc = json.loads(bytes(resp.body))
            if len(doc["tiles"]) != 6 * tiles:
                raise RuntimeError(f"{len(doc['tiles']) // 6} tiles, not {tiles}")
            size = len(resp.body)
            times.append(elapsed)
            queries.append(after - before - overhead)
        overview_ms: list[float] = []
        overview_selects: list[int] = []
        for _ in range(runs):
            time.sleep(1.1)
            before = _selects(db)
            t0 = time.perf_counter()
            resp = http.request("GET", "/service/v1/live/acquisitions")
            overview_ms.append(1000 * (time.perf_counter() - t0))
            overview_selects.append(_selects(db) - before - overhead)
            if resp.status != 200:
                raise RuntimeError(f"overview: HTTP {resp.status} {resp.text()}")
        http.close()
        figures: dict[str, Any] = {
            "tiles": tiles,
            "runs": runs,
            "document_bytes": size,
            "refresh_ms_median": 1000 * median(times[1:]),
            "refresh_ms_max": 1000 * max(times[1:]),
            "selects_per_refresh": sorted(set(queries[1:])),
            "sql_ms_median": _sql_ms(db, uid, max(runs, 3)),
            "overview_ms_median": median(overview_ms),
            "overview_selects": sorted(set(overview_selects)),
            "plan": _explain(db, uid),
        }
        if browser:
            figures["browser_first_draw_s"] = _browser_first_draw(daemon, uid)
        return figures


class TiffImage(TileImage):
    """A real 16-bit TIFF as the tile bytes (tiles differ in 16 trailing bytes,
    which Pillow ignores)."""

    def __init__(self, pixels: int) -> None:
        rng = random.Random(11)
        image = Image.new("I;16", (pixels, pixels))
        row = [rng.randrange(65536) for _ in range(pixels * 4)]
        image.putdata([row[(i * 7) % len(row)] for i in range(pixels * pixels)])
        out = io.BytesIO()
        image.save(out, format="TIFF")
        data = out.getvalue()
        super().__init__(len(data) + TAIL.size)
        self.prefix = data
        self._md5 = hashlib.md5(self.prefix)


class _Capture:
    """TCP senders of one acquisition, counting acknowledged tiles."""

    def __init__(self, daemon: Daemon, uid: int, image: TileImage, conns: int) -> None:
        self._daemon, self._uid, self._image, self._conns = daemon, uid, image, conns
        self.acked = 0
        self.errors: list[str] = []
        self.ack_s: list[float] = []
        self.interval = 0.0
        self._seq = 0
        self._lock = threading.Lock()

    def _next(self, camera: int) -> Tile:
        with self._lock:
            self._seq += 1
            seq = self._seq
        col, row = seq % 400, seq // 400
        tail = self._image.tail(self._uid, camera, seq)
        return Tile(col, row, camera, tail, self._image.md5(tail))

    def run(self, seconds: float) -> float:
        stop = time.monotonic() + seconds
        start = time.monotonic()

        def sender(camera: int) -> None:
            s = TcpSender(
                "127.0.0.1", self._daemon.tcp_port, self._uid, self._image, 60
            )
            try:
                due = time.monotonic()
                while time.monotonic() < stop:
                    if self.interval > 0:  # a rig's camera: one tile per interval
                        due += self.interval
                    t0 = time.monotonic()
                    error = s.send(self._next(camera))
                    took = time.monotonic() - t0
                    with self._lock:
                        self.ack_s.append(took)
                        if error:
                            self.errors.append(error)
                        else:
                            self.acked += 1
                    if self.interval > 0 and due > time.monotonic():
                        time.sleep(due - time.monotonic())
            finally:
                s.close()

        threads = [
            threading.Thread(target=sender, args=(c % 4,)) for c in range(self._conns)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - start


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _browser_process(daemon: Daemon, uid: int, until: float, results: Any) -> None:
    stats: dict[str, list[float]] = {"page_ms": [], "preview_ms": [], "mosaic_ms": []}
    _browse(daemon, uid, time.monotonic() + (until - time.time()), stats)
    results.put(stats)


def _browse(
    daemon: Daemon, uid: int, until: float, stats: dict[str, list[float]]
) -> None:
    http = daemon.http()
    next_page = next_mosaic = 0.0
    page = f"/service/v1/acquisition/{uid}/live"
    seen: list[int] = []
    try:
        while time.monotonic() < until:
            now = time.monotonic()
            if now >= next_page:
                t0 = time.perf_counter()
                resp = http.request("GET", page)
                stats["page_ms"].append(1000 * (time.perf_counter() - t0))
                doc = json.loads(bytes(resp.body))
                flat = doc["tiles"]
                seen = [flat[i] for i in range(0, len(flat), 6)]
                next_page = now + 1.0
            if now >= next_mosaic:
                t0 = time.perf_counter()
                http.request("GET", f"/service/v1/acquisition/{uid}/mosaic.png?scale=4")
                stats["mosaic_ms"].append(1000 * (time.perf_counter() - t0))
                next_mosaic = now + 10.0
            if seen:
                tile = seen.pop()  # the newest first, each once: no cache hits
                t0 = time.perf_counter()
                resp = http.request("GET", f"/service/v1/tile/{tile}/preview?size=256")
                if resp.status == 200:
                    stats["preview_ms"].append(1000 * (time.perf_counter() - t0))
            else:
                time.sleep(0.05)
    finally:
        http.close()


def capture_figures(
    base: Path,
    window: float,
    conns: int,
    browsers: int,
    pixels: int,
    interval: float,
) -> dict[str, Any]:
    """Capture rate alone, then while previews are browsed."""
    image = TiffImage(pixels)
    with _rig(base) as (_db, daemon):
        figures: dict[str, Any] = {
            "tile_bytes": image.size,
            "connections": conns,
            "browsers": browsers,
            "window_s": window,
            "interval_s": interval,
        }
        for phase, uid in (("alone", FIRST_UID + 1), ("browsed", FIRST_UID + 2)):
            daemon.start_acquisition(uid, INILOG.read_bytes())
            capture = _Capture(daemon, uid, image, conns)
            capture.interval = interval
            stats: dict[str, list[float]] = {
                "page_ms": [],
                "preview_ms": [],
                "mosaic_ms": [],
            }
            # Browsers are processes of their own: in this one they would take
            # the senders' interpreter lock and blur the acknowledgement times.
            watchers: list[multiprocessing.Process] = []
            results: multiprocessing.Queue[dict[str, list[float]]] = (
                multiprocessing.Queue()
            )
            if phase == "browsed":
                until = time.time() + window
                watchers = [
                    multiprocessing.Process(
                        target=_browser_process, args=(daemon, uid, until, results)
                    )
                    for _ in range(browsers)
                ]
                for w in watchers:
                    w.start()
            elapsed = capture.run(window)
            for _ in watchers:
                for name, values in results.get(timeout=120).items():
                    stats[name] += values
            for w in watchers:
                w.join()
            figures[phase] = {
                "acked": capture.acked,
                "errors": capture.errors[:5],
                "tiles_per_s": capture.acked / elapsed,
                "ack_p50_ms": 1000 * _quantile(capture.ack_s, 0.5),
                "ack_p99_ms": 1000 * _quantile(capture.ack_s, 0.99),
                "previews": len(stats["preview_ms"]),
                "preview_ms_median": median(stats["preview_ms"])
                if stats["preview_ms"]
                else None,
                "page_ms_median": median(stats["page_ms"])
                if stats["page_ms"]
                else None,
                "mosaic_ms_median": median(stats["mosaic_ms"])
                if stats["mosaic_ms"]
                else None,
            }
            _log(f"{phase}: {figures[phase]['tiles_per_s']:.1f} tiles/s")
        alone = figures["alone"]["tiles_per_s"]
        figures["rate_ratio"] = (
            figures["browsed"]["tiles_per_s"] / alone if alone else None
        )
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("page", "capture"))
    parser.add_argument("--tiles", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--window", type=float, default=30.0)
    # The rig profile (CONTRACT §12.2): 4 cameras, a 5.5 MB tile each every 150 ms.
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.15)
    parser.add_argument("--browsers", type=int, default=2)
    parser.add_argument("--tile-pixels", type=int, default=1666)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.tiles, args.runs, args.window, args.tile_pixels = 2000, 2, 4.0, 512
    results: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="ic-live-"))
    try:
        if args.only in (None, "page"):
            results["page"] = page_figures(
                base / "page", args.tiles, args.runs, args.browser
            )
        if args.only in (None, "capture"):
            results["capture"] = capture_figures(
                base / "capture",
                args.window,
                args.connections,
                args.browsers,
                args.tile_pixels,
                args.interval,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
