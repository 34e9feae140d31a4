"""``imagecatcher-simulator``: a rig's load on the service (§10.5, §12.2).

Usage::

    imagecatcher-simulator [--service-url URL] [--tile-service-url URL]
        [--method tcp|http|http-post] [--cameras N] [--rate MS]
        [--tile-size BYTES] [--duration SECONDS | --tiles N] [--acq-id UID]
        [--json FILE] [--token TOKEN]

It creates its own acquisition (start-acquisition with an INI log written
here, UID from the clock unless ``--acq-id``), then runs one sender per
camera, each on its own persistent connection, the way a rig does: a tile
every ``--rate`` ms per camera, each one acknowledged before the next is
sent.  A tile that is due while the previous one is still unacknowledged
goes as soon as that acknowledgement arrives.  Columns and rows both advance
(Q40): step ``i`` covers grid position ``(i mod X, i div X)`` and the four
cameras take the 2x2 tiles there, so every tile name is new.  The bytes are
random per camera with the tile number stamped in, so no two tiles are equal.

``--tile-size`` takes bytes with an optional ``k``/``K`` (KiB) or ``m``/``M``
(MiB) suffix (default 5557452, the 5.3 MiB of §12.1); ``--tiles N`` stops
after N tiles per camera, ``--duration`` after that many seconds (default
10).  At the end, Ctrl-C included, it ends the acquisition (``--no-end``
keeps it open) and
reports per camera the acknowledgement latency (p50, p99, max) and how many
acknowledgements took longer than the rate; ``--json FILE`` writes the same.
Exit status 1 when a tile failed, 2 for usage errors, 130 when interrupted.

The old flags ``-service-url``, ``-rate``, ``-image-size`` and
``-iterations`` (tiles per camera) are accepted too.  ``--token`` (default:
``IMAGECATCHER_TOKEN`` from the environment) authenticates its HTTP requests
to a daemon with ``API_TOKENS``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import attrs

from imagecatcher.cli.progress import (
    Latency,
    ProgressBar,
    Tracker,
    format_table,
    write_json,
)
from imagecatcher.cli.sender import (
    DEFAULT_HTTP_PORT,
    DEFAULT_TCP_PORT,
    Endpoint,
    Method,
    SendError,
    ServiceClient,
    Tile,
    TileSender,
    add_token_argument,
    make_sender,
    parse_endpoint,
)
from imagecatcher.names import stable_name

DEFAULT_TILE_SIZE = 5_557_452
DEFAULT_DURATION = 10.0
#: Mosaic steps of the synthetic log (as the fixture): the grid is 2X x 2Y tiles.
X_STEPS, Y_STEPS = 54, 76
METHODS = {"tcp": Method.TCP, "http": Method.HTTP_PUT, "http-post": Method.HTTP_POST}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kKmM]?)")
EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


def parse_size(text: str) -> int:
    """Bytes from ``5557452``, ``512k``/``512K`` (KiB) or ``5.3m``/``5.3M`` (MiB).

    :raises ValueError: for anything else, or a size below one byte.
    """
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"bad size {text!r}: a number with an optional k or m")
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    size = int(float(match.group(1)) * scale)
    if size < 1:
        raise ValueError(f"bad size {text!r}: at least one byte")
    return size


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def clock_uid(now: datetime) -> int:
    """An acquisition UID from the clock, ``yyMMddHHmmss`` like the rig's."""
    return int(now.strftime("%y%m%d%H%M%S"))


def synthetic_log(acq_id: int, when: datetime, cameras: int, sample: str) -> str:
    """An acquisition INI log (§7.1) for a simulated acquisition.

    It has the shape of a rig's log: the sections and keys the service
    parses, a TEM address the seed data resolves to temca 2, and a few of the
    informational sections a real log carries.
    """
    connected = ["TRUE"] * 4 if cameras > 1 else ["TRUE", "FALSE", "FALSE", "FALSE"]
    date = when.strftime("%m/%d/%Y     %I:%M:%S %p")
    lines = [
        "[General]",
        f'Date = "{date}"',
        f'Sample name = "{sample}"',
        'Grid box number = "0"',
        'Grid number = "G0"',
        'Section number = "1"',
        'Microscopist name = "imagecatcher-simulator"',
        f'Notes = "simulated acquisition {acq_id}"',
        "",
        "[Version]",
        'Type = "Simulator"',
        "",
        "[Camera Connections]",
        *(f"Acq{n} = {value}" for n, value in enumerate(connected, start=1)),
        "",
        "[Machine IDs]",
        'TEM IP address = "10.101.50.60"',
        'TEM PC Name = "SIMULATED-TEM"',
        *(f'ACQ {n} IP address = "127.0.0.{n}"' for n in range(1, 5)),
        "",
        "[Mosaic Settings]",
        f"Number of X steps = {X_STEPS}",
        f"Number of Y steps = {Y_STEPS}",
        "X big step (pix) = 5550",
        "X sm step (pix) = 1950",
        "Y big step (pix) = 5450",
        "Y sm step (pix) = 1850",
        "Center X (m) = 0",
        "Center Y (m) = 0",
        "TEM Y (m) = 0",
        "",
        "[Camera Settings]",
        'Exp (ms) = "35.000000"',
        'Number of images = "1"',
        "",
        "[TEM Settings]",
        'Pixels per um = "242"',
        'Magnification = "2900"',
        "",
        "[ImageCatcher]",
        'project = "simulation"',
        'owner = "simulator"',
        'stack = ""',
        'mosaicType = "simulated"',
        "",
    ]
    return "\r\n".join(lines)


def tile_position(index: int, camera: int, cameras: int) -> tuple[int, int]:
    """(col, row) of a camera's ``index``-th tile: cols and rows both advance."""
    step_col, step_row = index % X_STEPS, (index // X_STEPS) % Y_STEPS
    if cameras == 1:
        return step_col, step_row
    return 2 * step_col + camera % 2, 2 * step_row + camera // 2


#: Errors kept per camera for the summary; later ones are only counted.
MAX_ERRORS_KEPT = 20
#: Seconds a camera waits after a failed tile before the next one.
FAILURE_PAUSE = 0.1


@attrs.frozen
class SimulatorOptions:
    """A parsed simulator command line."""

    acq_endpoint: Endpoint
    tile_endpoint: Endpoint
    method: Method
    cameras: int = 4
    rate_ms: float = 150.0
    tile_size: int = DEFAULT_TILE_SIZE
    duration: float | None = DEFAULT_DURATION
    tiles: int | None = None
    acq_id: int | None = None
    sample: str = "SIMULATION"
    end: bool = True
    timeout: float = 60.0
    json_path: Path | None = None
    #: Bearer token of the HTTP requests ("" = none); never shown.
    token: str = attrs.field(default="", repr=False)


def build_parser() -> argparse.ArgumentParser:
    """The simulator's argument parser."""
    p = argparse.ArgumentParser(
        prog="imagecatcher-simulator",
        description="Load an imagecatcher service the way a camera rig does.",
        allow_abbrev=False,
    )
    p.add_argument(
        "--service-url",
        "-service-url",
        default=f"http://localhost:{DEFAULT_HTTP_PORT}",
        metavar="URL",
        help="HTTP service, http://host:port or host:port (default %(default)s)",
    )
    p.add_argument(
        "--tile-service-url",
        metavar="URL",
        help=f"where tiles go (default: the service; for tcp its host, port"
        f" {DEFAULT_TCP_PORT})",
    )
    p.add_argument(
        "--method",
        choices=sorted(METHODS),
        default="tcp",
        type=str.lower,
        help="tcp (default), http (raw PUT) or http-post (multipart)",
    )
    p.add_argument(
        "--cameras", type=int, default=4, metavar="N", help="cameras, 1-4 (default 4)"
    )
    p.add_argument(
        "--rate",
        "-rate",
        type=float,
        default=150.0,
        metavar="MS",
        help="milliseconds between one camera's tiles (default 150)",
    )
    p.add_argument(
        "--tile-size",
        "-image-size",
        type=_size_arg,
        default=DEFAULT_TILE_SIZE,
        metavar="BYTES",
        help="tile size, with optional k/K (KiB) or m/M (MiB) (default 5557452)",
    )
    stop = p.add_mutually_exclusive_group()
    stop.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help=f"how long to run (default {DEFAULT_DURATION:g})",
    )
    stop.add_argument(
        "--tiles", "-iterations", type=int, metavar="N", help="tiles per camera"
    )
    p.add_argument(
        "--acq-id", type=int, metavar="UID", help="acquisition UID (default: clock)"
    )
    p.add_argument(
        "--sample",
        default="SIMULATION",
        help="sample name of the acquisition (picks the JFS collection)",
    )
    p.add_argument(
        "--no-end", action="store_true", help="do not end the acquisition afterwards"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="per-request timeout (default 60)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write results as JSON")
    add_token_argument(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> SimulatorOptions:
    """Parse and check a command line; usage errors exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    method = METHODS[args.method]
    try:
        service = parse_endpoint(args.service_url, DEFAULT_HTTP_PORT)
        if args.tile_service_url:
            port = DEFAULT_TCP_PORT if method.is_tcp else DEFAULT_HTTP_PORT
            tiles = parse_endpoint(args.tile_service_url, port)
        elif method.is_tcp:
            tiles = Endpoint(service.host, DEFAULT_TCP_PORT)
        else:
            tiles = service
    except ValueError as e:
        parser.error(str(e))
    if not 1 <= args.cameras <= 4:
        parser.error("--cameras must be 1 to 4 (run two simulators for more)")
    if args.rate < 0 or args.timeout <= 0:
        parser.error("--rate must be >= 0 and --timeout > 0")
    if args.tiles is not None and args.tiles < 1:
        parser.error("--tiles must be at least 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.acq_id is not None and not 0 < args.acq_id < 2**64:
        parser.error("--acq-id must be a positive 64-bit number")
    duration = args.duration
    if duration is None and args.tiles is None:
        duration = DEFAULT_DURATION
    return SimulatorOptions(
        acq_endpoint=service,
        tile_endpoint=tiles,
        method=method,
        cameras=args.cameras,
        rate_ms=args.rate,
        tile_size=args.tile_size,
        duration=duration,
        tiles=args.tiles,
        acq_id=args.acq_id,
        sample=args.sample,
        end=not args.no_end,
        timeout=args.timeout,
        json_path=args.json,
        token=args.token,
    )


@attrs.define
class CameraResult:
    """What one camera's sender saw."""

    camera: int
    sent: int = 0
    failed: int = 0
    missed_rate: int = 0
    latencies: list[float] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        """The camera's figures for ``--json``."""
        return {
            "camera": self.camera,
            "sent": self.sent,
            "failed": self.failed,
            "missed_rate": self.missed_rate,
            "latency": Latency.of(self.latencies).to_json(),
            "errors": self.errors[:20],
        }


class _Camera:
    """One camera: a tile every ``rate`` seconds over its own connection."""

    def __init__(
        self,
        camera: int,
        options: SimulatorOptions,
        acq_id: int,
        sender: TileSender,
        tracker: Tracker,
        stop: threading.Event,
        report: Any,
    ) -> None:
        self.result = CameraResult(camera)
        self._camera = camera
        self._options = options
        self._acq_id = acq_id
        self._sender = sender
        self._tracker = tracker
        self._stop = stop
        self._report = report
        self._image = bytearray(os.urandom(options.tile_size))

    def _tile(self, index: int) -> Tile:
        col, row = tile_position(index, self._camera, self._options.cameras)
        stamp = index.to_bytes(8, "little")
        self._image[: len(stamp)] = stamp[: len(self._image)]
        data = bytes(self._image)
        name = stable_name(col, row, self._camera)
        return Tile(name, col, row, self._camera, -1, data, hashlib.md5(data).digest())

    def run(self, start: float, deadline: float | None) -> None:
        """Send tiles until the deadline, the tile count or a stop."""
        rate = self._options.rate_ms / 1000
        limit = self._options.tiles
        index = 0
        try:
            while limit is None or index < limit:
                due = start + index * rate
                # With --rate 0 "due" never advances: the clock decides too.
                if deadline is not None and max(due, time.monotonic()) >= deadline:
                    break
                tile = self._tile(index)
                pause = due - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    break
                if self._stop.is_set():
                    break
                self._send(tile)
                index += 1
        finally:
            self._sender.close()

    def _send(self, tile: Tile) -> None:
        sent_at = time.monotonic()
        try:
            self._sender.send(self._acq_id, tile)
        except SendError as e:
            self.result.failed += 1
            if len(self.result.errors) < MAX_ERRORS_KEPT:
                self.result.errors.append(str(e))
            self._tracker.failed_one()
            self._report(f"camera {self._camera}: {e}")
            self._sender.close()
            # A service that refuses at once must not turn this into a busy loop.
            self._stop.wait(FAILURE_PAUSE)
            return
        latency = time.monotonic() - sent_at
        self.result.sent += 1
        self.result.latencies.append(latency)
        if latency * 1000 > self._options.rate_ms:
            self.result.missed_rate += 1
        self._tracker.sent_one(len(tile.data), latency)


def camera_table(results: Sequence[CameraResult], rate_ms: float) -> str:
    """The per-camera summary: tiles, errors, latency, acks slower than the rate."""
    rows: list[list[object]] = []
    for r in results:
        lat = Latency.of(r.latencies)
        rows.append(
            [
                r.camera,
                r.sent,
                r.failed,
                round(lat.p50 * 1000, 1),
                round(lat.p99 * 1000, 1),
                round(lat.max * 1000, 1),
                r.missed_rate,
            ]
        )
    every = [x for r in results for x in r.latencies]
    lat = Latency.of(every)
    rows.append(
        [
            "all",
            sum(r.sent for r in results),
            sum(r.failed for r in results),
            round(lat.p50 * 1000, 1),
            round(lat.p99 * 1000, 1),
            round(lat.max * 1000, 1),
            sum(r.missed_rate for r in results),
        ]
    )
    headers = (
        "camera",
        "tiles",
        "errors",
        "p50 ms",
        "p99 ms",
        "max ms",
        f"acks > {rate_ms:g} ms",
    )
    return format_table(headers, rows, align="rrrrrrr")


def simulate(options: SimulatorOptions, out: TextIO, err: TextIO) -> int:
    """Create the acquisition, run the cameras, report; the exit status."""
    acq_id = options.acq_id or clock_uid(datetime.now())
    service = ServiceClient(options.acq_endpoint, options.timeout, options.token)
    total = options.tiles * options.cameras if options.tiles is not None else None
    tracker = Tracker(total=total, duration=options.duration)
    stop = threading.Event()
    interrupted = False
    try:
        text = synthetic_log(acq_id, datetime.now(), options.cameras, options.sample)
        uid = service.start_acquisition(f"{acq_id}_logfile.ini", text.encode())
    except SendError as e:
        err.write(f"imagecatcher-simulator: cannot start acquisition {acq_id}: {e}\n")
        service.close()
        return EXIT_FAILED
    err.write(
        f"acquisition {uid}: {options.cameras} camera(s), a"
        f" {options.tile_size}-byte tile every {options.rate_ms:g} ms each,"
        f" {options.method.value} to {options.tile_endpoint}\n"
    )
    bar = ProgressBar(tracker, err)
    cameras = [
        _Camera(
            n,
            options,
            uid,
            make_sender(
                options.method, options.tile_endpoint, options.timeout, options.token
            ),
            tracker,
            stop,
            bar.message,
        )
        for n in range(options.cameras)
    ]
    with bar:
        tracker.start()
        start = time.monotonic()
        deadline = start + options.duration if options.duration is not None else None
        threads = [
            threading.Thread(
                target=c.run, args=(start, deadline), name=f"camera-{n}", daemon=True
            )
            for n, c in enumerate(cameras)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            for t in threads:
                t.join()
        tracker.stop()
    results = [c.result for c in cameras]
    snap = tracker.snapshot()
    end_status = None
    if options.end:  # a simulated acquisition is ended even after Ctrl-C
        try:
            end_status, _ = service.end_acquisition(uid, [])
        except SendError as e:
            err.write(f"imagecatcher-simulator: end-acquisition {uid}: {e}\n")
            end_status = 0
    service.close()
    out.write(camera_table(results, options.rate_ms) + "\n")
    out.write(
        f"acquisition {uid}: {snap.sent} tiles in {snap.elapsed:.2f} s,"
        f" {snap.tiles_per_second:.1f} tiles/s, {snap.mb_per_second:.1f} MB/s\n"
    )
    if options.json_path is not None:
        write_json(
            options.json_path,
            {
                "acq_id": uid,
                "method": options.method.value,
                "rate_ms": options.rate_ms,
                "tile_size": options.tile_size,
                "cameras": [r.to_json() for r in results],
                "tiles": snap.to_json(),
                "latency": Latency.of(tracker.latencies()).to_json(),
                "end_acquisition_status": end_status,
                "interrupted": interrupted,
            },
        )
    if interrupted:
        return EXIT_INTERRUPTED
    failed = snap.failed > 0 or (end_status is not None and end_status != 200)
    return EXIT_FAILED if failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(simulate(parse_args(argv), sys.stdout, sys.stderr))
