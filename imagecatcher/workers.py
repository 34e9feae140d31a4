"""Worker processes: several reactors sharing the ports, the database and the store.

One Python process runs everything that holds the GIL on one core.  With
``WORKERS`` (or ``--workers``) N > 1, the twistd process is worker 0 and also
the supervisor of N - 1 child processes, each running the same plugin in the
foreground with ``--workers 1 --worker-index i``.  Every worker binds its own
listening sockets with ``SO_REUSEPORT`` (see :mod:`imagecatcher.listen`), so
the kernel spreads connections over them; each has its own pools, pipeline,
queue colours and notifier, and they meet only in the database, the store and
the spool directory (whose entries a worker claims before uploading them).

A child asks the kernel for SIGTERM when its parent dies, so no orphan keeps
the ports.  A child that exits unexpectedly is restarted with backoff.
Stopping the supervisor sends SIGTERM to every child and waits for them to
exit (each drains its tiles in flight as a single process does).  Children
log JSON to a pipe; the supervisor re-publishes each event to its own log
observer, so there is one log, and every event carries its ``worker`` index.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, eventFromJSON
from twisted.python.failure import Failure

from imagecatcher.config import Config, ConfigError
from imagecatcher.dispatch import CHILD_FD, Dispatcher, channel_pair
from imagecatcher.listen import EndpointError, parse_tcp_endpoint

log = Logger()


#: ``prctl`` option: the signal a process gets when its parent exits (Linux).
PR_SET_PDEATHSIG = 1
#: How a child starts twistd: ``python -c`` keeps the parent's interpreter
#: and ``sys.path``, whatever console scripts are installed.
TWISTD_BOOTSTRAP = "from twisted.scripts.twistd import run; run()"
#: Longest read of a line from a child before it is relayed anyway.
MAX_LINE = 1024 * 1024


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@attrs.frozen
class WorkerPlan:
    """How many worker processes run, and which one this process is."""

    #: Processes in all (this one included); only worker 0 starts the others.
    count: int = 1
    #: 0 for the twistd process, 1 ... count - 1 for the children.
    index: int = 0
    #: Explanations to log at start (e.g. SQLite forcing one process).
    warnings: tuple[str, ...] = ()

    @property
    def several(self) -> bool:
        """Whether this process is one of several (its log lines name it)."""
        return self.count > 1 or self.index > 0


def plan_workers(
    config: Config, requested: int | None, index: int, cpus: int
) -> WorkerPlan:
    """Decide the worker count; raise ConfigError when it cannot work.

    ``requested`` is ``--workers`` (``None`` when absent: the ``WORKERS`` key
    decides); 0 means one per usable CPU.  SQLite always runs one process: a
    second process would only queue behind the first for the database's one
    write lock, with "database is locked" errors once the wait is long.
    Several processes need ``SO_REUSEPORT`` and TCP endpoints.
    """
    wanted = config.workers if requested is None else requested
    if wanted < 0:
        raise ConfigError(f"the worker count must be 0 or more, got {wanted}")
    explicit = wanted != 0
    if wanted == 0:
        wanted = cpus
    if index > 0:
        # A child runs itself only, whatever the files say.
        return WorkerPlan(1, index)
    warnings: list[str] = []
    if wanted > 1 and config.db_driver == "sqlite":
        if explicit:
            warnings.append(
                f"{wanted} workers requested, running one: SQLite allows one"
                " writer at a time, so more processes would only wait for it"
                " (use MySQL/MariaDB for several workers)"
            )
        wanted = 1
    if wanted > 1:
        if not config.so_reuseport:
            raise ConfigError(
                f"{wanted} workers share their ports through SO_REUSEPORT:"
                " set SO_REUSEPORT to true or WORKERS to 1"
            )
        for endpoint in (
            config.http_endpoint,
            config.tcp_endpoint,
            config.metrics_endpoint,
        ):
            try:
                tcp = parse_tcp_endpoint(endpoint) if endpoint else True
            except EndpointError as e:
                raise ConfigError(str(e)) from None
            if tcp is None:
                raise ConfigError(
                    f"{wanted} workers can share only TCP ports, not {endpoint!r}"
                )
    return WorkerPlan(wanted, 0, tuple(warnings))


def worker_argv(
    index: int,
    *,
    configs: Sequence[str],
    http: str | None,
    tcp: str | None,
    supervisor_pid: int,
    python: str = sys.executable,
    dispatched: bool = False,
) -> list[str]:
    """The command line of child ``index``: the same plugin, in the foreground.

    Its log goes to standard output as JSON, for the supervisor to relay.
    ``dispatched``: its HTTP and TCP connections come from worker 0 on
    descriptor :data:`~imagecatcher.dispatch.CHILD_FD`.
    """
    argv = [
        python,
        "-c",
        TWISTD_BOOTSTRAP,
        "--nodaemon",
        "--pidfile=",
        "--logger=imagecatcher.logs.json_observer",
        "imagecatcher",
    ]
    for path in configs:
        argv += ["--config", str(Path(path).absolute())]
    if http:
        argv += ["--httpserver", http]
    if tcp:
        argv += ["--tcpserver", tcp]
    argv += [
        "--workers",
        "1",
        "--worker-index",
        str(index),
        "--supervisor-pid",
        str(supervisor_pid),
    ]
    if dispatched:
        argv.append("--dispatched")
    return argv


@implementer(ILogObserver)
class _Tagger:
    def __init__(self, index: int) -> None:
        self._index = index

    def __call__(self, event: LogEvent) -> None:
        if "worker" in event:
            return
        event["worker"] = self._index
        failure = event.get("log_failure")
        if self._index > 0 and failure is not None and "worker_traceback" not in event:
            # JSON keeps a failure's frames but not its exception's text;
            # the supervisor shows this rendering instead.
            try:
                event["worker_traceback"] = failure.getTraceback()
            except Exception:
                pass
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            name = getattr(level, "name", "-")
            system = f"{event.get('log_namespace', '-')}#{name}"
        event["log_system"] = f"w{self._index} {system}"


def tag_events(index: int) -> ILogObserver:
    """An observer that marks every event with this worker's index.

    It sets ``worker`` (JSON logs show it) and prefixes ``log_system`` with
    ``w<index>`` (text logs show it in the brackets).  Events that already
    name a worker (relayed from a child) are left alone.  Register it before
    the observers that write the log: they see the event after it.
    """
    return _Tagger(index)


def die_with_parent(supervisor_pid: int, signum: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent exits.

    SIGTERM, so that a child whose supervisor was killed still stops cleanly:
    it closes its listening sockets at once and drains its tiles in flight.
    Returns whether the request was made (Linux only).  Exits at once when
    the supervisor is already gone (it died before the request took effect).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if supervisor_pid and os.getppid() != supervisor_pid:
        raise SystemExit(f"worker: supervisor {supervisor_pid} is gone; exiting")
    return True


class _RenderedFailure:
    """Stands in for a relayed failure: its traceback as the child wrote it."""

    def __init__(self, traceback: str) -> None:
        self._traceback = traceback

    def getTraceback(self, *args: object, **kwargs: object) -> str:  # noqa: N802
        """The child's rendering (what log formatters ask for)."""
        return self._traceback

    def getErrorMessage(self) -> str:  # noqa: N802
        """The last line of the traceback."""
        lines = self._traceback.strip().splitlines()
        return lines[-1] if lines else ""


def relayed_event(index: int, line: bytes, *, from_stderr: bool) -> LogEvent:
    """The log event for one line a child wrote.

    Standard output carries Twisted JSON events (``RS JSON NL``); anything
    else (standard error, say a traceback before logging started) becomes a
    text event, at error level for standard error.
    """
    text = line.decode("utf-8", "replace").lstrip("\x1e").rstrip("\r\n")
    if not from_stderr:
        try:
            event = eventFromJSON(text)
        except ValueError:
            event = None
        if isinstance(event, dict):
            event.setdefault("worker", index)
            rendered = event.get("worker_traceback")
            if isinstance(rendered, str) and "log_failure" in event:
                event["log_failure"] = _RenderedFailure(rendered)
            return event
    return {
        "log_format": "{line}",
        "line": text,
        "log_level": LogLevel.error if from_stderr else LogLevel.info,
        "log_namespace": f"imagecatcher.worker{index}",
        "log_time": None,
        "worker": index,
        "log_system": f"w{index} {'stderr' if from_stderr else 'stdout'}",
    }


class _Worker(ProcessProtocol):
    """One child process: relays its output, reports its end."""

    def __init__(
        self,
        index: int,
        publish: ILogObserver,
        clock: Any,
        ended: Callable[[_Worker, Failure], None],
    ) -> None:
        self.index = index
        self.started_at = clock.seconds()
        self.done: Deferred[None] = Deferred()
        self._clock = clock
        self._publish = publish
        self._ended = ended
        self._buffers: dict[int, bytes] = {1: b"", 2: b""}
        #: The child's process id (kept after it exits, for the log).
        self.pid: int | None = None

    def connectionMade(self) -> None:
        """Note the pid; the child needs no standard input."""
        assert self.transport is not None
        self.pid = getattr(self.transport, "pid", None)
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N802, N803
        """Relay every complete line; keep the rest for the next chunk."""
        buffered = self._buffers.get(childFD, b"") + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > MAX_LINE:
            lines.append(rest)
            rest = b""
        self._buffers[childFD] = rest
        for line in lines:
            if line.strip(b"\x1e\r "):
                self._relay(childFD, line)

    def childConnectionLost(self, childFD: int) -> None:  # noqa: N802, N803
        """Relay an unterminated last line."""
        rest = self._buffers.pop(childFD, b"")
        if rest.strip(b"\x1e\r "):
            self._relay(childFD, rest)

    def _relay(self, fd: int, line: bytes) -> None:
        event = relayed_event(self.index, line, from_stderr=fd == 2)
        if event.get("log_time") is None:
            event["log_time"] = self._clock.seconds()
        self._publish(event)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        """Tell the supervisor, then whoever waits for this child."""
        self._ended(self, reason)
        self.done.callback(None)

    def signal(self, name: str) -> None:
        """Send a signal (``"TERM"``, ``"KILL"``) unless the child is gone."""
        if self.transport is None:
            return
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass


class Supervisor(Service):
    """Starts workers 1 ... count - 1, restarts them, and stops them first.

    Put it last in a service tree that stops its children in reverse order:
    its stop then runs before this process's own listeners close.
    """

    def __init__(
        self,
        reactor: Any,
        count: int,
        argv: Callable[[int], list[str]],
        *,
        publish: ILogObserver,
        environ: Callable[[], Mapping[str, str]] = lambda: dict(os.environ),
        cwd: Callable[[], str] = os.getcwd,
        stop_timeout: float = 45.0,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        stable_after: float = 30.0,
        on_exit: Callable[[int], object] = lambda pid: None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._reactor = reactor
        #: Hands the children their connections (None: they listen themselves).
        self._dispatcher = dispatcher
        #: Called with the pid of every child that exited (its metrics go).
        self._on_exit = on_exit
        self._count = count
        self._argv = argv
        self._publish = publish
        self._environ = environ
        self._cwd = cwd
        self._stop_timeout = stop_timeout
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self._stopping = False
        #: Running children by worker index.
        self.workers: dict[int, _Worker] = {}
        self._restarts: dict[int, IDelayedCall] = {}
        self._failures: dict[int, int] = {}

    def pids(self) -> dict[int, int]:
        """Process ids of the running children, by worker index."""
        return {i: w.pid for i, w in self.workers.items() if w.pid is not None}

    def startService(self) -> None:
        """Start every child."""
        super().startService()
        self._stopping = False
        for index in range(1, self._count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self._stopping:
            return
        worker = _Worker(index, self._publish, self._reactor, self._child_ended)
        argv = self._argv(index)
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        channel = None
        if self._dispatcher is not None:
            channel, child_end = channel_pair()
            child_fds[CHILD_FD] = child_end.fileno()
        try:
            self._reactor.spawnProcess(
                worker,
                argv[0],
                argv,
                env=dict(self._environ()),
                path=self._cwd(),
                childFDs=child_fds,
            )
        except Exception:
            log.failure("could not start worker {index}", index=index)
            if channel is not None:
                channel.close()
            self._schedule_restart(index)
            return
        finally:
            if channel is not None:
                child_end.close()
        if self._dispatcher is not None and channel is not None:
            self._dispatcher.add_child(index, channel)
        self.workers[index] = worker
        log.info("started worker {index} (pid {pid})", index=index, pid=worker.pid)

    def _child_ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
            if self._dispatcher is not None:
                self._dispatcher.remove_child(worker.index)
        if worker.pid is not None:
            self._on_exit(worker.pid)
        code = getattr(reason.value, "exitCode", None)
        signum = getattr(reason.value, "signal", None)
        how = f"signal {signum}" if signum else f"status {code}"
        if self._stopping:
            log.info("worker {index} exited ({how})", index=worker.index, how=how)
            return
        if self._reactor.seconds() - worker.started_at >= self._stable_after:
            self._failures[worker.index] = 0
        log.error(
            "worker {index} (pid {pid}) exited unexpectedly ({how})",
            index=worker.index,
            pid=worker.pid,
            how=how,
        )
        self._schedule_restart(worker.index)

    def _schedule_restart(self, index: int) -> None:
        failures = self._failures.get(index, 0)
        self._failures[index] = failures + 1
        delay = min(self._first_backoff * 2.0**failures, self._max_backoff)
        log.info("restarting worker {index} in {delay}s", index=index, delay=delay)
        self._restarts[index] = self._reactor.callLater(delay, self._spawn, index)

    def stopService(self) -> Deferred[None]:
        """SIGTERM every child and wait for all to exit (SIGKILL after a deadline)."""
        super().stopService()
        self._stopping = True
        if self._dispatcher is not None:
            self._dispatcher.close()  # new connections stay in worker 0
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        return Deferred.fromCoroutine(self._stop_all(list(self.workers.values())))

    async def _stop_all(self, workers: Iterable[_Worker]) -> None:
        workers = list(workers)
        if not workers:
            return
        log.info("stopping {n} worker(s)", n=len(workers))
        for worker in workers:
            worker.signal("TERM")
        all_done = defer.gatherResults([w.done for w in workers]).addCallback(
            lambda _: None
        )
        timer: Deferred[None] = Deferred()
        call = self._reactor.callLater(self._stop_timeout, timer.callback, None)
        await defer.DeferredList([all_done, timer], fireOnOneCallback=True)
        if call.active():
            call.cancel()
            return
        left = [w for w in workers if not w.done.called]
        log.error(
            "{n} worker(s) still running after {timeout}s; killing them",
            n=len(left),
            timeout=self._stop_timeout,
        )
        for worker in left:
            worker.signal("KILL")
        await defer.gatherResults([w.done for w in left])
