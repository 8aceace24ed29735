"""Hand freed memory back to the system between the passes of a long computation.

glibc keeps the heap pages that NumPy and torch free between a long fit's passes (tens of
arrays of a few to tens of MB each, freed in another order than made) and reuses them only
in part, so a process's resident memory creeps up pass after pass: a 10-minute gray-box
fit grew by about 800 MB that ``malloc_trim`` gives back. Elsewhere (no glibc) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_freed_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):   # not glibc (musl, macOS, Windows)
        return None


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (``malloc_trim(0)``; a few ms)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
