"""The content-store port (CONTRACT §5.1) and the choice of backend by URL.

A store keeps opaque byte objects under keys.  Backends: ``file:`` (a local
directory, the embedded default); the remote ones arrive with the capture
work.  Every backend answers the same :class:`ContentStore` protocol.
"""

from __future__ import annotations

from typing import Protocol


class StoreError(Exception):
    """The store refused or failed an operation; the text says which and why."""


class ObjectNotFound(StoreError):
    """No object is stored under that key."""


#: Where ping writes and verifies its probe object (kept from the old service, Q27).
PING_KEY = "acquisitions/0/jfs ping"
PING_CONTENT = b"JFS Ping"


class ContentStore(Protocol):
    """Put, get, verify and delete byte objects by key."""

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` durably under ``key``, replacing any old object."""

    async def get(self, key: str) -> bytes:
        """Return the object's bytes; ObjectNotFound when there is none."""

    async def delete(self, key: str) -> None:
        """Remove the object; no error when it does not exist."""

    async def health(self) -> None:
        """Write and read back the probe object; raise StoreError when unhealthy."""
