"""Domain values and exceptions shared by every layer (no I/O here)."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from datetime import datetime

import attrs


class CatcherError(Exception):
    """Base class of the errors the service reports to its clients."""


class BadParameter(CatcherError):
    """A request parameter or body is malformed (HTTP 400)."""


class NotFound(CatcherError):
    """The named acquisition, tile or calibration does not exist (HTTP 404)."""


class StorageFull(CatcherError):
    """A tile cannot be made durable for want of room: the message says where
    and how much is free (HTTP 507)."""


class Unavailable(CatcherError):
    """A dependency (database, store) failed a health check (HTTP 500)."""


class DatabaseError(Unavailable):
    """The database could not run a transaction now: it is down, the
    connection dropped, a lock wait timed out.  The message is the driver's
    (HTTP 500, TCP status 1 with system status RED)."""


class CalibrationError(CatcherError):
    """A calibration could not be parsed or imported."""


class QueueColour(enum.IntEnum):
    """A queue's load colour (§4.5); the TCP response carries the number."""

    GREEN = 0
    YELLOW = 1
    RED = 2


@attrs.frozen
class QueueStatus:
    """The colours of the tile and content queues (§4.5)."""

    tile: QueueColour = QueueColour.GREEN
    content: QueueColour = QueueColour.GREEN

    @property
    def system(self) -> QueueColour:
        """The worse of the two."""
        return max(self.tile, self.content)


@attrs.frozen
class Acquisition:
    """An acquisition as capture needs it: ids, temca and the JFS mapping keys."""

    uid: int
    acquisition_id: int
    mosaic_id: int
    temca_id: int | None
    sample_name: str
    project_name: str
    project_owner: str
    stack_name: str

    def storage_context(self) -> dict[str, str]:
        """The storage context of §5.3 (without checksum)."""
        context = {"sample": self.sample_name}
        for key, value in (
            ("project", self.project_name),
            ("owner", self.project_owner),
            ("stack", self.stack_name),
        ):
            if value:
                context[key] = value
        return context

    def collection(self, mapping: Mapping[str, str]) -> str:
        """The JFS collection of §5.2: first mapped sample/project/owner, else owner."""
        for key in (self.sample_name, self.project_name, self.project_owner):
            if key and mapping.get(key):
                return mapping[key]
        return self.project_owner


@attrs.frozen
class TileRecord:
    """A tile row as capture sees it, with its current content identity."""

    tile_id: int
    file_object_id: int
    camera_configuration_id: int | None
    camera: int | None
    sha1: bytes | None
    jfs_key: str

    @property
    def persisted(self) -> bool:
        """Content is in the store ("persisted tile" of §6.1)."""
        return bool(self.jfs_key)


def digests(data: bytes | memoryview) -> tuple[bytes, bytes]:
    """(MD5, SHA-1) of the data; run it on a thread (hashlib releases the GIL)."""
    return hashlib.md5(data).digest(), hashlib.sha1(data).digest()


def jfs_path(uid: int, name: str) -> str:
    """The storage path of an acquisition file (§5.3)."""
    return f"/acquisitions/{uid}/{name}"


@attrs.frozen
class TileRow:
    """A tile as the query routes report it (one row per tile, §14)."""

    acq_uid: int
    acq_when: datetime | None
    acq_completed: datetime | None
    tile_id: int
    col: int
    row: int
    frame: int
    camera: int | None
    temca_id: int | None
    jfs_path: str
    jfs_key: str
    location_url: str
    sha1: bytes | None
    md5: bytes | None
    acquired: datetime | None
    state: str
    section: int

    @property
    def persisted(self) -> bool:
        """Content is in the store."""
        return bool(self.jfs_key)


@attrs.frozen
class TileFilter:
    """The tile-query filters of §8.5 (None / negative = ignore)."""

    acq_uid: int = 0
    sample: str | None = None
    project: str | None = None
    owner: str | None = None
    stack: str | None = None
    mosaic_type: str | None = None
    col: int = -1
    row: int = -1
    camera: int = -1
    state: str | None = None
    tile_from: datetime | None = None
    tile_to: datetime | None = None
    frame_type: str = "stable"
    include_all: bool = False


@attrs.frozen
class AcquisitionFilter:
    """The acquisition-query filters of §8.3/§8.4."""

    acq_uid: int = 0
    sample: str | None = None
    project: str | None = None
    owner: str | None = None
    stack: str | None = None
    mosaic_type: str | None = None
    exists_state: str | None = None
    all_state: str | None = None
    acq_from: datetime | None = None
    acq_to: datetime | None = None


@attrs.frozen
class NextTileRequest:
    """The parameters of next-tile (§9.1)."""

    old_state: str = "READY"
    new_state: str = "IN_PROGRESS"
    acq_uid: int = 0
    section: int = -1
    ntiles: int = 1
    sample: str | None = None
    project: str | None = None
    stack: str | None = None
    mosaic_type: str | None = None
    tile_from: datetime | None = None
    tile_to: datetime | None = None
    frame_type: str = "stable"
