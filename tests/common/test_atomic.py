"""Atomic writes: synced before the rename, failures of the machine named as such, and
temporaries of killed processes cleaned up."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from common import atomic
from common.atomic import atomic_path, pid_alive, remove_stale_temporaries, temporary_name, write_text_atomic
from common.errors import UserError


def _dead_pid() -> int:
    """The id of a process that has just exited (and is reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())
    assert not pid_alive(0) and not pid_alive(-3)


def test_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text_atomic(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    kinds = [c[0] for c in calls]
    assert kinds == ["fsync", "replace", "fsync"], calls
    assert os.path.basename(calls[0][1]).startswith(temporary_name("a.txt"))  # the data, before the rename
    assert calls[2][1] == str(tmp_path.resolve())                            # the folder, after it


@pytest.mark.parametrize("code,cause", [(errno.ENOSPC, "no space left on device"),
                                        (errno.EROFS, "read-only file system"),
                                        (errno.EACCES, "permission denied")])
def test_machine_failure_on_rename_names_the_file(tmp_path, monkeypatch, code, cause):
    path = tmp_path / "ckpt.yaml"
    path.write_text("old")

    def replace(src, dst):
        raise OSError(code, os.strerror(code), str(src))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UserError) as info:
        write_text_atomic(path, "new")
    assert str(info.value) == f"{path}: cannot write ({cause})"
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.yaml"]


def test_full_disk_while_writing_the_data(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(path), "write_text", full)
    with pytest.raises(UserError, match=r"out.txt: cannot write \(no space left on device\)"):
        write_text_atomic(path, "x" * 100)
    assert list(tmp_path.iterdir()) == []


def test_fsync_failure_is_reported_and_nothing_renamed(tmp_path, monkeypatch):
    """A delayed-allocation ENOSPC shows up at fsync: the old file must stay."""
    path = tmp_path / "a.csv"
    path.write_text("old")

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(UserError, match="no space left on device"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_unwritable_folder(tmp_path, monkeypatch):
    """A folder without write permission. Root ignores the mode bits, so the refusal is
    simulated at the system call that creates the temporary."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # running as root: make the kernel's answer ourselves
            def mkstemp(*args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied", str(folder / ".x.tmp"))
            monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
        with pytest.raises(UserError) as info:
            write_text_atomic(folder / "summary.csv", "a,b\n")
        assert str(info.value) == f"{folder / 'summary.csv'}: cannot write (permission denied)"
    finally:
        folder.chmod(0o755)


def test_a_bug_in_the_body_is_not_disguised(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "a.txt"):
            1 / 0
    assert list(tmp_path.iterdir()) == []


def test_library_error_without_errno_is_explained_by_the_folder(tmp_path, monkeypatch):
    """libsndfile and torch lose errno ("System error"); the folder's state names the cause."""
    monkeypatch.setattr(atomic, "write_failure_cause", lambda path: "no space left on device")
    with pytest.raises(UserError, match=r"a.pt: cannot write \(no space left on device\)"):
        with atomic_path(tmp_path / "a.pt"):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    stale_file = tmp_path / f"{temporary_name('ckpt.yaml', dead)}-abc123.yaml"
    stale_dir = tmp_path / temporary_name("standin-0123456789ab", dead)
    live_file = tmp_path / f"{temporary_name('ckpt.yaml', live)}-def456.yaml"
    unrelated = [tmp_path / ".hidden", tmp_path / "notes.tmp-1", tmp_path / "ckpt.yaml"]
    stale_file.write_text("half")
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "big.wav").write_bytes(b"\0" * 1000)
    live_file.write_text("being written")
    for p in unrelated:
        p.write_text("keep")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert not stale_file.exists() and not stale_dir.exists()
    assert live_file.exists() and all(p.exists() for p in unrelated)


def test_next_write_in_the_folder_cleans_up(tmp_path):
    stale = tmp_path / f"{temporary_name('out.wav', _dead_pid())}-zz.wav"
    stale.write_bytes(b"RIFF")
    write_text_atomic(tmp_path / "other.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]
