"""Pair checks at fit time (issue 15): latency and polarity found, corrected, printed and
recorded; a collapsed fit or an unalignable pair is an error, never a converged fit."""
from __future__ import annotations

import re

import numpy as np
import yaml

from support import PLUMBING_CLASS, SR, TRUE_PARAMS, program, write_wav
from dsp.models.ff5_streaming import render

DELAY = 64


def _pairs(folder, seconds=4.0):
    """An aligned held-out pair and the same pair with the target 64 samples late and inverted."""
    x = program(seconds, SR, seed=7)
    y = render(x, SR, TRUE_PARAMS)
    late = np.concatenate([np.zeros((1, DELAY)), y[:, :-DELAY]], axis=1) * -1.0
    folder.mkdir(parents=True, exist_ok=True)
    return (write_wav(folder / "in.wav", x), write_wav(folder / "target.wav", y),
            write_wav(folder / "late.wav", late))


def _fit(run_cli, tmp_path, inp, tgt, name, *extra):
    out = tmp_path / name
    r = run_cli(["train_comp.py", f"data.input={inp}", f"data.target={tgt}", f"ckpt_dir={out}",
                 "quiet=true", "data.frame_s=2.0", "data.overlap_s=0.5", PLUMBING_CLASS, *extra], cwd=tmp_path)
    return r, out / "ckpt.yaml"


def test_late_inverted_pair_fits_like_the_aligned_one(run_cli, tmp_path):
    inp, tgt, late = _pairs(tmp_path / "audio")
    r0, ck0 = _fit(run_cli, tmp_path, inp, tgt, "aligned")
    assert r0.returncode == 0, r0.stderr
    r1, ck1 = _fit(run_cli, tmp_path, inp, late, "late")
    assert r1.returncode == 0, r1.stderr
    found = re.search(r"target latency ([+-][\d.]+) samples", r1.stdout)
    assert found, r1.stdout
    assert abs(float(found.group(1)) - DELAY) < 0.05
    assert "polarity inverted" in r1.stdout
    esr0 = yaml.safe_load(ck0.read_text())["esr"]
    rec = yaml.safe_load(ck1.read_text())
    assert rec["esr"] <= 1.2 * esr0 + 1e-9, (rec["esr"], esr0)
    assert rec["alignment"]["polarity"] == -1
    assert abs(rec["alignment"]["latency_samples"] - DELAY) < 0.05
    assert rec["params"]["make_up_db"] > -10
    print(f"aligned ESR {esr0:.3e}, late+inverted ESR {rec['esr']:.3e}, latency {found.group(1)}")


def test_align_off_collapses_into_an_error(run_cli, tmp_path, clean_failure):
    inp, _, late = _pairs(tmp_path / "audio")
    r, ck = _fit(run_cli, tmp_path, inp, late, "off", "data.align=off")
    clean_failure(r, str(late), "collapsed")
    assert not ck.exists()


def test_unrelated_target_cannot_be_aligned(run_cli, tmp_path, clean_failure):
    inp, _, _ = _pairs(tmp_path / "audio")
    other = write_wav(tmp_path / "other.wav", render(program(4.0, SR, seed=99), SR, TRUE_PARAMS))
    r, ck = _fit(run_cli, tmp_path, inp, other, "unrelated")
    clean_failure(r, str(other), "cannot align")
    assert not ck.exists()


def test_bad_align_value(run_cli, tmp_path, clean_failure):
    inp, tgt, _ = _pairs(tmp_path / "audio")
    r, _ = _fit(run_cli, tmp_path, inp, tgt, "bad", "data.align=maybe")
    clean_failure(r, "data.align")


def test_fractional_latency_is_found_and_corrected(run_cli, tmp_path):
    """A target 40.4 samples late (band-limited delay) fits close to the aligned pair."""
    from audio.align import fractional_advance
    inp, tgt, _ = _pairs(tmp_path / "audio")
    y = np.atleast_2d(__import__("soundfile").read(str(tgt), dtype="float64")[0])
    late = np.concatenate([np.zeros((1, 40)), fractional_advance(y, -0.4)[:, :-40]], axis=1)
    late_path = write_wav(tmp_path / "audio" / "late_frac.wav", late)
    r0, ck0 = _fit(run_cli, tmp_path, inp, tgt, "aligned")
    r1, ck1 = _fit(run_cli, tmp_path, inp, late_path, "frac")
    assert r1.returncode == 0, r1.stderr
    rec = yaml.safe_load(ck1.read_text())
    assert abs(rec["alignment"]["latency_samples"] - 40.4) < 0.05, rec["alignment"]
    esr0 = yaml.safe_load(ck0.read_text())["esr"]
    assert rec["esr"] < max(1.2 * esr0, 1e-4), (rec["esr"], esr0)
    print(f"fractional: aligned ESR {esr0:.3e}, 40.4-sample late ESR {rec['esr']:.3e}")


def test_a_corpus_mixing_rates_fails_before_any_fit(run_cli, tmp_path, clean_failure):
    import soundfile as sf
    from audio.material import synthesize
    root = tmp_path / "st" / "Train"
    root.mkdir(parents=True)
    for fid, pr, sr in ((1, 100, SR), (2, 90, SR), (3, 80, 48000)):
        x = synthesize(2.0, sr, seed=fid).astype(np.float64)
        sf.write(str(root / f"input_{fid:03d}_.wav"), x, sr, subtype="FLOAT")
        sf.write(str(root / f"target_{fid:03d}_LA2A_3c__0__{pr}.wav"), render(x, sr, TRUE_PARAMS), sr, subtype="FLOAT")
    res = run_cli(["train_comp.py", "data=signaltrain", f"data.root={tmp_path / 'st'}", "ckpt_dir=fits",
                   "quiet=true", "modes=[compress]"], cwd=tmp_path)
    clean_failure(res, "input_003_.wav", "48000 Hz", "44100 Hz")
    assert not (tmp_path / "fits" / "compress").exists()
