"""Resident memory of this process, read from /proc (Linux): for the benchmarks that run
one fresh process per measurement and reset the high-water mark before it."""
from __future__ import annotations

__all__ = ["status_kib", "reset_peak"]


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset the resident high-water mark; return the current resident size (KiB)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status_kib("VmRSS")
