"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A run that fails half-way therefore never leaves a truncated checkpoint, CSV or
wav behind, and a file that existed before stays as it was.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name keeps the final suffix so that libraries which pick the
    format from the extension (soundfile) still work.
    """
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    suffix = final.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, _final_mode(final))  # mkstemp makes it 0600; give it the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _final_mode(final: Path) -> int:
    """The mode a plain ``open(final, "w")`` would leave: the existing file's, or 0666 less the umask."""
    try:
        return stat.S_IMODE(final.stat().st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
