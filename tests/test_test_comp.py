"""``test_comp.py`` as a user runs it: with a checkpoint it reproduces the digital
compressor; with a chain folder it renders any PR and mode through the knob map; it
keeps the file's format at any rate; bad input ends in one ``error:`` line."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import yaml

from audio.devices import la2a_setting
from dsp.storage.open_fit import load_param_map
from dsp.models.ff5_streaming import render

SR = 44100
PARAMS = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}


def _ckpt(path, params=PARAMS):
    from dsp.storage.records import save_checkpoint
    save_checkpoint(path, {"compressor": "ff5", "params": params, "esr": 0.01, "loss": 1.0, "iterations": 5, "converged": True,
                           "seconds": 0.5, "sample_rate": SR})
    return path


def _digital_args(p: dict) -> list[str]:
    return ["--threshold", repr(p["threshold_db"]), "--ratio", repr(p["ratio"]), "--attack", repr(p["attack_ms"]),
            "--release", repr(p["release_ms"]), "--make-up", repr(p["make_up_db"])]


def test_checkpoint_reproduces_digital_compressor(run_cli, make_pair, tmp_path, reference):
    """The render of a checkpoint is the compressor of the documented semantics (an
    independent loop), and the same bytes as digital_compressor.py."""
    src, _ = make_pair("a", seconds=2.0)
    ckpt = _ckpt(tmp_path / "ckpt.yaml")
    res = run_cli(["test_comp.py", "ckpt.yaml", src.name, "via_ckpt.wav"], cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "wrote via_ckpt.wav" in res.stdout
    x, _ = sf.read(str(src), dtype="float32")
    y, sr = sf.read(str(tmp_path / "via_ckpt.wav"), dtype="float32")
    assert sr == SR and ckpt.exists()
    expected = reference(x, SR, PARAMS)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)
    assert np.max(np.abs(expected - x * 10 ** (PARAMS["make_up_db"] / 20))) > 0.05  # it did compress
    res = run_cli(["digital_compressor.py", src.name, "via_digital.wav", *_digital_args(PARAMS)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "via_ckpt.wav").read_bytes() == (tmp_path / "via_digital.wav").read_bytes()


@pytest.mark.slow
def test_chain_folder_any_setting(run_cli, chain_reference, make_pair, tmp_path):
    src, _ = make_pair("b", seconds=2.0)
    x, _ = sf.read(str(src), dtype="float32")
    kmap = load_param_map(chain_reference / "knobmap.yaml")
    for pr, mode in ((85, "limit"), (93.5, "compress"), (90, "limit")):
        out = tmp_path / f"{mode}_{pr}.wav"
        res = run_cli(["test_comp.py", chain_reference, src, out, "--peak-reduction", pr, "--mode", mode])
        assert res.returncode == 0, res.stderr
        y, _ = sf.read(str(out), dtype="float32")
        np.testing.assert_allclose(y, render(x, SR, kmap.at(la2a_setting(mode, pr))), rtol=1e-6, atol=1e-7)
    # at a fitted level the knob map gives that level's checkpoint
    fitted = yaml.safe_load((chain_reference / "limit" / "pr_90" / "ckpt.yaml").read_text())["params"]
    y, _ = sf.read(str(tmp_path / "limit_90.wav"), dtype="float32")
    np.testing.assert_allclose(y, render(x, SR, fitted), rtol=1e-5, atol=1e-6)


def test_stereo_int16_keeps_format(run_cli, tmp_path, reference):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-0.5, 0.5, (SR, 2)) * np.linspace(0, 1, SR)[:, None])
    sf.write(str(tmp_path / "st.wav"), x, SR, subtype="PCM_16")
    _ckpt(tmp_path / "c.yaml", {**PARAMS, "make_up_db": 0.0})
    res = run_cli(["test_comp.py", "c.yaml", "st.wav", "out.wav"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = sf.info(str(tmp_path / "out.wav"))
    assert (info.samplerate, info.channels, info.frames, info.subtype, info.format) == (SR, 2, SR, "PCM_16", "WAV")
    xr, _ = sf.read(str(tmp_path / "st.wav"), dtype="float32")
    y, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    np.testing.assert_allclose(y, reference(xr.T, SR, {**PARAMS, "make_up_db": 0.0}).T, atol=1.01 / 32768)


def test_48k_input_and_other_formats(run_cli, make_pair, tmp_path):
    src, _ = make_pair("c", seconds=1.5, sr=48000, subtype="PCM_24")
    _ckpt(tmp_path / "c.yaml")
    for out in ("o48.wav", "o48.flac"):
        res = run_cli(["test_comp.py", "c.yaml", src.name, out, "--block", "1000"], cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        info = sf.info(str(tmp_path / out))
        assert (info.samplerate, info.subtype) == (48000, "PCM_24")
        x, _ = sf.read(str(src), dtype="float32")
        y, _ = sf.read(str(tmp_path / out), dtype="float32")
        np.testing.assert_allclose(y, render(x, 48000, PARAMS), atol=2.0 ** -22)


def test_clipped_full_scale_input_warns(run_cli, tmp_path):
    t = np.arange(SR) / SR
    x = np.clip(1.5 * np.sin(2 * np.pi * 220 * t), -1, 1)  # a clipped full-scale input
    sf.write(str(tmp_path / "hot.wav"), x, SR, subtype="PCM_16")
    _ckpt(tmp_path / "c.yaml", {**PARAMS, "threshold_db": -1.0, "ratio": 1.5, "make_up_db": 6.0})
    res = run_cli(["test_comp.py", "c.yaml", "hot.wav", "out.wav"], cwd=tmp_path)
    assert res.returncode == 0
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "clipped" in lines[0] and "out.wav" in lines[0]
    y, _ = sf.read(str(tmp_path / "out.wav"))
    assert np.max(np.abs(y)) <= 1.0 and np.max(np.abs(y)) > 0.99


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------
CK = "fits/ckpt.yaml"
BAD = {
    "missing checkpoint": (["nothere.yaml", "in.wav", "o.wav"], ["nothere.yaml", "not found"]),
    "garbage checkpoint": (["garbage.yaml", "in.wav", "o.wav"], ["garbage.yaml", "YAML"]),
    "checkpoint missing keys": (["nokeys.yaml", "in.wav", "o.wav"], ["nokeys.yaml", "lacks"]),
    "neural checkpoint": (["neural.yaml", "in.wav", "o.wav"], ["neural.yaml", "'neural'"]),
    "ratio 0.5 in checkpoint": (["ratio05.yaml", "in.wav", "o.wav"], ["ratio05.yaml", "ratio"]),
    "NaN in checkpoint": (["nanparam.yaml", "in.wav", "o.wav"], ["nanparam.yaml", "NaN"]),
    "audio as checkpoint": (["in.wav", "in.wav", "o.wav"], ["in.wav"]),
    "chain folder without knob map": (["nomap", "in.wav", "o.wav", "--peak-reduction", "50", "--mode", "compress"],
                                      ["knobmap.yaml", "not found"]),
    "chain folder without PR": (["kmap", "in.wav", "o.wav"], ["kmap", "--peak-reduction"]),
    "peak reduction 150": (["kmap", "in.wav", "o.wav", "--peak-reduction", "150", "--mode", "compress"],
                           ["--peak-reduction", "150"]),
    "peak reduction nan": (["kmap", "in.wav", "o.wav", "--peak-reduction", "nan", "--mode", "compress"],
                           ["--peak-reduction"]),
    "mode absent from knob map": (["kmap", "in.wav", "o.wav", "--peak-reduction", "50", "--mode", "limit"],
                                  ["knobmap.yaml", "limit"]),
    "unknown mode": (["kmap", "in.wav", "o.wav", "--peak-reduction", "50", "--mode", "squash"], ["squash"]),
    "PR with a ckpt file": ([CK, "in.wav", "o.wav", "--peak-reduction", "50"], [CK, "chain folder"]),
    "missing input": ([CK, "nothere.wav", "o.wav"], ["nothere.wav", "not found"]),
    "random bytes input": ([CK, "junk.wav", "o.wav"], ["junk.wav", "not a readable audio file"]),
    "text input": ([CK, "text.wav", "o.wav"], ["text.wav", "not a readable audio file"]),
    "empty input": ([CK, "empty.wav", "o.wav"], ["empty.wav", "empty"]),
    "silent input": ([CK, "silent.wav", "o.wav"], ["silent.wav", "silent"]),
    "NaN input": ([CK, "nan.wav", "out.wav", "--block", "1000"], ["nan.wav", "NaN"]),
    "Inf input": ([CK, "inf.wav", "out.wav"], ["inf.wav", "infinite"]),
    "output in a missing folder": ([CK, "in.wav", "nowhere/o.wav"], ["nowhere", "does not exist"]),
    "output is a folder": ([CK, "in.wav", "fits"], ["fits", "folder"]),
    "output over the input": ([CK, "in.wav", "./in.wav"], ["in.wav", "overwrite the input"]),
    "output extension": ([CK, "in.wav", "o.txt"], ["o.txt", "extension"]),
    "missing argument": ([CK, "in.wav"], ["output"]),
    "bad block": ([CK, "in.wav", "o.wav", "--block", "0"], ["--block"]),
    "unknown option": ([CK, "in.wav", "o.wav", "--ratio", "2"], ["--ratio"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, run_cli, workspace, clean_failure, take_snapshot):
    args, words = BAD[case]
    before = take_snapshot(workspace)
    res = run_cli(["test_comp.py", *args], cwd=workspace)
    clean_failure(res, *words, before=before, watch=(workspace,))


def test_bad_input_in_a_fresh_process(run_cli, workspace, clean_failure, take_snapshot):
    """The same contract when started as a plain ``python test_comp.py`` process, with the
    same output as through the test runner's fork server."""
    args, words = BAD["NaN input"]
    before = take_snapshot(workspace)
    res = run_cli(["test_comp.py", *args], cwd=workspace, fresh=True)
    clean_failure(res, *words, before=before, watch=(workspace,))
    fast = run_cli(["test_comp.py", *args], cwd=workspace)
    assert (fast.returncode, fast.stdout, fast.stderr) == (res.returncode, res.stdout, res.stderr)


def test_failed_runs_leave_earlier_results_byte_identical(run_cli, workspace, clean_failure):
    """An earlier ckpt.yaml and output wav survive failed runs that would have replaced them
    (a render that fails half-way through the file, a fit whose target is silent)."""
    files = [workspace / "out.wav", workspace / "fits" / "ckpt.yaml"]
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    clean_failure(run_cli(["test_comp.py", CK, "nan.wav", "out.wav", "--block", "512"], cwd=workspace), "nan.wav")
    clean_failure(run_cli(["train_comp.py", "data.input=in.wav", "data.target=late_silent.wav", "ckpt_dir=fits",
                           "quiet=true"], cwd=workspace), "late_silent.wav")
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before
