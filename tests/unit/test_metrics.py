"""The metrics: events move the right samples; labels stay bounded; processes add up."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pymysql
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from twisted.enterprise import adbapi
from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock

from imagecatcher.config import Config, ConfigError
from imagecatcher.db.dialect import MySQLDialect
from imagecatcher.db.pool import Database
from imagecatcher.metrics import (
    UNMATCHED,
    Metrics,
    note_route,
    route_of,
    route_template,
    use_multiprocess,
)
from imagecatcher.storage import ObjectNotFound, StoreError
from imagecatcher.storage.memory import MemoryStore
from imagecatcher.storage.metered import MeteredStore
from imagecatcher.web.app import CatcherAPI
from imagecatcher.workers import plan_workers
from tests.storefakes import result_of, run
from tests.unit.test_db_pool import _FailingPool, _nothing
from tests.unit.test_http import FakeRepo, FakeStore, stub_client
from tests.unit.test_workers import ProcessReactor, _end, _supervisor

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def _samples(metrics: Metrics) -> Samples:
    return _parse(metrics.exposition().decode("utf-8"))


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_route_templates_use_openapi_braces() -> None:
    """werkzeug rules become path templates; converters are dropped."""
    assert (
        route_template("/service/v1/acquisition/<acqid>/tile/<col>/<row>")
        == "/service/v1/acquisition/{acqid}/tile/{col}/{row}"
    )
    assert route_template("/x/<int:n>/y") == "/x/{n}/y"
    assert route_template("/metrics") == "/metrics"


def test_a_request_without_a_route_is_unmatched() -> None:
    """Only a request a route noted carries its template."""

    class Request:
        pass

    noted, other = Request(), Request()
    note_route(noted, "/service/v1/ping")
    assert route_of(noted) == "/service/v1/ping" and route_of(other) == UNMATCHED


def test_tile_events_move_counters_and_histograms() -> None:
    """Two TCP tiles and a refused HTTP one move exactly their samples."""
    metrics = Metrics()
    before = _samples(metrics)
    assert (
        _value(
            before,
            "imagecatcher_tiles_captured_total",
            channel="http",
            outcome="failed",
        )
        == 0
    )
    metrics.tile_acknowledged("tcp", 1000, 0.004)
    metrics.tile_acknowledged("tcp", 2500, 0.2)
    metrics.tile_refused("http", "rejected")
    metrics.stage("hash", 0.003)
    after = _samples(metrics)
    captured = "imagecatcher_tiles_captured_total"
    assert _value(after, captured, channel="tcp", outcome="ok") == 2
    assert _value(after, captured, channel="http", outcome="rejected") == 1
    assert _value(after, captured, channel="http", outcome="ok") == 0
    assert _value(after, "imagecatcher_tile_bytes_total", channel="tcp") == 3500
    ack = "imagecatcher_ack_latency_seconds"
    assert _value(after, f"{ack}_count", channel="tcp") == 2
    assert _value(after, f"{ack}_bucket", channel="tcp", le="0.005") == 1
    assert _value(after, f"{ack}_bucket", channel="tcp", le="+Inf") == 2
    assert _value(after, f"{ack}_sum", channel="tcp") == pytest.approx(0.204)
    stage = "imagecatcher_stage_duration_seconds_count"
    assert _value(after, stage, stage="hash") == 1
    assert _value(after, stage, stage="upload") == 0


def test_http_methods_outside_the_known_set_share_one_label() -> None:
    """A made-up method cannot add label values."""
    metrics = Metrics()
    metrics.http_request(UNMATCHED, b"FROB", 405)
    metrics.http_request(UNMATCHED, b"BORF", 405)
    metrics.http_request("/service/v1/ping", b"GET", 200)
    after = _samples(metrics)
    requests = "imagecatcher_http_requests_total"
    assert _value(after, requests, route=UNMATCHED, method="other", status="405") == 2
    assert (
        _value(after, requests, route="/service/v1/ping", method="GET", status="200")
        == 1
    )
    methods = {dict(labels)["method"] for (name, labels) in after if name == requests}
    assert methods == {"other", "GET"}


def test_samplers_set_the_gauges_before_a_scrape() -> None:
    """State is read when scraped, not counted per tile."""
    metrics = Metrics()
    state = {"depth": 3}

    def sample() -> None:
        metrics.queue("tile", state["depth"], 4, 1)
        metrics.spool(2, 2048, 7.5)
        metrics.store_up(False)
        metrics.running()

    metrics.before_scrape(sample)
    first = _samples(metrics)
    assert _value(first, "imagecatcher_queue_depth", queue="tile") == 3
    assert _value(first, "imagecatcher_queue_colour", queue="tile") == 1
    assert _value(first, "imagecatcher_spool_bytes") == 2048
    assert _value(first, "imagecatcher_spool_oldest_entry_age_seconds") == 7.5
    assert _value(first, "imagecatcher_store_down") == 1
    assert _value(first, "imagecatcher_worker_processes") == 1
    state["depth"] = 0
    assert _value(_samples(metrics), "imagecatcher_queue_depth", queue="tile") == 0


def test_metered_store_counts_failures_by_operation_and_kind() -> None:
    """A get of a missing object is counted, then raised as before."""
    metrics = Metrics()
    store = MeteredStore(MemoryStore(), metrics)
    path = "/acquisitions/161105213017/col0012_row0005_cam3.tif"
    obj = run(store.put("FAFB00", path, b"abc", hashlib.md5(b"abc").digest()))
    assert run(store.get(obj)) == b"abc"
    run(store.delete(obj))
    with pytest.raises(ObjectNotFound):
        run(store.get(obj))
    with pytest.raises(StoreError, match="MD5"):
        run(store.put("FAFB00", path, b"abc", bytes(16)))
    after = _samples(metrics)
    errors = "imagecatcher_store_errors_total"
    assert _value(after, errors, operation="get", kind="not_found") == 1
    assert _value(after, errors, operation="put", kind="store_error") == 1
    assert _value(after, errors, operation="put", kind="not_found") == 0


def test_database_errors_are_counted_by_driver_class() -> None:
    """A driver error is counted under its class, and still raised."""
    metrics = Metrics()
    down = pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
    pool = _FailingPool(down)
    db = Database(
        cast(adbapi.ConnectionPool, pool), MySQLDialect(), metrics.database_error
    )
    with pytest.raises(Exception, match="connect"):
        run(db.run(_nothing))
    assert run(db.run(_nothing)) == "done"
    after = _samples(metrics)
    assert (
        _value(after, "imagecatcher_database_errors_total", kind="OperationalError")
        == 1
    )


def test_metrics_route_answers_the_exposition_at_the_root() -> None:
    """GET /metrics (outside /service/v1) answers the text format."""
    metrics = Metrics()
    metrics.tile_acknowledged("http", 10, 0.01)
    api = CatcherAPI(FakeRepo(), FakeStore(), Clock(), metrics=metrics)  # type: ignore[arg-type]
    client = stub_client(api)
    response = result_of(client.get("http://x/metrics"))
    assert response.code == 200
    ctype = response.headers.getRawHeaders(b"content-type")[0].decode()
    assert ctype == metrics.content_type and ctype.startswith("text/plain")
    body = result_of(response.content()).decode()
    assert _value(_parse(body), "imagecatcher_tile_bytes_total", channel="http") == 10
    assert result_of(client.get("http://x/service/v1/metrics")).code == 404


def test_multiprocess_mode_must_come_before_the_library() -> None:
    """Too late once prometheus_client was imported in single-process mode."""
    with pytest.raises(RuntimeError, match="imported before"):
        use_multiprocess(Path("/nonexistent-metrics-dir"), clean=True)


_CHILD = """
import sys
from pathlib import Path
from imagecatcher.metrics import Metrics, use_multiprocess
directory = Path(sys.argv[1])
use_multiprocess(directory, clean=False)
m = Metrics(directory)
m.tile_acknowledged("tcp", int(sys.argv[2]), 0.01)
m.running()
print(__import__("os").getpid())
"""


def test_processes_add_up_and_a_dead_ones_gauges_go(tmp_path: Path) -> None:
    """Two processes' counters sum; marking one dead drops its gauges only."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    pids = []
    for size in ("100", "250"):
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(tmp_path), size],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        pids.append(int(done.stdout))

    def collect() -> Samples:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        from prometheus_client import generate_latest

        return _parse(generate_latest(registry).decode())

    both = collect()
    assert (
        _value(both, "imagecatcher_tiles_captured_total", channel="tcp", outcome="ok")
        == 2
    )
    assert _value(both, "imagecatcher_tile_bytes_total", channel="tcp") == 350
    assert _value(both, "imagecatcher_worker_processes") == 2
    # What the supervisor does when a worker exits.
    metrics = Metrics(tmp_path)
    metrics.process_exited(pids[0])
    one = collect()
    assert _value(one, "imagecatcher_worker_processes") == 1
    assert (
        _value(one, "imagecatcher_tiles_captured_total", channel="tcp", outcome="ok")
        == 2
    )


def test_supervisor_reports_every_exited_worker() -> None:
    """The supervisor passes each exited child's pid on (for its metrics)."""
    reactor = ProcessReactor()
    supervisor, _ = _supervisor(reactor, count=2)
    exited: list[int] = []
    supervisor._on_exit = exited.append
    supervisor.startService()
    _end(reactor.spawned[-1][0], ProcessTerminated(signal=9))
    assert exited == [101]


def test_metrics_endpoint_key(tmp_path: Path) -> None:
    """METRICS_ENDPOINT takes an endpoint string or the old :port form."""
    path = tmp_path / "c.json"
    path.write_text('{"METRICS_ENDPOINT": ":9100"}')
    assert Config.load([path], environ={}).metrics_endpoint == "tcp6:9100"
    path.write_text('{"METRICS_ENDPOINT": "tcp:9100:interface=127.0.0.1"}')
    assert (
        Config.load([path], environ={}).metrics_endpoint
        == "tcp:9100:interface=127.0.0.1"
    )
    assert (
        Config.load(
            [path], environ={"IMAGECATCHER_METRICS_ENDPOINT": ""}
        ).metrics_endpoint
        == ""
    )
    path.write_text('{"METRICS_ENDPOINT": 9100}')
    with pytest.raises(ConfigError, match="METRICS_ENDPOINT"):
        Config.load([path], environ={})


def test_several_workers_share_only_a_tcp_metrics_endpoint() -> None:
    """A unix: METRICS_ENDPOINT cannot be shared by several workers."""
    config = Config(
        db_driver="mysql",
        http_endpoint="tcp:5001",
        tcp_endpoint="tcp:5002",
        metrics_endpoint="unix:/tmp/imagecatcher-metrics.sock",
    )
    with pytest.raises(ConfigError, match="unix:"):
        plan_workers(config, 2, 0, 2)
    ok: Any = plan_workers(
        Config(db_driver="mysql", metrics_endpoint="tcp:9100"), 2, 0, 2
    )
    assert ok.count == 2
