"""One writer per output folder: a run holds an exclusive lock on ``FOLDER/.la2a-lock`` while it
writes there; a second run into the folder is refused with one line naming the first.

The lock is the kernel's (``flock``), released when its holder exits however it exits, so
the lock of a killed run is free again and the next run takes it over: nothing to clean up.
The file names the holder (host, process, command, start time) for the refusal's message.
A folder the run made and left empty (an early error) is removed again.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from common.errors import UserError

__all__ = ["LOCK_NAME", "output_lock"]

LOCK_NAME = ".la2a-lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another run"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"another run ({info.get('command', '?')}, process {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {started})")


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Hold ``folder``'s writer lock while the block runs (the folder is made if needed).

    Raises:
        UserError: another live run holds it.
    """
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]   # the folders this run makes
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    for _ in range(5):   # the file may be replaced between our open and our lock: retry
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{folder}: {_holder(path)} is writing this {what}; wait for it, or choose "
                            "another folder") from None
        except OSError:   # no lock support on this file system: run unguarded
            break
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise UserError(f"{folder}: could not take the {what}'s lock ({path})")
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)   # while still holding it: a waiting opener then sees a new file
        os.close(fd)
        for p in made:   # the deepest first; only those the run left empty
            try:
                p.rmdir()
            except OSError:
                break
