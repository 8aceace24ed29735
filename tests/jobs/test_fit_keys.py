"""Manifest take fits are keyed by their data (dsp/storage/fitkey.py): a take whose files changed
under the same name is refitted with a note, the others are reused."""
from __future__ import annotations

import numpy as np

from audio.material import synthesize
from tests.conftest import write_wav
from tests.test_manifest_neural import SR, _device, write_manifest


def _notes(res):
    return [ln for ln in res.stderr.splitlines() if ln.startswith("note: refitting")]


def test_a_take_with_new_audio_is_refitted(run_cli, tmp_path):
    path = write_manifest(tmp_path, [("Train", (-30, 2, 1, 50), 1.5, 1), ("Train", (-20, 6, 10, 300), 1.5, 2)])
    args = ["train_comp.py", "data=manifest", f"data.path={path}", f"ckpt_dir={tmp_path / 'fits'}", "quiet=true"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    ckpts = sorted((tmp_path / "fits" / "rows").glob("*/ckpt.yaml"))
    kept = ckpts[1].read_bytes()
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0 and not _notes(again), again.stderr
    # new audio under the first take's names (the same path, size and settings)
    x = synthesize(1.5, SR, seed=99).astype(np.float32)
    x *= 0.9 / float(np.max(np.abs(x)))
    write_wav(tmp_path / "audio" / "00_in.wav", x[None, :])
    write_wav(tmp_path / "audio" / "00_target.wav", _device(x, (-30, 2, 1, 50))[None, :])
    res = run_cli(args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    notes = _notes(res)
    assert len(notes) == 1 and str(ckpts[0]) in notes[0] and "not the one it was fitted on" in notes[0], res.stderr
    assert ckpts[1].read_bytes() == kept
