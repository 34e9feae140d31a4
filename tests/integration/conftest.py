"""Integration fixtures shared by several modules: a private SeaweedFS S3 server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.seaweed import SeaweedS3, running_seaweed


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[SeaweedS3]:
    """One SeaweedFS with an S3 gateway for the whole session (never skipped)."""
    # A short base path keeps weed's unix socket paths under the 108-byte limit.
    base = Path(tempfile.mkdtemp(prefix="ic-weed-"))
    try:
        with running_seaweed(base) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)
