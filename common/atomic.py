"""Atomic file writes: a temporary file in the same folder, fsynced, then ``os.replace``.

A run that fails half-way therefore never leaves a truncated checkpoint, CSV or
wav behind, and a file that existed before stays as it was. The data reach the
disk before the rename (and the rename itself is synced with the folder), so a
power cut leaves either the old file or the new one.

Temporaries are recognisably the project's own (``.NAME.la2a-tmp.TOKEN[.SUFFIX]``, a
random token) and owned by their writer, which holds an exclusive ``flock`` on each while
it writes. A process killed outright (SIGKILL, power cut) cannot remove its own; the
next write into the same folder removes a temporary only when nothing holds its lock and
it is older than a minute (:func:`remove_stale_temporaries`). A lock is the kernel's (or
the shared file system's), not a process id, so this is safe with several PID namespaces
and several hosts on one file system; where locks cannot be taken, nothing is removed.
A file or folder not named so is never touched.

A failure of the machine while writing (disk full, read-only file system, no
write permission) becomes a :class:`common.errors.UserError` that names the file
and the cause, so the user sees one ``error:`` line.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Iterator

from common.errors import UserError, machine_failure, write_failure_cause

__all__ = ["atomic_path", "write_text_atomic", "fsync_file", "fsync_folder", "MARK", "temporary_name", "owned",
           "temporary_folder", "remove_stale_temporaries"]

MARK = "la2a-tmp"
_TEMP_NAME = re.compile(r"^\..+\." + MARK + r"\.[0-9a-f]{16}(\..*)?$")
STALE_AFTER_S = 60.0   # a lock-free temporary younger than this may be one being created


def temporary_name(final_name: str) -> str:
    """A fresh temporary name that stands in for ``final_name`` while it is written
    (add the final suffix for libraries that pick the format from it)."""
    return f".{final_name}.{MARK}.{secrets.token_hex(8)}"


@contextlib.contextmanager
def owned(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a file or a folder that exists) while the block
    runs: the mark of a temporary whose writer is alive. Where the file system takes no
    locks, the temporary is simply never removed by others."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)   # releases the lock


def _abandoned(path: str) -> bool:
    """True when nothing holds ``path``'s lock (its writer is gone); False when a writer holds
    it or the lock cannot be tried (no lock support: keep it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:   # held by a live writer, or no lock support here
        return False
    else:
        return True
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove this project's temporaries (files or folders) in ``folder`` whose writer is gone.

    Only names of :func:`temporary_name`'s form are considered, only when older than
    ``older_than_s`` and nothing holds their lock; anything else is left alone. Errors (a
    file removed meanwhile, no permission) are ignored.

    Returns:
        The paths removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if _TEMP_NAME.match(entry.name) is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if age < older_than_s or not _abandoned(entry.path):
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


@contextlib.contextmanager
def temporary_folder(final: str | os.PathLike) -> Iterator[Path]:
    """An owned temporary folder beside ``final`` (removed on failure; the caller renames it
    into place). Stale ones of dead writers are removed first."""
    final = Path(final)
    folder = final.parent if str(final.parent) else Path(".")
    remove_stale_temporaries(folder)
    tmp = folder / temporary_name(final.name)
    tmp.mkdir()
    try:
        with owned(tmp):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    tmp_path = folder / (temporary_name(final.name) + suffix)
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _as_user_error(final, exc) from None
    try:
        with contextlib.suppress(OSError):   # the writer's mark (see the module doc)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.chmod(tmp_path, _final_mode(final))  # created 0600; give it the usual mode
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
    finally:
        os.close(fd)


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
