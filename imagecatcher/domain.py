"""Domain values and exceptions shared by every layer (no I/O here)."""

from __future__ import annotations

import enum

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
