"""GET /metrics on a real daemon: the figures move by what was sent, in one or two workers.

Every scrape is read with prometheus_client's own text parser.  Tiles go to a
12-digit acquisition with a non-empty collection over TCP and HTTP (raw PUT
and multipart); the counters and histograms must move by exactly the tiles
sent, their sizes and the requests made.  With ``--workers 2`` (MariaDB:
SQLite runs one process) tiles reach both workers and every scrape, whichever
worker answers it, reports the sum.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families

from imagecatcher.config import Config
from tests.conftest import FIXTURES, free_port
from tests.integration.daemon import (
    http_get,
    ports,
    run_tool,
    running,
    twistd_argv,
    write_config,
)
from tests.integration.httpclient import post_form, request, send_tile
from tests.integration.test_durability import _roi_cells
from tests.integration.workerprocs import children, dispatching, owners, wait_for

UID = 161105213017
COLLECTION = "FAFB00_serial_sections"
SECTION = f"{UID}_FAFB00_sections_5800-5802_montage"
CAPTURE_ROUTE = "/service/v1/capture-image-content/{acqid}"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, Samples]:
    """GET /metrics on ``port``: its content type and every sample, parsed."""
    status, headers, body = http_get(port, "/metrics", timeout=20)
    assert status == 200, body
    ctype = next(v for k, v in headers if k.lower() == "content-type")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return ctype, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a labelled child not yet used)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample moved between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def _config(tmp_path: Path, config: Config, **extra: object) -> Path:
    cfg = write_config(
        tmp_path,
        config,
        JFS_MAPPING={"PING": COLLECTION, "FAFB_00": COLLECTION},
        **extra,
    )
    result = run_tool(["--config", str(cfg), "db-init"], tmp_path)
    assert result.returncode == 0, result.stderr
    return cfg


def _start_acquisition(http_port: int) -> None:
    """Acquisition UID with its ROIs (the fixtures, renamed as a rig names them)."""
    status, body = post_form(
        http_port,
        "/service/v1/start-acquisition",
        [
            (
                "acq-inilog",
                f"{UID}_logfile.ini",
                (FIXTURES / "123_logfile.ini").read_bytes(),
            )
        ],
    )
    assert status == 200, body
    status, body = post_form(
        http_port,
        f"/service/v1/create-rois/{UID}",
        [
            (
                "roi-spec",
                f"{SECTION}_ROI_spec.ini",
                (FIXTURES / "123_ROI_spec.ini").read_bytes(),
            ),
            (
                "roi-tiles",
                f"{SECTION}_ROI_tiles.csv",
                (FIXTURES / "123_ROI_tiles.csv").read_bytes(),
            ),
        ],
    )
    assert status == 200, body


def _tcp_tile(
    sock: socket.socket, col: int, row: int, data: bytes, uid: int = UID
) -> int:
    reply = send_tile(sock, uid, 1, -1, col, row, hashlib.md5(data).digest(), data)
    return reply.status


def _put_tile(http_port: int, name: str, data: bytes) -> int:
    status, _, _ = request(
        http_port,
        "PUT",
        f"/service/v1/capture-image-content/{UID}?tile-filename={quote(name)}"
        f"&checksum={hashlib.md5(data).hexdigest()}",
        data,
    )
    return status


def _post_tile(http_port: int, name: str, data: bytes) -> int:
    status, _ = post_form(
        http_port,
        f"/service/v1/capture-image-content/{UID}",
        [
            ("tile-file", name, data),
            ("checksum-str", None, hashlib.md5(data).hexdigest().encode()),
        ],
    )
    return status


class _Scraper:
    """Scrapes in a thread until stopped; keeps the captured totals it saw."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        self.seen: list[float] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _, samples = scrape(self._port)
                self.seen.append(total(samples, "imagecatcher_tiles_captured_total"))
            except BaseException as e:
                self.errors.append(e)
                return
            self._stop.wait(0.02)

    def __enter__(self) -> _Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_metrics_follow_tiles_over_tcp_and_http(
    tmp_path: Path, engine_config: Config
) -> None:
    """N tiles per channel move the captured counter by N, the bytes by their
    sizes and each histogram's count by N, on /metrics and METRICS_ENDPOINT."""
    metrics_port = free_port()
    cfg = _config(
        tmp_path,
        engine_config,
        METRICS_ENDPOINT=f"tcp:{metrics_port}:interface=127.0.0.1",
    )
    http_port, tcp_port = ports()
    cells = _roi_cells()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        _start_acquisition(http_port)
        ctype, before = scrape(http_port)
        assert ctype.startswith("text/plain"), ctype
        tcp_sizes = [120_000 + 1_111 * i for i in range(6)]
        put_sizes = [90_000 + 777 * i for i in range(3)]
        post_sizes = [70_000 + 555 * i for i in range(2)]
        with _Scraper(metrics_port) as scraper:
            with socket.create_connection(("127.0.0.1", tcp_port), timeout=30) as s:
                for (col, row), size in zip(cells, tcp_sizes, strict=False):
                    assert _tcp_tile(s, col, row, os.urandom(size)) == 0
                # Unknown acquisition: refused, the client's fault.
                assert _tcp_tile(s, 1, 1, os.urandom(1000), uid=999999999999) == 1
            rest = cells[len(tcp_sizes) :]
            for (col, row), size in zip(rest, put_sizes, strict=False):
                name = f"col{col:04d}/col{col:04d}_row{row:04d}_cam2.tif"
                assert _put_tile(http_port, name, os.urandom(size)) == 200
            rest = rest[len(put_sizes) :]
            for (col, row), size in zip(rest, post_sizes, strict=False):
                name = f"Dump_cam3_frame00042_col{col:04d}_row{row:04d}.tif"
                assert _post_tile(http_port, name, os.urandom(size)) == 200
            assert _put_tile(http_port, "not-a-tile-name.tif", b"x" * 500) == 400
        assert not scraper.errors, scraper.errors
        assert len(scraper.seen) >= 2, scraper.seen
        assert scraper.seen == sorted(scraper.seen), scraper.seen

        status, _, body = request(
            http_port, "POST", f"/service/v1/next-tile?acqid={UID}&ntiles=4"
        )
        assert status == 200, body
        assert http_get(http_port, "/service/v1/no/such/route")[0] == 404
        # A tile whose object went missing: the store's get fails.
        (stored,) = [
            p
            for p in (tmp_path / "objects").rglob("*")
            if p.is_file() and p.stat().st_size == tcp_sizes[0]
        ]
        stored.unlink()
        col, row = cells[0]
        status, _, _ = request(
            http_port, "GET", f"/service/v1/acquisition/{UID}/tile/{col}/{row}/content"
        )
        assert status >= 400

        _, after = scrape(http_port)
        _, separate = scrape(metrics_port)

    captured = "imagecatcher_tiles_captured_total"
    assert moved(before, after, captured, channel="tcp", outcome="ok") == 6
    assert moved(before, after, captured, channel="http", outcome="ok") == 5
    assert moved(before, after, captured, channel="tcp", outcome="rejected") == 1
    assert moved(before, after, captured, channel="http", outcome="rejected") == 1
    for channel in ("tcp", "http"):
        assert moved(before, after, captured, channel=channel, outcome="failed") == 0
    assert scraper.seen[-1] <= total(after, captured)
    tile_bytes = "imagecatcher_tile_bytes_total"
    assert moved(before, after, tile_bytes, channel="tcp") == sum(tcp_sizes)
    assert moved(before, after, tile_bytes, channel="http") == sum(
        put_sizes + post_sizes
    )
    ack = "imagecatcher_ack_latency_seconds"
    assert moved(before, after, f"{ack}_count", channel="tcp") == 6
    assert moved(before, after, f"{ack}_count", channel="http") == 5
    assert moved(before, after, f"{ack}_bucket", channel="tcp", le="+Inf") == 6
    assert moved(before, after, f"{ack}_sum", channel="tcp") > 0
    stage = "imagecatcher_stage_duration_seconds_count"
    # The file store: every tile is hashed, made durable and recorded once.
    for name in ("hash", "durable_write", "database"):
        assert moved(before, after, stage, stage=name) == 11, name
    assert moved(before, after, stage, stage="upload") == 0

    requests = "imagecatcher_http_requests_total"
    for method, code, n in (("PUT", "200", 3), ("POST", "200", 2), ("PUT", "400", 1)):
        assert (
            moved(
                before,
                after,
                requests,
                route=CAPTURE_ROUTE,
                method=method,
                status=code,
            )
            == n
        ), (method, code)
    assert (
        moved(before, after, requests, route="unmatched", method="GET", status="404")
        == 1
    )
    assert (
        moved(
            before,
            after,
            requests,
            route="/service/v1/next-tile",
            method="POST",
            status="200",
        )
        == 1
    )
    assert value(after, requests, route="/metrics", method="GET", status="200") >= 1
    # No raw path is ever a label.
    routes = {dict(ls)["route"] for (n, ls) in after if n == requests}
    assert all(r == "unmatched" or "/no/" not in r for r in routes), routes
    assert not any(str(UID) in r for r in routes), routes

    served = "imagecatcher_next_tile_served_tiles_total"
    assert moved(before, after, served) == 4
    assert (
        moved(
            before, after, "imagecatcher_next_tile_requests_total", result="TILE_FOUND"
        )
        == 1
    )
    assert total(after, "imagecatcher_store_errors_total", kind="not_found") >= 1

    assert value(after, "imagecatcher_worker_processes") == 1
    assert value(after, "imagecatcher_queue_depth", queue="tile") == 0
    assert value(after, "imagecatcher_spool_entries") == 0
    assert value(after, "imagecatcher_store_down") == 0
    # The separate endpoint serves the same figures.
    assert value(separate, captured, channel="tcp", outcome="ok") == value(
        after, captured, channel="tcp", outcome="ok"
    )
    assert value(separate, tile_bytes, channel="http") == value(
        after, tile_bytes, channel="http"
    )


@contextmanager
def _two_workers(
    tmp_path: Path, cfg: Path, http_port: int, tcp_port: int
) -> Iterator[tuple[int, int]]:
    """A two-worker daemon: (supervisor pid, child pid) once both listen."""
    argv = [*twistd_argv(cfg, http_port, tcp_port), "--workers", "2"]
    with running(argv, tmp_path, http_port) as proc:
        found: list[int] = []

        def ready() -> bool:
            kids = dispatching(proc.pid, (tcp_port,), tmp_path / "daemon.log")
            found[:] = sorted(kids)
            return len(kids) == 1

        wait_for("worker 1 to listen", ready, log=tmp_path / "daemon.log")
        yield proc.pid, found[0]


def test_two_workers_report_the_sum(tmp_path: Path, mariadb_config: Config) -> None:
    """With --workers 2 every scrape, whichever worker answers, counts the tiles
    of both; a killed worker's counts stay and its gauges go."""
    cfg = _config(tmp_path, mariadb_config)
    http_port, tcp_port = ports()
    cells = _roi_cells()
    sizes = [100_000 + 999 * i for i in range(12)]
    with _two_workers(tmp_path, cfg, http_port, tcp_port) as (parent, child):
        _start_acquisition(http_port)
        conns = [
            socket.create_connection(("127.0.0.1", tcp_port), timeout=30)
            for _ in range(12)
        ]
        try:
            per_worker: list[dict[int, int]] = []

            def accepted_by_both() -> bool:
                counts = owners(tcp_port, {parent, child}, listening=False)
                per_worker[:] = [dict(counts)]
                return sum(counts.values()) >= len(conns)

            wait_for("the connections to be accepted", accepted_by_both, timeout=20)
            # Each worker holds connections, and every connection sends a tile.
            assert per_worker[0].get(parent, 0) > 0, per_worker
            assert per_worker[0].get(child, 0) > 0, per_worker
            for s, (col, row), size in zip(conns, cells, sizes, strict=False):
                assert _tcp_tile(s, col, row, os.urandom(size)) == 0
        finally:
            for s in conns:
                s.close()
        http_sizes = [80_000 + 333 * i for i in range(4)]
        for (col, row), size in zip(cells[len(sizes) :], http_sizes, strict=False):
            name = f"col{col:04d}/col{col:04d}_row{row:04d}_cam2.tif"
            assert _put_tile(http_port, name, os.urandom(size)) == 200

        captured = "imagecatcher_tiles_captured_total"
        scrapes = [scrape(http_port)[1] for _ in range(8)]
        for samples in scrapes:
            assert value(samples, captured, channel="tcp", outcome="ok") == 12
            assert value(
                samples, "imagecatcher_tile_bytes_total", channel="tcp"
            ) == sum(sizes)
            assert (
                value(samples, "imagecatcher_ack_latency_seconds_count", channel="tcp")
                == 12
            )
            assert value(samples, captured, channel="http", outcome="ok") == 4
            assert value(
                samples, "imagecatcher_tile_bytes_total", channel="http"
            ) == sum(http_sizes)
            count = "imagecatcher_stage_duration_seconds_count"
            assert value(samples, count, stage="database") == 16
            assert value(samples, "imagecatcher_worker_processes") == 2

        os.kill(child, signal.SIGKILL)
        back: list[int] = []

        def restarted() -> bool:
            kids = children(parent)
            back[:] = sorted(kids)
            return len(kids) == 1 and child not in kids

        wait_for("worker 1 to come back", restarted, log=tmp_path / "daemon.log")

        def counted_two() -> bool:
            return all(
                value(scrape(http_port)[1], "imagecatcher_worker_processes") == 2
                for _ in range(4)
            )

        # The dead worker's gauges went (else 3), the new one counts itself.
        wait_for(
            "the new worker to count itself", counted_two, log=tmp_path / "daemon.log"
        )
        for _ in range(4):
            samples = scrape(http_port)[1]
            assert value(samples, captured, channel="tcp", outcome="ok") == 12
            assert value(samples, "imagecatcher_worker_processes") == 2
    metrics_dir = tmp_path / "spool" / "metrics"
    assert any(metrics_dir.glob("counter_*.db")), list(metrics_dir.iterdir())
