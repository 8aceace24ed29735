"""``digital_compressor.py``: the output of the documented semantics (torchcomp's, held
against an independent loop in ``tests/_reference.py``), format kept, any rate; bad
input ends in one ``error:`` line."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf


SR = 44100
PARAMS = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 2.0}
ARGS = ["--threshold", "-20", "--ratio", "3", "--attack", "1", "--release", "100", "--make-up", "2"]


def test_output_equals_the_documented_compressor(run_cli, make_pair, tmp_path, reference):
    """Stereo: one gain from the louder channel; held against an independent loop."""
    src, _ = make_pair("a", seconds=2.0, channels=2)
    res = run_cli(["digital_compressor.py", src.name, "out.wav", *ARGS], cwd=tmp_path, fresh=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    x, _ = sf.read(str(src), dtype="float32")
    y, sr = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    assert sr == SR and y.shape == x.shape
    np.testing.assert_allclose(y, reference(x.T, SR, PARAMS).T, rtol=1e-6, atol=1e-7)
    assert np.sum(y[:, 0] ** 2) < np.sum((x[:, 0] * 10 ** (2 / 20)) ** 2)  # it did compress


def test_make_up_defaults_to_zero(run_cli, make_pair, tmp_path, reference):
    src, _ = make_pair("b", seconds=1.0)
    res = run_cli(["digital_compressor.py", src, tmp_path / "o.wav", *ARGS[:-2]])
    assert res.returncode == 0, res.stderr
    x, _ = sf.read(str(src), dtype="float32")
    y, _ = sf.read(str(tmp_path / "o.wav"), dtype="float32")
    np.testing.assert_allclose(y, reference(x, SR, {**PARAMS, "make_up_db": 0.0}), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sr,subtype,channels,ext", [(48000, "PCM_16", 2, "wav"), (22050, "PCM_24", 1, "flac"),
                                                     (96000, "FLOAT", 1, "aiff")])
def test_rates_and_formats(run_cli, tmp_path, sr, subtype, channels, ext, reference):
    rng = np.random.default_rng(sr)
    x = rng.uniform(-0.6, 0.6, (sr // 2, channels))
    sf.write(str(tmp_path / f"in.{ext}"), x, sr, subtype=subtype)
    res = run_cli(["digital_compressor.py", f"in.{ext}", f"out.{ext}", *ARGS], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = sf.info(str(tmp_path / f"out.{ext}"))
    assert (info.samplerate, info.channels, info.subtype) == (sr, channels, subtype)
    xr, _ = sf.read(str(tmp_path / f"in.{ext}"), dtype="float32", always_2d=True)
    y, _ = sf.read(str(tmp_path / f"out.{ext}"), dtype="float32", always_2d=True)
    atol = {"PCM_16": 1.01 / 32768, "PCM_24": 1.01 / 2 ** 23, "FLOAT": 1e-7}[subtype]
    np.testing.assert_allclose(y, reference(xr.T, sr, PARAMS).T, atol=atol, rtol=1e-6)


def test_clipping_is_reported(run_cli, tmp_path):
    sf.write(str(tmp_path / "hot.wav"), np.full(SR // 4, 0.99), SR, subtype="PCM_16")
    res = run_cli(["digital_compressor.py", "hot.wav", "out.wav", "--threshold", "-1", "--ratio", "2", "--attack",
                   "1", "--release", "50", "--make-up", "12"], cwd=tmp_path)
    assert res.returncode == 0
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("warning: ") and "clipped" in res.stderr


DIG = ["in.wav", "o.wav"]
BAD = {
    "ratio 0.5": ([*DIG, *ARGS[:2], "--ratio", "0.5", *ARGS[4:]], ["--ratio", "0.5"]),
    "ratio 1": ([*DIG, *ARGS[:2], "--ratio", "1", *ARGS[4:]], ["--ratio"]),
    "attack -1": ([*DIG, *ARGS[:4], "--attack", "-1", *ARGS[6:]], ["--attack"]),
    "release 0": ([*DIG, *ARGS[:6], "--release", "0", *ARGS[8:]], ["--release"]),
    "threshold nan": ([*DIG, "--threshold", "nan", *ARGS[2:]], ["--threshold", "nan"]),
    "threshold above 0": ([*DIG, "--threshold", "6", *ARGS[2:]], ["--threshold"]),
    "make-up inf": ([*DIG, *ARGS[:8], "--make-up", "inf"], ["--make-up"]),
    "ratio not a number": ([*DIG, *ARGS[:2], "--ratio", "lots", *ARGS[4:]], ["--ratio", "lots"]),
    "ratio missing": ([*DIG, *ARGS[:2], *ARGS[4:]], ["--ratio"]),
    "missing input": (["nothere.wav", "o.wav", *ARGS], ["nothere.wav", "not found"]),
    "random bytes input": (["junk.wav", "o.wav", *ARGS], ["junk.wav", "not a readable audio file"]),
    "text input": (["text.wav", "o.wav", *ARGS], ["text.wav", "not a readable audio file"]),
    "empty input": (["empty.wav", "o.wav", *ARGS], ["empty.wav", "empty"]),
    "silent input": (["silent.wav", "o.wav", *ARGS], ["silent.wav", "silent"]),
    "NaN input": (["nan.wav", "out.wav", *ARGS], ["nan.wav", "NaN"]),
    "output in a missing folder": (["in.wav", "nowhere/o.wav", *ARGS], ["nowhere", "does not exist"]),
    "output extension": (["in.wav", "o.txt", *ARGS], ["o.txt", "extension"]),
    "output over the input": (["in.wav", "in.wav", *ARGS], ["in.wav", "overwrite"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, run_cli, workspace, clean_failure, take_snapshot):
    args, words = BAD[case]
    before = take_snapshot(workspace)
    res = run_cli(["digital_compressor.py", *args], cwd=workspace)
    clean_failure(res, *words, before=before, watch=(workspace,))
