"""User-facing errors and the wrapper that turns them into one ``error:`` line.

Every entry script calls :func:`run_main`. A :class:`UserError` (bad file, bad
value, bad checkpoint) ends the program with exit code 2 and a single line
``error: ...`` on stderr. Any other exception is a bug: it is reported the same
way (exit 1) so a user never sees a traceback, unless ``--debug`` is on the
command line or ``LA2A_DEBUG=1`` is set.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

__all__ = ["UserError", "ArgumentParser", "run_main", "debug_enabled"]


class UserError(Exception):
    """A problem with the user's input that the message fully explains."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a UserError (one ``error:`` line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


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
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a bug, but still no traceback for the user
        if debug:
            raise
        print(f"error: internal error ({type(exc).__name__}: {_one_line(exc)}); "
              "rerun with --debug for details", file=sys.stderr)
        sys.exit(1)
    sys.exit(int(status or 0))
