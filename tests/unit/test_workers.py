"""Unit tests for the worker plan, the log relay and the supervisor (no real processes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import (
    Logger,
    LogLevel,
    eventAsJSON,
    formatEvent,
    formatEventAsClassicLogText,
)
from twisted.python.failure import Failure

from imagecatcher.config import Config, ConfigError
from imagecatcher.workers import (
    Supervisor,
    WorkerPlan,
    plan_workers,
    relayed_event,
    tag_events,
    worker_argv,
)
from tests.storefakes import result_of

MYSQL = Config(db_driver="mysql", http_endpoint="tcp:5001", tcp_endpoint="tcp6:5002")


def test_default_is_one_process() -> None:
    """Without WORKERS or --workers the daemon runs one process."""
    assert plan_workers(MYSQL, None, 0, cpus=8) == WorkerPlan(1, 0)
    assert not WorkerPlan(1, 0).several


def test_zero_means_one_per_cpu() -> None:
    """WORKERS 0 runs one worker per usable CPU."""
    config = attrs.evolve(MYSQL, workers=0)
    assert plan_workers(config, None, 0, cpus=4).count == 4


def test_option_wins_over_the_key() -> None:
    """--workers overrides the WORKERS key."""
    config = attrs.evolve(MYSQL, workers=4)
    assert plan_workers(config, 2, 0, cpus=8).count == 2
    assert plan_workers(config, None, 0, cpus=8).count == 4


def test_sqlite_forces_one_process_and_says_so() -> None:
    """Several workers on SQLite become one, with a warning naming SQLite."""
    config = Config(db_driver="sqlite", workers=3)
    plan = plan_workers(config, None, 0, cpus=8)
    assert plan.count == 1 and "SQLite" in plan.warnings[0]


def test_sqlite_per_cpu_is_one_process_quietly() -> None:
    """WORKERS 0 on SQLite is one process without a warning."""
    plan = plan_workers(Config(db_driver="sqlite", workers=0), None, 0, cpus=8)
    assert plan == WorkerPlan(1, 0)


def test_several_workers_need_reuseport() -> None:
    """Several workers with SO_REUSEPORT false are refused."""
    config = attrs.evolve(MYSQL, so_reuseport=False)
    with pytest.raises(ConfigError, match="SO_REUSEPORT"):
        plan_workers(config, 2, 0, cpus=8)
    assert plan_workers(config, 1, 0, cpus=8).count == 1


def test_several_workers_need_tcp_endpoints() -> None:
    """A unix: endpoint cannot be shared by several workers."""
    config = attrs.evolve(MYSQL, http_endpoint="unix:/run/ic.sock")
    with pytest.raises(ConfigError, match="only TCP"):
        plan_workers(config, 2, 0, cpus=8)


def test_malformed_endpoint_is_a_config_error() -> None:
    """A malformed tcp: endpoint is reported as a configuration error."""
    config = attrs.evolve(MYSQL, tcp_endpoint="tcp:abc")
    with pytest.raises(ConfigError, match="tcp:abc"):
        plan_workers(config, 2, 0, cpus=8)


def test_a_child_runs_only_itself() -> None:
    """A process started with --worker-index i > 0 supervises nothing."""
    plan = plan_workers(attrs.evolve(MYSQL, workers=4), 1, 3, cpus=8)
    assert plan == WorkerPlan(1, 3) and plan.several


def test_child_command_line() -> None:
    """A child runs the same plugin in the foreground as worker i, logging JSON."""
    argv = worker_argv(
        2,
        configs=["a.json", "/etc/b.json"],
        http="tcp:5001",
        tcp=None,
        supervisor_pid=1234,
        python="/venv/bin/python",
    )
    assert argv[:2] == ["/venv/bin/python", "-c"]
    assert argv[3:7] == [
        "--nodaemon",
        "--pidfile=",
        "--logger=imagecatcher.logs.json_observer",
        "imagecatcher",
    ]
    rest = argv[7:]
    assert rest == [
        "--config",
        str(Path("a.json").absolute()),
        "--config",
        "/etc/b.json",
        "--httpserver",
        "tcp:5001",
        "--workers",
        "1",
        "--worker-index",
        "2",
        "--supervisor-pid",
        "1234",
    ]


def test_events_are_tagged_with_the_worker() -> None:
    """A tagged event carries its worker index, in text logs too."""
    event: dict[str, Any] = {
        "log_format": "hello",
        "log_namespace": "imagecatcher.pipeline",
        "log_level": LogLevel.info,
    }
    tag_events(2)(event)
    assert event["worker"] == 2
    assert event["log_system"] == "w2 imagecatcher.pipeline#info"


def test_legacy_system_is_kept_after_the_tag() -> None:
    """An event with a log_system keeps it, prefixed by the worker."""
    event: dict[str, Any] = {"log_format": "x", "log_system": "HTTPChannel,3"}
    tag_events(0)(event)
    assert event["log_system"] == "w0 HTTPChannel,3"


def test_relayed_events_keep_their_worker() -> None:
    """An event already naming a worker (relayed from a child) is left alone."""
    event: dict[str, Any] = {"log_format": "x", "worker": 1, "log_system": "w1 a#info"}
    tag_events(0)(event)
    assert event == {"log_format": "x", "worker": 1, "log_system": "w1 a#info"}


def test_child_json_lines_become_events_again() -> None:
    """A JSON line from a child's stdout is the child's event, with its fields."""
    original = {
        "log_format": "stored {name}",
        "name": "col0001_row0002_cam0.tif",
        "log_level": LogLevel.warn,
        "log_namespace": "imagecatcher.pipeline",
        "log_time": 1234.5,
        "worker": 1,
        "log_system": "w1 imagecatcher.pipeline#warn",
    }
    line = ("\x1e" + eventAsJSON(original) + "\n").encode()
    event = relayed_event(1, line, from_stderr=False)
    assert formatEvent(event) == "stored col0001_row0002_cam0.tif"
    assert event["log_level"] == LogLevel.warn and event["log_time"] == 1234.5
    assert event["worker"] == 1


def test_child_stderr_lines_are_errors() -> None:
    """A stderr line (e.g. a traceback before logging started) is an error event."""
    event = relayed_event(3, b"Traceback (most recent call last):\n", from_stderr=True)
    assert event["log_level"] == LogLevel.error and event["worker"] == 3
    assert formatEvent(event) == "Traceback (most recent call last):"


def test_non_json_stdout_is_relayed_as_text() -> None:
    """A stdout line that is not a JSON event is relayed as info text."""
    event = relayed_event(1, b"plain words\n", from_stderr=False)
    assert event["log_level"] == LogLevel.info and formatEvent(event) == "plain words"


class FakeProcess:
    """The transport spawnProcess would return."""

    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid
        self.signals: list[str] = []
        self.stdin_closed = False

    def closeStdin(self) -> None:  # noqa: N802 - Twisted's name
        """Record it."""
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:  # noqa: N802 - Twisted's name
        """Record the signal; fail once the process is gone."""
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(name)


class ProcessReactor(Clock):
    """A Clock that records spawnProcess calls instead of forking."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[str, str], FakeProcess]] = []
        self._next_pid = 100

    def spawnProcess(  # noqa: N802 - Twisted's name
        self,
        protocol: Any,
        executable: str,
        args: list[str],
        env: dict[str, str],
        path: str,
        childFDs: dict[int, Any],  # noqa: N803 - Twisted's name
    ) -> FakeProcess:
        """Make a fake process and connect the protocol to it."""
        assert executable == args[0] and childFDs == {0: "w", 1: "r", 2: "r"}
        self._next_pid += 1
        process = FakeProcess(self._next_pid)
        protocol.makeConnection(process)
        self.spawned.append((protocol, args, env, process))
        return process


def _end(protocol: Any, reason: Exception) -> None:
    protocol.transport.pid = None
    protocol.processEnded(Failure(reason))


def _supervisor(
    reactor: ProcessReactor, count: int = 3
) -> tuple[Supervisor, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    supervisor = Supervisor(
        reactor,
        count,
        lambda i: ["python", "-c", "run", str(i)],
        publish=events.append,  # type: ignore[arg-type]
        environ=lambda: {"PATH": "/bin"},
        cwd=lambda: "/srv",
        stop_timeout=45.0,
    )
    return supervisor, events


def test_supervisor_starts_the_other_workers() -> None:
    """count 3 starts workers 1 and 2 (this process is worker 0)."""
    reactor = ProcessReactor()
    supervisor, _ = _supervisor(reactor)
    supervisor.startService()
    assert [args[-1] for _, args, _, _ in reactor.spawned] == ["1", "2"]
    assert all(env == {"PATH": "/bin"} for _, _, env, _ in reactor.spawned)
    assert all(p.stdin_closed for *_, p in reactor.spawned)
    assert supervisor.pids() == {1: 101, 2: 102}


def test_child_output_is_relayed_line_by_line() -> None:
    """Split chunks are joined into lines; each is published with the worker index."""
    reactor = ProcessReactor()
    supervisor, events = _supervisor(reactor, count=2)
    supervisor.startService()
    protocol = reactor.spawned[0][0]
    line = "\x1e" + eventAsJSON({"log_format": "hi {x}", "x": 1, "worker": 1}) + "\n"
    protocol.childDataReceived(1, line[:10].encode())
    assert events == []
    protocol.childDataReceived(1, line[10:].encode() + b"\x1e")
    protocol.childDataReceived(2, b"boom\nhalf")
    protocol.childConnectionLost(2)
    assert [formatEvent(e) for e in events] == ["hi 1", "boom", "half"]
    assert all(e["worker"] == 1 for e in events)


def test_dead_worker_is_restarted_with_backoff() -> None:
    """A worker that keeps dying is restarted after 1, 2, 4 ... seconds."""
    reactor = ProcessReactor()
    supervisor, _ = _supervisor(reactor, count=2)
    supervisor.startService()
    for started, delay in enumerate((1.0, 2.0, 4.0), start=1):
        _end(reactor.spawned[-1][0], ProcessTerminated(signal=9))
        assert 1 not in supervisor.workers
        reactor.advance(delay - 0.01)
        assert len(reactor.spawned) == started
        reactor.advance(0.01)
        assert len(reactor.spawned) == started + 1 and 1 in supervisor.workers


def test_backoff_resets_after_a_stable_run() -> None:
    """A worker that ran 30 s or more is restarted after 1 s again."""
    reactor = ProcessReactor()
    supervisor, _ = _supervisor(reactor, count=2)
    supervisor.startService()
    _end(reactor.spawned[-1][0], ProcessTerminated(exitCode=1))
    reactor.advance(1.0)
    reactor.advance(60.0)
    _end(reactor.spawned[-1][0], ProcessTerminated(signal=9))
    reactor.advance(1.0)
    assert len(reactor.spawned) == 3


def test_stop_terms_every_worker_and_waits() -> None:
    """Stopping sends SIGTERM to each worker and fires once all have exited."""
    reactor = ProcessReactor()
    supervisor, _ = _supervisor(reactor)
    supervisor.startService()
    stopped = supervisor.stopService()
    assert [p.signals for *_, p in reactor.spawned] == [["TERM"], ["TERM"]]
    assert not stopped.called
    _end(reactor.spawned[0][0], ProcessTerminated(signal=15))
    assert not stopped.called
    _end(reactor.spawned[1][0], ProcessDone(status=0))
    assert result_of(stopped) is None
    reactor.advance(120)
    assert len(reactor.spawned) == 2  # nothing restarted while stopping


def test_stop_kills_workers_that_outlive_the_deadline() -> None:
    """A worker still running after the stop deadline gets SIGKILL."""
    reactor = ProcessReactor()
    supervisor, _ = _supervisor(reactor, count=2)
    supervisor.startService()
    stopped = supervisor.stopService()
    reactor.advance(45.0)
    process = reactor.spawned[0][3]
    assert process.signals == ["TERM", "KILL"] and not stopped.called
    _end(reactor.spawned[0][0], ProcessTerminated(signal=9))
    assert result_of(stopped) is None


def test_stop_cancels_a_pending_restart() -> None:
    """A worker waiting for its restart is not started once stopping began."""
    reactor = ProcessReactor()
    supervisor, _ = _supervisor(reactor, count=2)
    supervisor.startService()
    _end(reactor.spawned[0][0], ProcessTerminated(signal=9))
    assert result_of(supervisor.stopService()) is None
    reactor.advance(10)
    assert len(reactor.spawned) == 1 and reactor.getDelayedCalls() == []


def test_current_interpreter_by_default() -> None:
    """Children run on the supervisor's own interpreter."""
    argv = worker_argv(1, configs=[], http=None, tcp=None, supervisor_pid=1)
    assert argv[0] == sys.executable


def test_relayed_failures_keep_their_message() -> None:
    """A child's logged failure reaches the supervisor's log with its exception text."""
    events: list[dict[str, Any]] = []
    child_log = Logger(observer=events.append, namespace="imagecatcher.pipeline")  # type: ignore[arg-type]
    try:
        raise ValueError("disk on fire")
    except ValueError:
        child_log.failure("spool upload of {stem}", stem="7-ab")
    tag_events(1)(events[0])
    line = ("\x1e" + eventAsJSON(events[0]) + "\n").encode()
    text = formatEventAsClassicLogText(relayed_event(1, line, from_stderr=False))
    assert text is not None
    assert "spool upload of 7-ab" in text and "ValueError: disk on fire" in text
