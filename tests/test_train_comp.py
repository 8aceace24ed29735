"""``train_comp.py`` as a user runs it: one pair (relative paths, another working
directory), a chain (summary, checkpoints, knob map), a SignalTrain folder made by
hand, and every kind of bad input ending in one ``error:`` line."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import yaml

from audio.devices import la2a_setting
from jobs.chain import SUMMARY_COLUMNS
from dsp.knobs.knobmap import KnobMap
from dsp.storage.open_fit import load_param_map
from dsp.models.parameters import PARAM_NAMES
from dsp.models.ff5_streaming import render
from audio.metrics import PooledESR
from support import CAPPED_ITERATIONS, PLUMBING_CLASS

SR = 44100
TRUE = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0}
DESIGN_KEYS = ("params", "esr", "loss", "iterations", "converged", "seconds", "sample_rate")


def _assert_recovers(params: dict, truth: dict, rel: float = 1e-3) -> None:
    for k in PARAM_NAMES:
        tol = rel if k.endswith("_db") else rel * abs(truth[k])
        assert abs(params[k] - truth[k]) <= tol, (k, params[k], truth[k])


# --------------------------------------------------------------------------------------
# one pair
# --------------------------------------------------------------------------------------
def test_single_pair_relative_paths_from_another_directory(run_cli, make_pair, tmp_path):
    make_pair("song", params=TRUE)
    before = set(p.name for p in tmp_path.iterdir())
    res = run_cli(["train_comp.py", "data.input=song_in.wav", "data.target=song_target.wav",
                   "ckpt_dir=fits/song", "quiet=true", PLUMBING_CLASS], cwd=tmp_path, fresh=True)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "thresh dB" in res.stdout   # a short table at the end
    ckpt = tmp_path / "fits" / "song" / "ckpt.yaml"
    data = yaml.safe_load(ckpt.read_text())
    for key in DESIGN_KEYS:
        assert key in data, key
    assert list(data["params"]) == list(PARAM_NAMES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in data["params"].values())
    assert data["converged"] is True and data["sample_rate"] == SR
    assert isinstance(data["iterations"], int) and data["iterations"] >= 1
    assert data["seconds"] > 0 and data["loss"] >= 0 and 0 <= data["esr"] < 1e-6
    _assert_recovers(data["params"], TRUE)
    # the fit's page: the alignment applied, the parameters, the pair to listen to
    page = (ckpt.parent / "report.html").read_text()
    assert "Alignment applied to the pair" in page and "thresh dB" in page
    flacs = sorted(p.name for p in (ckpt.parent / "report_files").glob("*.flac"))
    assert flacs == ["the-pair_error.flac", "the-pair_fit.flac", "the-pair_input.flac", "the-pair_target.flac"]
    # the run did not change directory: nothing new beside the inputs but fits/, and no
    # Hydra outputs/ folder anywhere
    assert set(p.name for p in tmp_path.iterdir()) == before | {"fits"}
    assert not any(p.name.startswith(".") for p in ckpt.parent.iterdir())


def test_single_pair_stereo_float_at_48k(run_cli, make_pair, tmp_path):
    make_pair("st", params=TRUE, sr=48000, channels=2, seconds=2.5)
    res = run_cli(["train_comp.py", "data.input=st_in.wav", "data.target=st_target.wav", "ckpt_dir=out",
                   "quiet=true", PLUMBING_CLASS], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = yaml.safe_load((tmp_path / "out" / "ckpt.yaml").read_text())
    assert data["sample_rate"] == 48000
    # the fit links the channels' detector as the renderer does (the louder drives both)
    _assert_recovers(data["params"], TRUE)
    assert data["esr"] < 1e-10


def test_the_default_model_fits_a_stereo_pair_as_it_renders_it(run_cli, make_pair, tmp_path):
    """The optical cell (the default class) fits a stereo pair with its channels linked, as
    test_comp.py renders it: the fit's ESR is the rendered file's, pooled over both channels."""
    make_pair("st", params=TRUE, sr=16000, channels=2, seconds=2.0)
    res = run_cli(["train_comp.py", "data.input=st_in.wav", "data.target=st_target.wav", "ckpt_dir=out",
                   "quiet=true", "data.align=off", CAPPED_ITERATIONS], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = yaml.safe_load((tmp_path / "out" / "ckpt.yaml").read_text())
    assert data["compressor"] == "opto" and 0 < data["esr"] < 0.1
    res = run_cli(["test_comp.py", "out", "st_in.wav", "o.wav"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out, sr = sf.read(str(tmp_path / "o.wav"))
    target, _ = sf.read(str(tmp_path / "st_target.wav"))
    rendered = PooledESR()
    for c in range(2):   # the fit scores each channel after its 1 s warm-up
        rendered.add_signals(out[:, c], target[:, c], skip=sr)
    assert data["esr"] == pytest.approx(rendered.value, rel=1e-5)


def test_clipped_full_scale_pair_fits(run_cli, tmp_path):
    """Input clipped at full scale (int16) is ordinary audio: the fit runs and converges."""
    rng = np.random.default_rng(3)
    x = np.clip(rng.normal(0, 0.6, 3 * SR), -1, 1)
    x[::500] = 1.0
    sf.write(str(tmp_path / "hot.wav"), x, SR, subtype="PCM_16")
    xr, _ = sf.read(str(tmp_path / "hot.wav"))
    sf.write(str(tmp_path / "hot_t.wav"), render(xr, SR, TRUE), SR, subtype="FLOAT")
    res = run_cli(["train_comp.py", "data.input=hot.wav", "data.target=hot_t.wav", "ckpt_dir=c", "quiet=true", PLUMBING_CLASS],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load((tmp_path / "c" / "ckpt.yaml").read_text())["esr"] < 1e-4


def test_help(run_cli):
    res = run_cli(["train_comp.py", "--help"])
    assert res.returncode == 0 and "data.input" in res.stdout and res.stderr == ""


# --------------------------------------------------------------------------------------
# chains
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_chain_outputs(chain_reference, chain_settings, read_summary):
    """summary.csv with exactly the documented columns, one ckpt.yaml per level, the knob map."""
    with open(chain_reference / "summary.csv") as fh:   # the documented columns, then the Val/Test scores
        assert fh.readline().strip() == ",".join(SUMMARY_COLUMNS + ["esr_val", "esr_test", "converged", "at_bound"])
    assert SUMMARY_COLUMNS == ["mode", "peak_reduction", "threshold_db", "ratio", "attack_ms", "release_ms",
                               "make_up_db", "esr", "iterations", "seconds"]
    rows = read_summary(chain_reference / "summary.csv")
    expected = [(m, pr) for m in chain_settings["modes"] for pr in sorted(chain_settings["levels"], reverse=True)]
    assert [(r["mode"], int(r["peak_reduction"])) for r in rows] == expected
    found = sorted(p.relative_to(chain_reference).as_posix() for p in chain_reference.rglob("ckpt.yaml"))
    assert found == sorted(f"{m}/pr_{pr}/ckpt.yaml" for m, pr in expected)
    km = load_param_map(chain_reference / "knobmap.yaml")
    for r in rows:
        ck = yaml.safe_load((chain_reference / r["mode"] / f"pr_{r['peak_reduction']}" / "ckpt.yaml").read_text())
        for key in DESIGN_KEYS:
            assert key in ck
        assert ck["mode"] == r["mode"] and ck["peak_reduction"] == int(r["peak_reduction"])
        for k in PARAM_NAMES:  # the summary rounds to 6 significant digits
            assert float(r[k]) == pytest.approx(ck["params"][k], rel=1e-5, abs=1e-9)
            assert km.at(la2a_setting(r["mode"], int(r["peak_reduction"])))[k] == pytest.approx(ck["params"][k], rel=1e-9,
                                                                                  abs=1e-9)
        assert float(r["esr"]) == pytest.approx(ck["esr"], rel=1e-5) and 0 < ck["esr"] < 1
        assert int(r["iterations"]) == ck["iterations"] >= 1


def test_signaltrain_folder_made_by_hand(run_cli, tmp_path, read_summary):
    """``data=signaltrain data.root=DIR`` fits whatever levels the folder holds."""
    root = tmp_path / "SignalTrain"
    from audio.material import synthesize
    truths = {("compress", 100): {**TRUE, "threshold_db": -30.0}, ("compress", 70): TRUE,
              ("limit", 90): {**TRUE, "ratio": 10.0}}
    layout = [("Train", 1, "compress", 100), ("Val", 2, "compress", 70), ("Test", 3, "limit", 90)]
    for split, fid, mode, pr in layout:
        (root / split).mkdir(parents=True, exist_ok=True)
        x = synthesize(2.0, SR, seed=fid).astype(np.float64)
        sf.write(str(root / split / f"input_{fid:03d}_.wav"), x, SR, subtype="FLOAT")
        switch = 0 if mode == "compress" else 1
        sf.write(str(root / split / f"target_{fid:03d}_LA2A_3c__{switch}__{pr}.wav"),
                 render(x, SR, truths[mode, pr]), SR, subtype="FLOAT")
    # the protocol (default): only the Train setting is fitted; the Val-only and Test-only ones are not
    res = run_cli(["train_comp.py", "data=signaltrain", f"data.root={root}", "ckpt_dir=train_only", "quiet=true",
                   "init=default", PLUMBING_CLASS], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert [(r["mode"], int(r["peak_reduction"])) for r in read_summary(tmp_path / "train_only" / "summary.csv")] \
        == [("compress", 100)]
    assert load_param_map(tmp_path / "train_only" / "knobmap.yaml").protocol["fit_splits"] == ["Train"]
    # asked for explicitly, every split is fitted (and the record says so)
    res = run_cli(["train_comp.py", "data=signaltrain", f"data.root={root}", "ckpt_dir=fits", "quiet=true",
                   "init=default", "data.fit_splits=[Train,Val,Test]", PLUMBING_CLASS], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = read_summary(tmp_path / "fits" / "summary.csv")
    assert [(r["mode"], int(r["peak_reduction"])) for r in rows] == [("compress", 100), ("compress", 70),
                                                                      ("limit", 90)]
    for r in rows:
        ck = yaml.safe_load((tmp_path / "fits" / r["mode"] / f"pr_{r['peak_reduction']}" / "ckpt.yaml").read_text())
        _assert_recovers(ck["params"], truths[r["mode"], int(r["peak_reduction"])], rel=1e-2)
    km = load_param_map(tmp_path / "fits" / "knobmap.yaml")
    assert km.levels("compress") == [70, 100] and km.levels("limit") == [90]


# --------------------------------------------------------------------------------------
# bad input: one line, no traceback, nothing on disk changed
# --------------------------------------------------------------------------------------
def _pair(inp: str, tgt: str) -> list[str]:
    return [f"data.input={inp}", f"data.target={tgt}", "ckpt_dir=fits", "quiet=true"]


# case: (arguments after train_comp.py, words the error line must hold)
BAD = {
    "missing input": (_pair("nothere.wav", "tgt.wav"), ["nothere.wav", "not found"]),
    "missing target": (_pair("in.wav", "nothere.wav"), ["nothere.wav", "not found"]),
    "random bytes": (_pair("junk.wav", "tgt.wav"), ["junk.wav", "not a readable audio file"]),
    "text named .wav": (_pair("in.wav", "text.wav"), ["text.wav", "not a readable audio file"]),
    "empty wav": (_pair("empty.wav", "tgt.wav"), ["empty.wav", "empty"]),
    "folder as input": (_pair("fits", "tgt.wav"), ["fits", "input"]),   # the output folder as the input
    "sample rates differ": (_pair("in.wav", "tgt48.wav"), ["tgt48.wav", "in.wav", "sample rate"]),
    "lengths differ": (_pair("in.wav", "tgt_short.wav"), ["tgt_short.wav", "in.wav", "length"]),
    "channels differ": (_pair("in.wav", "tgt_stereo.wav"), ["tgt_stereo.wav", "channels"]),
    "silent input": (_pair("silent.wav", "tgt.wav"), ["silent.wav", "silent"]),
    "silent target": (_pair("in.wav", "silent.wav"), ["silent.wav", "silent"]),
    "target silent after warm-up": (_pair("in.wav", "late_silent.wav"), ["late_silent.wav", "silent"]),
    "NaN samples": (_pair("nan.wav", "tgt.wav"), ["nan.wav", "NaN"]),
    "Inf samples": (_pair("in.wav", "inf.wav"), ["inf.wav", "infinite"]),
    "shorter than warm-up": (_pair("short_in.wav", "short_tgt.wav"), ["short_", "warm-up"]),
    "input without target": (["data.input=in.wav", "ckpt_dir=fits"], ["data.target"]),
    "hessian=bogus": (_pair("in.wav", "tgt.wav") + ["optimiser.hessian=bogus"], ["optimiser.hessian", "bogus"]),
    "init ratio 50": (_pair("in.wav", "tgt.wav") + ["compressor.init.ratio=50"], ["compressor.init", "ratio"]),
    "inverted range": (_pair("in.wav", "tgt.wav") + ["compressor.ranges.attack_ms=[10,1]"], ["attack_ms"]),
    "max_iterations 0": (_pair("in.wav", "tgt.wav") + ["optimiser.max_iterations=0"], ["max_iterations"]),
    "ckpt_dir is a file": ([*_pair("in.wav", "tgt.wav")[:2], "ckpt_dir=afile"], ["afile", "is a file"]),
    "ckpt_dir under a file": ([*_pair("in.wav", "tgt.wav")[:2], "ckpt_dir=afile/sub"], ["afile"]),
    "unknown key": (_pair("in.wav", "tgt.wav") + ["bogus_key=1"], ["bogus_key"]),
    "dash option": (["--ratio", "3"], ["--ratio"]),
    "unknown data set": (["data=nosuch"], ["nosuch"]),
    "device cuda": (_pair("in.wav", "tgt.wav") + ["device=tpu"], ["device", "tpu"]),
    "chain levels out of range": (["data=signaltrain", "data.root=st_good", "levels=[150]", "ckpt_dir=fits2"],
                                  ["levels", "0..100"]),
    "chain unknown mode": (["data=signaltrain", "data.root=st_good", "modes=[squash]", "ckpt_dir=fits2"],
                           ["squash"]),
    "chain unknown init": (["data=signaltrain", "data.root=st_good", "init=warm", "ckpt_dir=fits2"], ["init", "warm"]),
    "chain no such level": (["data=signaltrain", "data.root=st_good", "levels=[50]", "ckpt_dir=fits2"],
                            ["st_good", "no Train pairs"]),
    "signaltrain missing folder": (["data=signaltrain", "data.root=nowhere", "ckpt_dir=fits2"],
                                   ["nowhere", "not found"]),
    "signaltrain root unset": (["data=signaltrain", "ckpt_dir=fits2"], ["data.root"]),
    "signaltrain unpaired": (["data=signaltrain", "data.root=st_unpaired", "ckpt_dir=fits2"],
                             ["input_002_.wav", "unpaired"]),
    "signaltrain duplicate id": (["data=signaltrain", "data.root=st_dup", "ckpt_dir=fits2"],
                                 ["target_001_LA2A_3c__0__90.wav", "duplicate ID"]),
    "signaltrain unknown name": (["data=signaltrain", "data.root=st_unknown", "ckpt_dir=fits2"],
                                 ["take2.wav", "unknown file name"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, run_cli, workspace, clean_failure, take_snapshot):
    args, words = BAD[case]
    before = take_snapshot(workspace)
    res = run_cli(["train_comp.py", *args], cwd=workspace)
    clean_failure(res, *words, before=before, watch=(workspace,))


def test_debug_shows_the_traceback(run_cli, workspace):
    res = run_cli(["train_comp.py", *BAD["missing input"][0]], cwd=workspace, env={"LA2A_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr and "UserError" in res.stderr
