"""Atomic writes: synced before the rename, failures of the machine named as such, and
temporaries of killed processes cleaned up."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import pytest

from common import atomic
from common.atomic import atomic_path, owned, remove_stale_temporaries, temporary_name, write_text_atomic
from common.errors import UserError


def _aged(path, seconds: float = 120.0):
    """Make ``path`` look ``seconds`` old (a temporary younger than a minute may be being created)."""
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


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
    assert os.path.basename(calls[0][1]).startswith(".a.txt.la2a-tmp.")   # the data, before the rename
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
            real_open = os.open

            def refusing_open(path, flags, *args):
                if flags & os.O_CREAT and str(folder) in str(path):
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real_open(path, flags, *args)
            monkeypatch.setattr(atomic.os, "open", refusing_open)
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


def test_only_abandoned_temporaries_of_this_project_are_removed(tmp_path):
    """A temporary is removed only when it is named as the project's, nothing holds its lock
    (its writer is gone) and it is over a minute old; a user's look-alikes are never touched."""
    stale_file = tmp_path / f"{temporary_name('ckpt.yaml')}.yaml"
    stale_file.write_text("half")
    _aged(stale_file)
    stale_dir = tmp_path / temporary_name("standin-0123456789ab")
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "big.wav").write_bytes(b"\0" * 1000)
    _aged(stale_dir)
    young = tmp_path / f"{temporary_name('out.wav')}.wav"
    young.write_text("just created")
    held = tmp_path / f"{temporary_name('ckpt.yaml')}.yaml"
    held.write_text("being written")
    _aged(held)
    users = [tmp_path / ".draft.tmp-31337", tmp_path / "notes.tmp-1", tmp_path / ".hidden",
             tmp_path / ".x.la2a-tmp.not-hex.yaml", tmp_path / "ckpt.yaml"]
    for p in users:
        p.write_text("keep")
        _aged(p)
    backup = tmp_path / ".notes.tmp-2024-backup"
    (backup / "inner").mkdir(parents=True)
    _aged(backup)
    with owned(held):   # a live writer (here: another open file description holding the lock)
        removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert young.exists() and held.exists() and backup.is_dir() and all(p.exists() for p in users)


def test_next_write_in_the_folder_cleans_up(tmp_path):
    stale = tmp_path / f"{temporary_name('out.wav')}.wav"
    stale.write_bytes(b"RIFF")
    _aged(stale)
    write_text_atomic(tmp_path / "other.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]


def test_a_writer_in_another_process_keeps_its_temporary(tmp_path):
    """The shared-file-system case: a writer whose process id means nothing here (another
    PID namespace, another host) keeps its temporary while it holds the lock."""
    tmp = tmp_path / f"{temporary_name('model.pt')}.pt"
    tmp.write_bytes(b"partial")
    _aged(tmp)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)", str(tmp)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_text_atomic(tmp_path / "other.txt", "x")
        assert tmp.exists()
    finally:
        holder.kill()
        holder.wait()
    write_text_atomic(tmp_path / "other.txt", "y")   # its writer gone: removed now
    assert not tmp.exists()
