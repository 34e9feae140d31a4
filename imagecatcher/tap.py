"""The ``twistd imagecatcher`` plugin's options and service maker."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from twisted.application.service import IService
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python import usage

from imagecatcher.config import Config, ConfigError
from imagecatcher.db.pool import DatabaseUnavailable, check_database
from imagecatcher.dispatch import Dispatcher, DispatchReceiver
from imagecatcher.memory import keep_freed_memory
from imagecatcher.metrics import (
    Metrics,
    multiprocess_directory,
    single_process,
    use_multiprocess,
)
from imagecatcher.service import STOP_DEADLINE, build_service
from imagecatcher.workers import (
    Supervisor,
    die_with_parent,
    plan_workers,
    tag_events,
    usable_cpus,
    worker_argv,
)

log = Logger()

#: How much longer than a worker's own drain the supervisor waits for it.
CHILD_STOP_MARGIN = 15.0


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"expected 0 or more, got {number}")
    return number


class Options(usage.Options):
    """``twistd imagecatcher`` options (CONTRACT §10.2)."""

    synopsis = (
        "--config FILE [--config FILE...] [--httpserver ADDR] [--tcpserver ADDR]"
        " [--workers N]"
    )
    longdesc = (
        "Capture TEMCA tiles over HTTP and raw TCP.  ADDR is a Twisted endpoint"
        " string (tcp:5001:interface=127.0.0.1) or the old :5001 / host:5001 form;"
        " leave one out to run without that server."
    )
    optFlags = [
        [
            "dispatched",
            None,
            "Internal: this worker's connections come from worker 0.",
        ],
    ]
    optParameters = [
        ["httpserver", None, None, "HTTP endpoint, e.g. tcp:5001 or :5001."],
        ["tcpserver", None, None, "Raw TCP tile endpoint, e.g. tcp:5002 or :5002."],
        [
            "workers",
            None,
            None,
            "Worker processes sharing the ports (overrides WORKERS; 0 = one per CPU).",
            _count,
        ],
        [
            "worker-index",
            None,
            0,
            "Internal: set by the supervising process on the workers it starts.",
            _count,
        ],
        [
            "supervisor-pid",
            None,
            0,
            "Internal: a worker exits when this process does.",
            _count,
        ],
    ]

    def opt_config(self, value: str) -> None:
        """Configuration file(s); repeatable and comma-separated; later files win."""
        self.setdefault("config", []).extend(
            p.strip() for p in value.split(",") if p.strip()
        )

    def postOptions(self) -> None:
        try:
            config = Config.load(
                [Path(p) for p in self.get("config", [])],
                http=self["httpserver"],
                tcp=self["tcpserver"],
            )
            plan = plan_workers(
                config, self["workers"], self["worker-index"], usable_cpus()
            )
            check_database(config)
        except ConfigError as e:
            raise usage.UsageError(f"Error reading the configuration(s): {e}") from e
        except DatabaseUnavailable as e:
            raise usage.UsageError(f"Database unavailable: {e}") from e
        self["parsed"] = config
        self["plan"] = plan


def makeService(options: Options) -> IService:
    """Build the daemon's service tree on the global reactor."""
    from twisted.internet import reactor
    from twisted.logger import globalLogPublisher

    plan = options["plan"]
    if plan.several:
        # Before twistd adds the observers that write the log (it does so
        # after makeService), so they see every event already tagged.
        globalLogPublisher.addObserver(tag_events(plan.index))
    if plan.index > 0:
        die_with_parent(options["supervisor-pid"])
    for text in plan.warnings:
        log.warn("{text}", text=text)
    if not keep_freed_memory():
        log.info("the C library has no mallopt: freed tile buffers go back to it")
    config = options["parsed"]
    # Before prometheus_client is first imported (by Metrics): several
    # workers share their metrics through files, emptied by worker 0.
    metrics_dir = None
    if plan.several:
        metrics_dir = multiprocess_directory(config.spool_dir)
        use_multiprocess(metrics_dir, clean=plan.index == 0)
    else:
        single_process()
    metrics = Metrics(metrics_dir)
    supervisor = None
    dispatch: Dispatcher | DispatchReceiver | None = None
    if plan.index > 0 and options["dispatched"]:
        dispatch = DispatchReceiver(reactor)
    if plan.count > 1:
        dispatch = Dispatcher(reactor)
        log.info("running {n} worker processes", n=plan.count)
        argv = functools.partial(
            _child_argv,
            configs=[str(Path(p).absolute()) for p in options.get("config", [])],
            http=options["httpserver"],
            tcp=options["tcpserver"],
        )
        supervisor = Supervisor(
            reactor,
            plan.count,
            argv,
            publish=globalLogPublisher,
            stop_timeout=STOP_DEADLINE + CHILD_STOP_MARGIN,
            on_exit=lambda pid: deferToThread(metrics.process_exited, pid),
            dispatcher=dispatch,
        )
    return build_service(
        config, reactor, workers=supervisor, metrics=metrics, dispatch=dispatch
    )


def _child_argv(
    index: int, *, configs: list[str], http: str | None, tcp: str | None
) -> list[str]:
    # The pid is read when the child starts: twistd may daemonize (fork)
    # after makeService.
    return worker_argv(
        index,
        configs=configs,
        http=http,
        tcp=tcp,
        supervisor_pid=os.getpid(),
        dispatched=True,
    )
