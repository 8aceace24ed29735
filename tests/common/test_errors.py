"""run_main: a failure of the machine is one ``error:`` line naming the path, exit 2."""
from __future__ import annotations

import errno
import os
import sys

import numpy as np
import pytest

from common.errors import UserError, machine_failure, run_main, write_failure_cause


def _run(main, capsys, monkeypatch, argv=("prog",)):
    monkeypatch.setattr(sys, "argv", list(argv))
    monkeypatch.delenv("LA2A_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_main(main)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return info.value.code, lines[0]


@pytest.mark.parametrize("code,cause", [(errno.ENOSPC, "no space left on device"),
                                        (errno.EROFS, "read-only file system"),
                                        (errno.EACCES, "permission denied")])
def test_machine_failure_is_a_clean_error(capsys, monkeypatch, code, cause):
    def main():
        raise OSError(code, os.strerror(code), "/data/out/summary.csv")
    status, line = _run(main, capsys, monkeypatch)
    assert status == 2
    assert line == f"error: /data/out/summary.csv: {cause}"


def test_machine_failure_under_another_exception(capsys, monkeypatch):
    def main():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/last.pt")
        except OSError as exc:
            raise RuntimeError("file write failed") from exc
    status, line = _run(main, capsys, monkeypatch)
    assert (status, line) == (2, "error: /x/last.pt: no space left on device")


def test_a_bug_is_still_an_internal_error(capsys, monkeypatch):
    def main():
        raise FileNotFoundError(errno.ENOENT, "No such file", "/nope")
    status, line = _run(main, capsys, monkeypatch)
    assert status == 1 and line.startswith("error: internal error (FileNotFoundError")


def test_user_error(capsys, monkeypatch):
    def main():
        raise UserError("a.wav: audio is silent")
    assert _run(main, capsys, monkeypatch) == (2, "error: a.wav: audio is silent")


def test_machine_failure_classification():
    assert machine_failure(OSError(errno.EDQUOT, "quota")) == "disk quota exceeded"
    assert machine_failure(ValueError("x")) is None
    assert machine_failure(OSError("no errno")) is None


def test_write_failure_cause_reads_the_folder(tmp_path, monkeypatch):
    assert write_failure_cause(tmp_path / "a.wav") is None  # a healthy folder

    class Full:
        f_flag, f_bavail, f_favail, f_files = 0, 0, 100, 1000

    class ReadOnly(Full):
        f_flag, f_bavail = os.ST_RDONLY, 100

    monkeypatch.setattr(os, "statvfs", lambda p: Full())
    assert write_failure_cause(tmp_path / "a.wav") == "no space left on device"
    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly())
    assert write_failure_cause(tmp_path / "a.wav") == "read-only file system"


def test_full_disk_while_rendering_gives_one_line(tmp_path, capsys, monkeypatch):
    """The whole entry script (digital_compressor.py) in this process, with libsndfile
    failing as it does on a full disk ("System error", no errno)."""
    import soundfile as sf

    import digital_compressor
    from audio import io as audio_io
    from audio.io import write_audio

    inp, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_audio(inp, 0.3 * np.sin(np.linspace(0, 2000, 44100)).astype(np.float32), 44100)
    out.write_bytes(b"old output")

    def system_error(self, data):
        raise sf.LibsndfileError(2, "System error.")

    monkeypatch.setattr(sf.SoundFile, "write", system_error)
    monkeypatch.setattr(audio_io, "write_failure_cause", lambda path: "no space left on device")
    status, line = _run(digital_compressor.main, capsys, monkeypatch,
                        ["digital_compressor.py", str(inp), str(out), "--threshold", "-20", "--ratio", "3",
                         "--attack", "1", "--release", "100"])
    assert status == 2
    assert line == f"error: {out}: cannot write audio (no space left on device)"
    assert out.read_bytes() == b"old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]
