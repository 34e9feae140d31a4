"""The allocator keeps freed tile buffers: the next tile faults no pages in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_ROUNDS = textwrap.dedent(
    """
    import resource, sys
    from imagecatcher.memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def tiles(n):
        for _ in range(n):
            chunks = [bytearray(1 << 20) for _ in range(8)]  # an 8 MiB tile
            del chunks
    tiles(5)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tiles(20)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _page_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _ROUNDS, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_without_page_faults() -> None:
    """Twenty 8 MiB "tiles" of 1 MiB chunks: by default glibc hands the memory
    back and faults it in again each time (about 2,048 pages per tile); once
    keep_freed_memory() ran, the next ones reuse it."""
    assert _page_faults("default") > 20 * 1000
    assert _page_faults("keep") < 500
