"""Atomic file writes: a temporary file in the same folder, fsynced, then ``os.replace``.

A run that fails half-way therefore never leaves a truncated checkpoint, CSV or
wav behind, and a file that existed before stays as it was. The data reach the
disk before the rename (and the rename itself is synced with the folder), so a
power cut leaves either the old file or the new one.

Temporaries carry the writing process's id (``.NAME.tmp-PID-XXXX.SUFFIX``). A
process killed outright (SIGKILL, power cut) cannot remove its own; the next
write into the same folder removes those whose process is gone
(:func:`remove_stale_temporaries`).

A failure of the machine while writing (disk full, read-only file system, no
write permission) becomes a :class:`common.errors.UserError` that names the file
and the cause, so the user sees one ``error:`` line.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from common.errors import UserError, machine_failure, write_failure_cause

__all__ = ["atomic_path", "write_text_atomic", "fsync_file", "fsync_folder", "pid_alive",
           "temporary_name", "remove_stale_temporaries"]

# ``<anything>.tmp-<pid>`` optionally followed by ``-<random><suffix>``
_TEMP_NAME = re.compile(r"^\..*\.tmp-(?P<pid>\d+)(?:-[^/]*)?$")


def pid_alive(pid: int) -> bool:
    """True when a process with id ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True  # unknown: keep its files
    return True


def temporary_name(final_name: str, pid: int | None = None) -> str:
    """The prefix of a temporary that stands in for ``final_name`` while it is written."""
    return f".{final_name}.tmp-{os.getpid() if pid is None else int(pid)}"


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (files or folders) in ``folder`` whose writer has died.

    Only names of the form ``.NAME.tmp-PID[-...]`` are considered, and only when
    no process ``PID`` is alive; anything else is left alone. Errors (a file
    removed meanwhile by another process, no permission) are ignored.

    Returns:
        The paths removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or pid_alive(int(match.group("pid"))):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on a folder: nothing to do there
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success sync it and rename it onto ``path``.

    The temporary name keeps the final suffix so that libraries which pick the
    format from the extension (soundfile) still work.

    Raises:
        UserError: the machine refused the write (disk full, read-only file
            system, permission denied), naming ``path`` and the cause.
    """
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    suffix = final.suffix if suffix is None else suffix
    remove_stale_temporaries(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temporary_name(final.name) + "-", suffix=suffix, dir=folder)
        os.close(fd)
    except OSError as exc:
        raise _as_user_error(final, exc) from None
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _final_mode(final))  # mkstemp makes it 0600; give it the usual mode
        yield tmp_path
        fsync_file(tmp_path)
        os.replace(tmp_path, final)
        fsync_folder(folder)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, (UserError, KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
            raise
        error = _as_user_error(final, exc)
        if error is None:
            raise
        raise error from None


def _as_user_error(final: Path, exc: BaseException) -> UserError | None:
    """A UserError for a write that the machine refused; None when ``exc`` is not that."""
    cause = machine_failure(exc)
    if cause is None and not isinstance(exc, OSError):
        # libraries that lose errno (libsndfile's "System error", torch's "file write
        # failed"): ask the folder why a write could fail there
        cause = write_failure_cause(final)
    if cause is None:
        return None if not isinstance(exc, OSError) or exc.errno is None else \
            UserError(f"{final}: cannot write ({os.strerror(exc.errno)})")
    return UserError(f"{final}: cannot write ({cause})")


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
