"""The C allocator keeps freed tile buffers for the next tile.

Every socket read makes a new bytes object of up to a MiB, and a tile's
batches are freed as soon as they are written.  By default glibc serves
blocks above a (moving) threshold with a fresh ``mmap`` each, and hands the
free top of its heap back to the kernel once more than twice that threshold
is free.  With a few MiB per tile allocated and freed, every tile then faults
its pages in again and the kernel zeroes each one: 631 page faults per
5.3 MiB tile were measured, about a tenth of the daemon's CPU per tile.
:func:`keep_freed_memory` fixes both thresholds, so that freed buffers stay
mapped and the next tile reuses them (16 faults per tile, same measurement).
The memory kept is bounded by :data:`KEEP_FREE_BYTES` per arena; the peak is
what the tiles in flight needed anyway (README, "Memory per tile in flight").
"""

from __future__ import annotations

import ctypes

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Free memory at the top of the heap kept rather than returned.
KEEP_FREE_BYTES = 64 * 1024 * 1024
#: Blocks at least this big get their own mapping (glibc's largest value).
OWN_MAPPING_BYTES = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set the allocator's thresholds for this process; False where the C
    library has no ``mallopt`` (not glibc) or refuses."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, OWN_MAPPING_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
    )
