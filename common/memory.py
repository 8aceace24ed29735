"""Hand freed memory back to the system between the passes of a long computation.

glibc keeps the heap pages that NumPy and torch free between a long fit's passes (tens of
arrays of a few to tens of MB each, freed in another order than made) and reuses them only
in part, so a process's resident memory creeps up pass after pass: a 10-minute gray-box
fit grew by about 800 MB that ``malloc_trim`` gives back; and glibc puts frame-sized arrays
on that heap at all only because it raises its mapping threshold by itself
(:func:`map_large_allocations` fixes it). Elsewhere (no glibc) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_freed_memory", "map_large_allocations"]

M_MMAP_THRESHOLD = -3        # glibc's mallopt parameter (malloc.h)
LARGE = 1 << 20              # bytes: an allocation at least this large is mapped on its own


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def map_large_allocations(threshold: int = LARGE) -> bool:
    """From now on, every allocation of ``threshold`` bytes or more gets pages of its own from
    the system, handed back the moment it is freed (glibc ``mallopt(M_MMAP_THRESHOLD)``).

    glibc raises that threshold by itself after a large block is freed (up to 32 MB), so a
    long fit's frame-sized temporaries (8-17 MB each) land on the heap, where fragmentation
    keeps their pages: a 10-minute fit's peak was about 250 MB higher. Fixing the threshold
    costs a page fault per new page of a large array (a few ms per frame of a pass). Once
    per process; False where it does not apply (not glibc)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(int(threshold))))


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    libc = _libc()
    return getattr(libc, "malloc_trim", None) if libc is not None else None   # not glibc: musl, macOS


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (``malloc_trim(0)``; a few ms)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
