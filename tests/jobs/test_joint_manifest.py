"""``train_comp.py data=manifest method=joint``: a device with two knobs, its parameters smooth
in each knob, fitted on Train, chosen on Val, read back by ``ensure_dsp_fit`` (and refused
when the takes changed), rendered by ``test_comp.py --knob`` and exported."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

import leveller
from audio.manifest import read_manifest
from common.config import load_config
from common.errors import UserError
from dsp.knobs.knobcurves import KnobCurves
from dsp.storage.open_fit import load_param_map
from dsp.models.ff5_streaming import StreamingCompressor
from dsp.fitting.by_class import evaluate_any
from jobs.ensure import ensure_dsp_fit
from jobs.protocol import scorable_frames
from jobs.fit import run_fit_job
from support import SR, program, write_wav

pytestmark = pytest.mark.slow   # a joint fit of 6 takes, two candidates

KNOBS = ("threshold", "ratio")
TRAIN = [(t, r) for t in (-32, -24, -16) for r in (2, 4, 6)]
VAL = [(-28, 3), (-20, 5)]
TEST = [(-20, 3)]


def _device(x: np.ndarray, setting) -> np.ndarray:
    t, r = setting
    params = {"threshold_db": t, "ratio": r, "attack_ms": 3.0, "release_ms": 120.0, "make_up_db": 0.0}
    return StreamingCompressor(params, SR).process(x[None, :].astype(np.float32))[0]


def _bursts(seconds: float, seed: int) -> np.ndarray:
    """Noise in 50 ms bursts at levels from -50 to 0 dB: every threshold is crossed often,
    so the takes pin the parameters down (steady loud material would not)."""
    rng = np.random.default_rng(seed)
    n, seg = int(seconds * SR), SR // 20
    levels = 10.0 ** (rng.uniform(-50.0, 0.0, n // seg + 1) / 20.0)
    return (0.5 * rng.standard_normal(n) * np.repeat(levels, seg)[:n]).astype(np.float32)


def _manifest(folder, rows) -> str:
    lines = [",".join(("split", "input", "target", *KNOBS))]
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for i, (split, setting, seconds) in enumerate(rows):
        x = _bursts(seconds, seed=70 + i)
        inp, tgt = f"audio/{i:02d}_in.wav", f"audio/{i:02d}_target.wav"
        write_wav(folder / inp, x[None, :])
        write_wav(folder / tgt, _device(x, setting)[None, :])
        lines.append(",".join([split, inp, tgt, *(f"{v:g}" for v in setting)]))
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "manifest.csv")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("joint-manifest")
    path = _manifest(tmp, [("Train", s, 2.0) for s in TRAIN] + [("Val", s, 1.5) for s in VAL]
                     + [("Test", s, 2.0) for s in TEST])
    cfg = load_config("config", ["data=manifest", f"data.path={path}", f"ckpt_dir={tmp / 'fits'}", "method=joint",
                                 "joint.candidates=[[3,1e-3]]", "joint.priors=[0.0,1.0e-3]", "quiet=true"])
    assert run_fit_job(cfg) == 0
    return tmp, cfg


def test_writes_curves_summary_and_record(fitted):
    tmp, _ = fitted
    curves = load_param_map(tmp / "fits" / "knobcurves.yaml")
    assert isinstance(curves, KnobCurves) and curves.knobs == list(KNOBS)
    assert isinstance(leveller.open_fit(tmp / "fits").param_map, KnobCurves)   # the folder, as a user gives it
    assert curves.protocol["fit_splits"] == ["Train"]
    assert sorted(tuple(s[k] for k in KNOBS) for s in curves.settings()) == sorted(map(tuple, map(map_float, TRAIN)))
    with open(tmp / "fits" / "joint_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["split"] for r in rows] == ["Train"] * len(TRAIN)
    assert all(float(r["esr"]) < 0.05 for r in rows)
    record = yaml.safe_load((tmp / "fits" / "joint.yaml").read_text())
    assert len(record["selection"]) == 2 and sum(r["chosen"] for r in record["selection"]) == 1
    assert record["monotone"] == {}          # the LA-2A's shape priors name PR: not for a device's own knobs
    # the ridge weight is chosen on Val too: every one was tried, the chosen one recorded
    assert {r["prior"] for r in record["selection"]} == {0.0, 1e-3} and record["prior"] in (0.0, 1e-3)


def map_float(setting):
    return tuple(float(v) for v in setting)


def test_the_curves_are_smooth_in_each_knob_between_the_takes(fitted):
    """Between fitted settings the curves interpolate (the truth: threshold_db = the
    threshold knob, ratio = the ratio knob); a knob table would answer with a neighbour."""
    tmp, _ = fitted
    curves = load_param_map(tmp / "fits" / "knobcurves.yaml")
    thr = [curves.at({"threshold": t, "ratio": 4.0})["threshold_db"] for t in np.linspace(-32, -16, 9)]
    assert np.all(np.diff(thr) > 0)
    mid = curves.at({"threshold": -20.0, "ratio": 3.0})
    assert curves.at_without({"threshold": -20.0, "ratio": 3.0}) == mid
    # at the Test setting, never fitted, the curves' own answer renders the unit better than
    # theirs at any fitted neighbour (what a nearest-setting table would answer)
    test = [r for r in read_manifest(tmp / "manifest.csv") if r.split == "Test"][0]
    frames = scorable_frames(test, 12.0, 0.5)
    esr = evaluate_any(frames, mid)
    neighbours = [evaluate_any(frames, curves.at({"threshold": t, "ratio": r})) for t, r in TRAIN]
    print(f"Test ESR at threshold -20, ratio 3: {esr:.4g}; at the fitted settings' curves: "
          + ", ".join(f"{v:.4g}" for v in neighbours))
    assert esr < 0.5 * min(neighbours)
    with pytest.raises(UserError, match="far outside the fitted range"):
        curves.at({"threshold": 10.0, "ratio": 4.0})


def test_ensure_reads_the_curves_of_these_takes_only(fitted, tmp_path):
    tmp, cfg = fitted
    rows = [r for r in read_manifest(cfg.data.path) if r.split == "Train"]
    got = ensure_dsp_fit(cfg.data, tmp / "fits", rows, fit=False)
    assert isinstance(got, KnobCurves)
    with pytest.raises(UserError, match="fitted on other takes"):
        ensure_dsp_fit(cfg.data, tmp / "fits", rows[:-1], fit=False)


def test_the_curves_render_through_test_comp_and_export(fitted, run_cli, tmp_path):
    """``test_comp.py FIT --knob ...`` renders the curves' answer at a setting never fitted, and
    the exported module (``forward(x, knobs)``) equals it."""
    import soundfile as sf
    import torch
    tmp, _ = fitted
    setting = {"threshold": -20.0, "ratio": 3.0}
    x = program(1.0, SR, seed=3)
    write_wav(tmp_path / "in.wav", x)
    res = run_cli(["test_comp.py", str(tmp / "fits"), "in.wav", "out.wav", "--knob", "threshold=-20",
                   "--knob", "ratio=3"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    fit = leveller.open_fit(tmp / "fits")
    ref = fit.render(x.astype(np.float32), SR, setting)
    y, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    np.testing.assert_allclose(y.T, ref, atol=1e-6)
    res = run_cli(["export.py", str(tmp / "fits"), "curves.pt"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    module = torch.jit.load(str(tmp_path / "curves.pt"))
    assert module.knob_names() == list(KNOBS)
    with torch.no_grad():
        out = np.concatenate([module(torch.from_numpy(x[:, i:i + 777].astype(np.float32)), [-20.0, 3.0]).numpy()
                              for i in range(0, x.shape[1], 777)], axis=1)
    assert np.max(np.abs(out - ref)) < 1e-5
    assert module.parameters_at([-20.0, 3.0]) == pytest.approx(list(fit.at(setting).values()), rel=1e-9)


def test_a_hybrid_trains_on_the_curves_and_conditions_on_them(fitted, run_cli, tmp_path):
    """The curves are the hybrid's DSP map: its checkpoint carries them, and at a setting
    never fitted its DSP parameters are the curves' there (not a neighbour's)."""
    from neural.inference import NeuralRenderer
    tmp, cfg = fitted
    tiny = ["+hyperparameters.width=4", "train.batch_size=2", "train.warmup_s=0.05", "train.segment_s=0.1",
            "train.episode=2", "train.val_every=2", "train.val_seconds=0.5", "train.max_steps=2", "quiet=true"]
    res = run_cli(["train_neural.py", "data=manifest", f"data.path={cfg.data.path}", "model=s6", "variant=hybrid",
                   f"dsp_dir={tmp / 'fits'}", f"out_dir={tmp_path / 'run'}", "fit_chain=false", *tiny])
    assert res.returncode == 0, res.stderr
    renderer = NeuralRenderer.load(tmp_path / "run" / "best.pt")
    assert isinstance(renderer.param_map, KnobCurves)
    between = {"threshold": -20.0, "ratio": 3.0}
    assert renderer.dsp_params(between) == pytest.approx(load_param_map(tmp / "fits" / "knobcurves.yaml").at(between))
