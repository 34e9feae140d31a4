"""``imagecatcher-client``: rig-side actions against a running service (§10.4).

Usage::

    imagecatcher-client [ACTION] --acq-dir DIR [options]
    imagecatcher-client -action ACTION -acq-dir-url file:///DIR [old flags]

Actions (``-action``/``--action`` or the first argument; default ``send-tile``):

``send-acq-log``
    POST ``<uid>*_logfile.ini`` to start-acquisition (§1.3).
``send-rois`` (alias ``create-rois``)
    POST ``<uid>*_ROI_spec.ini`` and ``<uid>*_ROI_tiles.csv`` to create-rois (§1.4).
``send-tile``
    Send ``<dir>/colNNNN/colNNNN_rowNNNN_camK.tif`` for ``-col``, ``-row``, ``-camera``.
``send-acq``
    Start the acquisition, import its ROIs, replay ``<uid>*_DAQ timing.csv``
    (one step per row, ``-rate`` ms apart; ``-camera -1`` sends all four
    cameras' tiles through four senders), wait until every tile is
    acknowledged, then end the acquisition as ``end-acq`` does.
``end-acq``
    POST end-acquisition with ``<uid>*_mosaic.png`` and the other ancillary
    files of the directory (§1.6, §5.6), empty ones left out.
``feed-acquisition``
    What ``feed-acquisition.sh`` did (§10.6), done with ``--parallel N``
    senders and bounded retries with backoff on transient failures
    (connection errors, HTTP 5xx, a TCP refusal with the system status RED):
    start-acquisition, create-rois, every tile under the subdirectories
    (``colNNNN/`` and drift ``Dump_*`` frames), then end-acquisition.  With
    ``--resume`` it first lists the tiles the service stores (GET
    ``/acquisition/<uid>/tiles``, stable and drift, page by page) and sends
    no bytes for a tile whose stored SHA-1 equals the local file's.

``send-acq`` and ``feed-acquisition`` end the acquisition only when every
tile was acknowledged: after a failure or Ctrl-C, run the feed again with
``--resume``.

Tiles go by ``-send-method``: ``HTTP-PUT`` (raw body, ``tile-filename`` and
hex MD5 ``checksum`` in the query), ``HTTP-POST`` (multipart ``tile-file``,
``tile-filename``, ``checksum-str``) or ``TCP-SEND`` (alias ``TCP-PUT``,
the default: the FlatBuffers protocol of §3 with the MD5).  Every sender
keeps one connection open.  ``-service-url``, ``-acq-service-url`` and
``-tile-service-url`` take ``http://host:port`` or ``host:port`` for every
method; without ``-tile-service-url`` a TCP sender goes to the service host
on port 5002.  ``--token TOKEN`` (default: the ``IMAGECATCHER_TOKEN``
environment variable, which ``ps`` does not show) goes with every HTTP
request as ``Authorization: Bearer`` for a daemon with ``API_TOKENS``.

Old single-dash flags work beside the ``--long`` ones: ``-action``,
``-service-url``, ``-acq-service-url``, ``-tile-service-url``,
``-acq-dir-url`` (a path, optionally ``file://``), ``-camera``, ``-col``,
``-row``, ``-rate``, ``-send-method``, ``-logfile``.  An unknown action or
method is a usage error (exit status 2).

Long runs draw a progress bar (``tqdm``) on stderr when it is a terminal and
end with a summary table; ``--json FILE`` writes the results.  Exit status: 0
when everything succeeded, 1 when a tile or a request failed, 2 for usage
errors, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
from zope.interface import implementer

from twisted.logger import ILogObserver, LogEvent, Logger, textFileLogObserver

from imagecatcher.cli.feed import (
    AcquisitionDir,
    AcquisitionDirError,
    EndResult,
    SendOutcome,
    end_acquisition,
    feed_acquisition,
    send_acq_log,
    send_rois,
    send_steps,
)
from imagecatcher.cli.progress import (
    ProgressBar,
    Tracker,
    format_table,
    summary_rows,
    write_json,
)
from imagecatcher.cli.sender import (
    DEFAULT_HTTP_PORT,
    DEFAULT_TCP_PORT,
    Endpoint,
    Method,
    RetryPolicy,
    SendError,
    ServiceClient,
    TileJob,
    TileSender,
    add_token_argument,
    make_sender,
    parse_endpoint,
    parse_method,
)

ACTIONS = (
    "send-acq-log",
    "send-rois",
    "create-rois",
    "send-tile",
    "send-acq",
    "end-acq",
    "feed-acquisition",
)
ALIASES = {"create-rois": "send-rois"}
DEFAULT_SERVICE_URL = f"http://localhost:{DEFAULT_HTTP_PORT}"
#: The DAQ timing CSV columns of one camera: ``Cam K Col`` and ``Cam K Row``.
CAMERAS = 4
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


@attrs.frozen
class ClientOptions:
    """A parsed, checked command line."""

    action: str
    acq_dir: str
    acq_endpoint: Endpoint
    tile_endpoint: Endpoint
    method: Method
    camera: int = 0
    col: int = 0
    row: int = 0
    rate_ms: float = 0.0
    parallel: int = 1
    retries: int = 3
    timeout: float = 120.0
    resume: bool = False
    json_path: Path | None = None
    logfile: Path | None = None
    #: Bearer token of the HTTP requests ("" = none); never shown.
    token: str = attrs.field(default="", repr=False)

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of every request."""
        return RetryPolicy(retries=self.retries)

    def connect(self) -> TileSender:
        """A new tile sender (one connection) for the chosen method."""
        return make_sender(self.method, self.tile_endpoint, self.timeout, self.token)


def _method(text: str) -> Method:
    try:
        return parse_method(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: ``--long`` flags and the old single-dash ones."""
    p = argparse.ArgumentParser(
        prog="imagecatcher-client",
        description="Send acquisitions and tiles to an imagecatcher service.",
        epilog="See the module documentation (pydoc imagecatcher.cli.client).",
        allow_abbrev=False,
    )
    p.add_argument(
        "action_arg",
        nargs="?",
        choices=ACTIONS,
        metavar="ACTION",
        help=f"what to do: {', '.join(ACTIONS)}",
    )
    p.add_argument("-action", "--action", choices=ACTIONS, help="the same as ACTION")
    p.add_argument(
        "-service-url",
        "--service-url",
        default=DEFAULT_SERVICE_URL,
        metavar="URL",
        help="service address, http://host:port or host:port (default %(default)s)",
    )
    p.add_argument(
        "-acq-service-url",
        "--acq-service-url",
        metavar="URL",
        help="address for acquisition calls (default: the service URL)",
    )
    p.add_argument(
        "-tile-service-url",
        "--tile-service-url",
        metavar="URL",
        help="address for tiles (default: the service URL; for TCP its host"
        f" on port {DEFAULT_TCP_PORT})",
    )
    p.add_argument(
        "-acq-dir-url",
        "--acq-dir-url",
        "--acq-dir",
        dest="acq_dir",
        metavar="DIR",
        help="the acquisition directory, a path or file:// URL (required)",
    )
    p.add_argument(
        "-camera",
        "--camera",
        type=int,
        default=0,
        help="camera of send-tile; for send-acq -1 means all four (default 0)",
    )
    p.add_argument("-col", "--col", type=int, default=0, help="send-tile column")
    p.add_argument("-row", "--row", type=int, default=0, help="send-tile row")
    p.add_argument(
        "-rate",
        "--rate",
        type=float,
        default=0.0,
        metavar="MS",
        help="milliseconds between send-acq steps (default 0)",
    )
    p.add_argument(
        "-send-method",
        "--send-method",
        type=_method,
        default=Method.TCP,
        metavar="METHOD",
        help="HTTP-PUT, HTTP-POST or TCP-SEND (alias TCP-PUT; the default)",
    )
    p.add_argument(
        "-logfile",
        "--logfile",
        type=Path,
        metavar="FILE",
        help="log every request to FILE (its directory is created)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="senders (connections) at once (default: feed 4, send-acq 4 with"
        " -camera -1 else 1)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="feed-acquisition: skip tiles the service already stores",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        metavar="N",
        help="retries of a request after a transient failure (default 3)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="per-request timeout (default 120)",
    )
    p.add_argument(
        "--json", type=Path, metavar="FILE", help="write the results as JSON to FILE"
    )
    add_token_argument(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> ClientOptions:
    """Parse and check a command line; usage errors exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action and args.action_arg and args.action != args.action_arg:
        parser.error(f"two actions given: {args.action_arg} and {args.action}")
    action = args.action or args.action_arg or "send-tile"
    action = ALIASES.get(action, action)
    if not args.acq_dir:
        parser.error("the acquisition directory (-acq-dir-url/--acq-dir) is required")
    method: Method = args.send_method
    try:
        service = parse_endpoint(args.service_url, DEFAULT_HTTP_PORT)
        acq = (
            parse_endpoint(args.acq_service_url, DEFAULT_HTTP_PORT)
            if args.acq_service_url
            else service
        )
        if args.tile_service_url:
            default_port = DEFAULT_TCP_PORT if method.is_tcp else DEFAULT_HTTP_PORT
            tile = parse_endpoint(args.tile_service_url, default_port)
        elif method.is_tcp:
            tile = Endpoint(acq.host, DEFAULT_TCP_PORT)
        else:
            tile = acq
    except ValueError as e:
        parser.error(str(e))
    if action == "send-acq" and not -1 <= args.camera < CAMERAS:
        parser.error("send-acq takes -camera 0..3, or -1 for all cameras")
    if action == "send-tile" and min(args.camera, args.col, args.row) < 0:
        parser.error("send-tile needs a camera, col and row >= 0")
    if args.parallel is not None and args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if args.retries < 0 or args.rate < 0 or args.timeout <= 0:
        parser.error("--retries and -rate must be >= 0, --timeout > 0")
    parallel = args.parallel
    if parallel is None:
        all_cameras = action == "send-acq" and args.camera == -1
        parallel = 4 if action == "feed-acquisition" or all_cameras else 1
    return ClientOptions(
        action=action,
        acq_dir=args.acq_dir,
        acq_endpoint=acq,
        tile_endpoint=tile,
        method=method,
        camera=args.camera,
        col=args.col,
        row=args.row,
        rate_ms=args.rate,
        parallel=parallel,
        retries=args.retries,
        timeout=args.timeout,
        resume=args.resume,
        json_path=args.json,
        logfile=args.logfile,
        token=args.token,
    )


def daq_steps(text: str, camera: int) -> list[list[tuple[int, int, int]]]:
    """The steps of a DAQ timing CSV: per row, the (camera, col, row) to send.

    The header names the columns ``Cam K Col`` and ``Cam K Row`` (others are
    ignored; quotes and spaces around cells are dropped).  A camera's tile is
    in a step when both its cells are integers.  ``camera`` -1 selects all.

    :raises AcquisitionDirError: when a selected camera has no columns.
    """
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    header = [c.strip().strip('"').strip() for c in next(rows, [])]
    cameras = range(CAMERAS) if camera == -1 else [camera]
    columns: list[tuple[int, int, int]] = []
    for cam in cameras:
        try:
            columns.append(
                (cam, header.index(f"Cam {cam} Col"), header.index(f"Cam {cam} Row"))
            )
        except ValueError:
            raise AcquisitionDirError(
                f"the DAQ timing CSV has no 'Cam {cam} Col'/'Cam {cam} Row' columns"
            ) from None
    steps: list[list[tuple[int, int, int]]] = []
    for record in rows:
        cells = [c.strip().strip('"').strip() for c in record]
        if not any(cells):
            continue
        step = []
        for cam, col_at, row_at in columns:
            try:
                step.append((cam, int(cells[col_at]), int(cells[row_at])))
            except (IndexError, ValueError):
                continue
        steps.append(step)
    return steps


@implementer(ILogObserver)
class _Locked:
    """A log observer made safe for sender threads."""

    def __init__(self, observer: ILogObserver) -> None:
        self._observer = observer
        self._lock = threading.Lock()

    def __call__(self, event: LogEvent) -> None:
        with self._lock:
            self._observer(event)


@implementer(ILogObserver)
class _Discard:
    """An observer that drops events (no ``-logfile``)."""

    def __call__(self, event: LogEvent) -> None:
        """Drop ``event``."""


@contextmanager
def open_log(path: Path | None) -> Iterator[Logger]:
    """A Logger writing to ``path`` (directory created), or dropping everything."""
    if path is None:
        yield Logger(namespace="imagecatcher.client", observer=_Discard())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        observer = _Locked(textFileLogObserver(f))
        yield Logger(namespace="imagecatcher.client", observer=observer)


@attrs.define
class _Run:
    """One client run: options, log, console and the results for ``--json``."""

    options: ClientOptions
    log: Logger
    out: TextIO
    err: TextIO
    tracker: Tracker = attrs.field(factory=Tracker)
    progress: ProgressBar | None = None
    report_data: dict[str, Any] = attrs.field(factory=dict)

    def say(self, text: str) -> None:
        """A line on stderr (above the progress bar) and in the log."""
        self.log.info("{text}", text=text)
        if self.progress is not None:
            self.progress.message(text)
        else:
            self.err.write(text + "\n")

    def service(self) -> ServiceClient:
        """A client for the acquisition calls."""
        return ServiceClient(
            self.options.acq_endpoint, self.options.timeout, self.options.token
        )

    def acquisition(self) -> AcquisitionDir:
        """The acquisition directory."""
        return AcquisitionDir.open(self.options.acq_dir)

    def tiles(
        self,
        steps: Sequence[Sequence[TileJob]],
        acq_id: int,
        parallel: int,
        rate: float = 0.0,
        table: bool = True,
    ) -> SendOutcome:
        """Send tiles with a progress bar; record the outcome."""
        self.tracker.total = sum(len(s) for s in steps)
        with self.showing_progress():
            outcome = send_steps(
                steps,
                acq_id=acq_id,
                parallel=parallel,
                connect=self.options.connect,
                retry=self.options.retry,
                tracker=self.tracker,
                log=self.log,
                report=self.say,
                rate=rate,
            )
        self.record_tiles(outcome, table)
        return outcome

    @contextmanager
    def showing_progress(self) -> Iterator[None]:
        """Draw the progress bar (on a terminal) while the block runs."""
        bar = ProgressBar(self.tracker, self.err)
        self.progress = bar
        try:
            with bar:
                yield
        finally:
            self.progress = None

    def record_tiles(self, outcome: SendOutcome, table: bool = True) -> None:
        """Print the summary table; keep the tile results for ``--json``."""
        if table:
            rows = summary_rows(outcome.snapshot, outcome.latency)
            self.out.write(format_table(("summary", ""), rows, align="lr") + "\n")
        self.report_data.update(
            tiles=outcome.snapshot.to_json(),
            latency=outcome.latency.to_json(),
            interrupted=outcome.interrupted,
            results=[r.to_json() for r in outcome.results],
        )

    def end(self, acq: AcquisitionDir, acq_id: int) -> EndResult:
        """end-acquisition with the ancillary files; print what happened."""
        service = self.service()
        try:
            result = end_acquisition(acq, acq_id, service, self.options.retry)
        finally:
            service.close()
        for name in result.skipped_empty:
            self.say(f"left out the empty ancillary file {name}")
        for entry in result.results:
            if "errormessage" in entry:
                self.say(f"ancillary file {entry.get('name')}: {entry['errormessage']}")
            else:
                self.say(f"stored ancillary file {entry.get('name')}")
        self.say(f"ended acquisition {acq_id} (HTTP {result.status})")
        self.report_data["end_acquisition"] = {
            "status": result.status,
            "af_results": result.results,
            "skipped_empty": result.skipped_empty,
        }
        return result


def _send_acq_log(run: _Run) -> int:
    service = run.service()
    try:
        uid = send_acq_log(run.acquisition(), service, run.options.retry)
    finally:
        service.close()
    run.report_data["acq_id"] = uid
    run.say(f"started acquisition {uid}")
    return 0


def _send_rois(run: _Run) -> int:
    acq = run.acquisition()
    service = run.service()
    try:
        send_rois(acq, acq.uid, service, run.options.retry)
    finally:
        service.close()
    run.report_data["acq_id"] = acq.uid
    run.say(f"created the ROIs of acquisition {acq.uid}")
    return 0


def _send_tile(run: _Run) -> int:
    acq = run.acquisition()
    o = run.options
    run.report_data["acq_id"] = acq.uid
    path = acq.tile_path(o.col, o.row, o.camera)
    outcome = run.tiles([[TileJob(path)]], acq.uid, 1, table=False)
    for result in outcome.results:
        if result.outcome == "sent":
            run.out.write(
                f"sent {result.name}: tile id {result.tile_id}"
                f" in {result.seconds * 1000:.1f} ms\n"
            )
    return EXIT_FAILED if outcome.failed else 0


def _finish(run: _Run, acq: AcquisitionDir, uid: int, outcome: SendOutcome) -> int:
    """End the acquisition when every tile made it; the exit status."""
    if outcome.interrupted:
        run.say(f"interrupted: acquisition {uid} not ended")
        return EXIT_INTERRUPTED
    sent = outcome.snapshot.sent + outcome.snapshot.skipped
    if outcome.failed:
        run.say(
            f"{outcome.failed} tile(s) failed: acquisition {uid} not ended;"
            " run feed-acquisition --resume to complete it"
        )
        return EXIT_FAILED
    end = run.end(acq, uid)
    run.out.write(f"Submitted {sent} image tiles for {uid}\n")
    return 0 if end.ok else EXIT_FAILED


def _send_acq(run: _Run) -> int:
    acq = run.acquisition()
    o = run.options
    timing = acq.one("_DAQ timing.csv")
    try:
        text = timing.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise AcquisitionDirError(f"cannot read {timing}: {e.strerror or e}") from e
    steps = [
        [TileJob(acq.tile_path(col, row, cam)) for cam, col, row in step]
        for step in daq_steps(text, o.camera)
    ]
    uid = _start(run, acq)
    run.report_data["steps"] = len(steps)
    outcome = run.tiles(steps, uid, o.parallel, rate=o.rate_ms / 1000)
    return _finish(run, acq, uid, outcome)


def _start(run: _Run, acq: AcquisitionDir) -> int:
    service = run.service()
    try:
        uid = send_acq_log(acq, service, run.options.retry)
        run.say(f"started acquisition {uid}")
        send_rois(acq, uid, service, run.options.retry)
        run.say(f"created the ROIs of acquisition {uid}")
    finally:
        service.close()
    run.report_data["acq_id"] = uid
    return uid


def _end_acq(run: _Run) -> int:
    acq = run.acquisition()
    run.report_data["acq_id"] = acq.uid
    return 0 if run.end(acq, acq.uid).ok else EXIT_FAILED


def _feed(run: _Run) -> int:
    acq = run.acquisition()
    o = run.options
    service = run.service()
    try:
        with run.showing_progress():
            uid, outcome = feed_acquisition(
                acq,
                service=service,
                connect=o.connect,
                parallel=o.parallel,
                retry=o.retry,
                resume=o.resume,
                tracker=run.tracker,
                log=run.log,
                report=run.say,
            )
    finally:
        service.close()
    run.report_data["acq_id"] = uid
    run.record_tiles(outcome)
    return _finish(run, acq, uid, outcome)


_ACTIONS: dict[str, Callable[[_Run], int]] = {
    "send-acq-log": _send_acq_log,
    "send-rois": _send_rois,
    "send-tile": _send_tile,
    "send-acq": _send_acq,
    "end-acq": _end_acq,
    "feed-acquisition": _feed,
}


def run(options: ClientOptions, out: TextIO, err: TextIO) -> int:
    """Run one action; its exit status."""
    with open_log(options.logfile) as log:
        r = _Run(options, log, out, err)
        r.report_data.update(action=options.action, method=options.method.value)
        log.info(
            "{action} of {dir} to {acq} (tiles {method} to {tiles})",
            action=options.action,
            dir=options.acq_dir,
            acq=options.acq_endpoint,
            method=options.method.value,
            tiles=options.tile_endpoint,
        )
        try:
            status = _ACTIONS[options.action](r)
        except (SendError, AcquisitionDirError) as e:
            log.error("{action} failed: {error}", action=options.action, error=e)
            err.write(f"imagecatcher-client: {e}\n")
            r.report_data["error"] = str(e)
            status = EXIT_FAILED
        except KeyboardInterrupt:
            err.write("imagecatcher-client: interrupted\n")
            status = EXIT_INTERRUPTED
        r.report_data["ok"] = status == 0
        if options.json_path is not None:
            write_json(options.json_path, r.report_data)
        return status


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    options = parse_args(argv)
    sys.exit(run(options, sys.stdout, sys.stderr))
