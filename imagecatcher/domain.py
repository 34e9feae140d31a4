"""Domain values and exceptions shared by every layer (no I/O here)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs


class CatcherError(Exception):
    """Base class of the errors the service reports to its clients."""


class BadParameter(CatcherError):
    """A request parameter or body is malformed (HTTP 400)."""


class NotFound(CatcherError):
    """The named acquisition, tile or calibration does not exist (HTTP 404)."""


class Unavailable(CatcherError):
    """A dependency (database, store) failed a health check (HTTP 500)."""


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


def jfs_path(uid: int, name: str) -> str:
    """The storage path of an acquisition file (§5.3)."""
    return f"/acquisitions/{uid}/{name}"
