"""Acquisition directories and the steps that push one to the service (§10.6).

An acquisition directory is named ``<uid>_...`` and holds, at its top level,
``<uid>*_logfile.ini``, ``<uid>*_ROI_spec.ini``, ``<uid>*_ROI_tiles.csv``,
``<uid>*_DAQ timing.csv``, ``<uid>*_mosaic.png`` and other ancillary files,
and the tiles in subdirectories: ``colNNNN/colNNNN_rowNNNN_camK.tif`` and
drift frames ``Dump_camK_frameNNNNNN_colNNNN_rowNNNN.tif``.

:func:`feed_acquisition` sends a whole directory: the INI log
(start-acquisition), the ROI files (create-rois), every tile through a pool
of senders with bounded retries, then end-acquisition with the mosaic and the
other ancillary files.  With ``resume`` it first asks the service which
tiles it already stores and sends no bytes for those whose SHA-1 matches.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from twisted.logger import Logger

from imagecatcher.cli.progress import Latency, Snapshot, Tracker
from imagecatcher.cli.sender import (
    RetryPolicy,
    SenderPool,
    ServiceClient,
    TileJob,
    TileResult,
    TileSender,
    with_retries,
)
from imagecatcher.domain import BadParameter
from imagecatcher.names import parse_tile_name, stable_name

#: §5.6: the ancillary file types, by suffix (``_camN.csv`` counts as ``.csv``).
ANCILLARY_SUFFIXES = (
    "Add pulse.csv",
    "Controller elapsed.csv",
    "Controller timing.csv",
    "DAQ timing.csv",
    "ROI_spec.ini",
    "ROI_tiles.csv",
    "logfile.ini",
    "mosaic.png",
    "statistics.csv",
    "stored_image_list.csv",
)
#: Stored by create-rois already (§1.4); sending them again re-imports the ROIs.
_NOT_AT_END = ("ROI_spec.ini", "ROI_tiles.csv")
_CAM_CSV = re.compile(r"_cam[0-3]\.csv$")


class AcquisitionDirError(Exception):
    """The acquisition directory is missing something or is ambiguous."""


def ancillary_type(name: str) -> str | None:
    """The §5.6 type of a file name, or None when it is not an ancillary file."""
    normalised = _CAM_CSV.sub(".csv", name)
    return next((s for s in ANCILLARY_SUFFIXES if normalised.endswith(s)), None)


def local_path(text: str) -> Path:
    """A directory given as a path or a ``file://`` URL (``file:///data/123_x``).

    :raises AcquisitionDirError: for another scheme or a remote host.
    """
    if "://" not in text:
        return Path(text)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        raise AcquisitionDirError(f"not a local directory: {text}")
    return Path(urllib.parse.unquote(parts.path))


@attrs.frozen
class AcquisitionDir:
    """An acquisition directory and its UID (the name up to the first ``_``)."""

    path: Path
    uid: int

    @classmethod
    def open(cls, text: str) -> AcquisitionDir:
        """The directory named by a path or ``file://`` URL.

        :raises AcquisitionDirError: when it is not a directory or its name
            does not start with a numeric UID.
        """
        path = local_path(text)
        if not path.is_dir():
            raise AcquisitionDirError(f"not a directory: {path}")
        prefix = path.resolve().name.partition("_")[0]
        if not prefix.isdigit() or not prefix.isascii():
            raise AcquisitionDirError(
                f"cannot tell the acquisition UID from the directory name"
                f" {path.resolve().name!r}: it must start with <uid>_"
            )
        return cls(path, int(prefix))

    def find(self, suffix: str) -> list[Path]:
        """Top-level files ``<uid>*<suffix>`` (not ``<uid><digit>...``), sorted."""
        return sorted(
            p
            for p in self.path.glob(f"{self.uid}*{suffix}")
            if p.is_file() and self._ours(p.name)
        )

    def _ours(self, name: str) -> bool:
        uid = str(self.uid)
        return name.startswith(uid) and not name[len(uid) :][:1].isdigit()

    def one(self, suffix: str) -> Path:
        """The only top-level file ``<uid>*<suffix>``.

        :raises AcquisitionDirError: when there is none or more than one.
        """
        found = self.find(suffix)
        if not found:
            raise AcquisitionDirError(
                f"no file matching {self.uid}*{suffix} in {self.path}"
            )
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise AcquisitionDirError(
                f"{len(found)} files matching {self.uid}*{suffix} in {self.path}:"
                f" {names}"
            )
        return found[0]

    def tile_path(self, col: int, row: int, camera: int) -> Path:
        """``<dir>/colNNNN/colNNNN_rowNNNN_camK.tif``."""
        return self.path / f"col{col:04d}" / stable_name(col, row, camera)

    def tile_files(self) -> list[Path]:
        """Every tile file (stable or drift) in the subdirectories, sorted."""
        found: list[Path] = []
        for sub in sorted(p for p in self.path.iterdir() if p.is_dir()):
            for p in sorted(sub.rglob("*.tif")):
                try:
                    parse_tile_name(p.name)
                except BadParameter:
                    continue
                if p.is_file():
                    found.append(p)
        return found

    def ancillary_files(self) -> list[Path]:
        """The mosaic PNG first, then the other ancillary files to archive."""
        mosaic = self.find("_mosaic.png")
        others = [
            p
            for p in sorted(self.path.iterdir())
            if p.is_file()
            and self._ours(p.name)
            and p not in mosaic
            and ancillary_type(p.name) not in (None, *_NOT_AT_END)
        ]
        return mosaic + others


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise AcquisitionDirError(f"cannot read {path}: {e.strerror or e}") from e


def send_acq_log(
    acq: AcquisitionDir, service: ServiceClient, retry: RetryPolicy
) -> int:
    """POST the INI log to start-acquisition; the UID the service answers."""
    log_file = acq.one("_logfile.ini")
    content = _read(log_file)
    return with_retries(
        lambda: service.start_acquisition(log_file.name, content), retry
    )


def send_rois(
    acq: AcquisitionDir, acq_id: int, service: ServiceClient, retry: RetryPolicy
) -> None:
    """POST the ROI spec and ROI tiles to create-rois."""
    spec, tiles = acq.one("_ROI_spec.ini"), acq.one("_ROI_tiles.csv")
    spec_data, tiles_data = _read(spec), _read(tiles)
    with_retries(
        lambda: service.create_rois(
            acq_id, (spec.name, spec_data), (tiles.name, tiles_data)
        ),
        retry,
    )


@attrs.frozen
class EndResult:
    """What end-acquisition answered: status, per-file results, files left out."""

    status: int
    results: list[dict[str, Any]]
    skipped_empty: list[str]

    @property
    def ok(self) -> bool:
        """Whether every ancillary file was stored."""
        return self.status == 200


def end_acquisition(
    acq: AcquisitionDir, acq_id: int, service: ServiceClient, retry: RetryPolicy
) -> EndResult:
    """POST end-acquisition with the mosaic and the other ancillary files.

    Empty files are left out (the service refuses them, §1.6).
    """
    files: list[tuple[str, bytes]] = []
    empty: list[str] = []
    for path in acq.ancillary_files():
        content = _read(path)
        if content:
            files.append((path.name, content))
        else:
            empty.append(path.name)
    status, results = with_retries(
        lambda: service.end_acquisition(acq_id, files), retry
    )
    return EndResult(status, results, empty)


@attrs.frozen
class SendOutcome:
    """The tiles a run sent, with its counts and latencies."""

    results: list[TileResult]
    snapshot: Snapshot
    latency: Latency
    interrupted: bool

    @property
    def failed(self) -> int:
        """Tiles that finally failed."""
        return self.snapshot.failed


def send_steps(
    steps: Iterable[Sequence[TileJob]],
    *,
    acq_id: int,
    parallel: int,
    connect: Callable[[], TileSender],
    retry: RetryPolicy,
    tracker: Tracker,
    log: Logger,
    report: Callable[[str], None],
    rate: float = 0.0,
) -> SendOutcome:
    """Send tiles through a pool of ``parallel`` senders, step by step.

    Steps start ``rate`` seconds apart (as soon as possible when the senders
    fall behind); every tile is acknowledged or failed before this returns,
    unless Ctrl-C interrupts it, which drops the tiles not yet sent.
    """
    pool = SenderPool(
        size=parallel,
        connect=connect,
        acq_id=acq_id,
        retry=retry,
        tracker=tracker,
        log=log,
        report=report,
    )
    tracker.start()
    interrupted = False
    try:
        next_step = time.monotonic()
        for step in steps:
            for job in step:
                pool.submit(job)
            if rate > 0:
                next_step = max(next_step + rate, time.monotonic())
                pause = next_step - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        results = pool.join()
    except KeyboardInterrupt:
        interrupted = True
        results = pool.cancel()
    tracker.stop()
    return SendOutcome(
        results, tracker.snapshot(), Latency.of(tracker.latencies()), interrupted
    )


def tile_jobs(acq: AcquisitionDir, held: dict[str, str] | None = None) -> list[TileJob]:
    """One job per tile file; ``held`` (name -> SHA-1) marks tiles to check first."""
    held = held or {}
    return [TileJob(p, held.get(p.name)) for p in acq.tile_files()]


def feed_acquisition(
    acq: AcquisitionDir,
    *,
    service: ServiceClient,
    connect: Callable[[], TileSender],
    parallel: int,
    retry: RetryPolicy,
    resume: bool,
    tracker: Tracker,
    log: Logger,
    report: Callable[[str], None],
) -> tuple[int, SendOutcome]:
    """Start the acquisition, import its ROIs and send every tile.

    Returns the UID and what the tiles did; ending the acquisition is left to
    the caller, which knows whether every tile made it.
    """
    uid = send_acq_log(acq, service, retry)
    report(f"started acquisition {uid}")
    if acq.find("_ROI_spec.ini") or acq.find("_ROI_tiles.csv"):
        send_rois(acq, uid, service, retry)
        report(f"created the ROIs of acquisition {uid}")
    else:
        report(f"no ROI files in {acq.path}; create-rois skipped")
    held: dict[str, str] = {}
    if resume:
        held = with_retries(lambda: service.held_tiles(uid), retry)
        report(f"the service already stores {len(held)} tile(s) of {uid}")
    jobs = tile_jobs(acq, held)
    tracker.total = len(jobs)
    outcome = send_steps(
        ([job] for job in jobs),
        acq_id=uid,
        parallel=parallel,
        connect=connect,
        retry=retry,
        tracker=tracker,
        log=log,
        report=report,
    )
    return uid, outcome
