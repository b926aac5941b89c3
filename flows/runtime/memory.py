"""Memory handed back to the system between the steps of a run that hold the most."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import pyarrow as pa


def release_memory() -> None:
    """Hand freed memory back to the system between the passes: Arrow's allocator and glibc's
    keep freed pages for reuse, and a pass's leftovers would add to the next one's peak."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up once (find_library runs ldconfig), or None elsewhere."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
