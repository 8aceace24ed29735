"""User-facing errors and the wrapper that turns them into one ``error:`` line.

Every entry script calls :func:`run_main`. A :class:`UserError` (bad file, bad
value, bad checkpoint) ends the program with exit code 2 and a single line
``error: ...`` on stderr. Any other exception is a bug: it is reported the same
way (exit 1) so a user never sees a traceback, unless ``--debug`` is on the
command line or ``LA2A_DEBUG=1`` is set.

A failure of the machine (disk full, read-only file system, no permission, an
I/O error) is not a bug either: it is reported as one ``error:`` line naming the
path and the cause, exit 2, like a UserError.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Callable

__all__ = ["UserError", "INTERRUPTED_HINT", "ArgumentParser", "run_main", "debug_enabled", "machine_failure",
           "write_failure_cause"]


class UserError(Exception):
    """A problem with the user's input that the message fully explains."""


# Every job keeps what it finished (a chain's levels, a training's last.pt, a comparison's
# fits and models) and skips it when run again.
INTERRUPTED_HINT = "run the same command again to resume (what was finished is kept)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a UserError (one ``error:`` line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


# errno values that say the machine refused, not that the program is wrong
_MACHINE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
    errno.EFBIG: "file too large",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
}


def _causes(exc: BaseException):
    """``exc`` and the exceptions it was raised from or during, innermost last."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def machine_failure(exc: BaseException) -> str | None:
    """The cause, in words, when ``exc`` (or what it was raised from) is a failure of
    the machine; None otherwise."""
    for e in _causes(exc):
        if isinstance(e, OSError) and e.errno in _MACHINE_ERRNOS:
            return _MACHINE_ERRNOS[e.errno]
    return None


def _failed_path(exc: BaseException) -> str | None:
    for e in _causes(exc):
        if isinstance(e, OSError):
            for name in (e.filename, e.filename2):
                if name:
                    return os.fsdecode(name) if isinstance(name, bytes) else str(name)
    return None


def write_failure_cause(path: str | os.PathLike) -> str | None:
    """Why writing ``path`` may have failed, read off its folder; None when nothing is wrong there.

    For libraries that lose errno (libsndfile reports only "System error").
    """
    folder = os.path.dirname(os.fspath(path)) or "."
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return _MACHINE_ERRNOS[errno.EROFS]
    if st.f_bavail == 0 or (st.f_favail == 0 and st.f_files > 0):
        return _MACHINE_ERRNOS[errno.ENOSPC]
    if not os.access(folder, os.W_OK):
        return _MACHINE_ERRNOS[errno.EACCES]
    return None


def debug_enabled(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get("LA2A_DEBUG", "") not in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_main(main: Callable[[], object]) -> None:
    """Run ``main`` and exit with its status, reporting failures as one line."""
    debug = debug_enabled()
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    try:
        status = main()
    except UserError as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:   # the reader went away (``| head``): nothing more to say
        sys.stdout = open(os.devnull, "w")
        sys.exit(0)
    except KeyboardInterrupt:
        # on a line of its own (a progress bar may hold the current one)
        print(f"\nerror: interrupted; {INTERRUPTED_HINT}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a bug, but still no traceback for the user
        if debug:
            raise
        cause = machine_failure(exc)
        if cause is not None:
            where = _failed_path(exc)
            print(f"error: {_one_line(where) + ': ' if where else ''}{cause}", file=sys.stderr)
            sys.exit(2)
        print(f"error: internal error ({type(exc).__name__}: {_one_line(exc)}); "
              "rerun with --debug for details", file=sys.stderr)
        sys.exit(1)
    sys.exit(int(status or 0))
