"""``compressor=opto`` through main's machinery: the class registry and fit dispatch, a chain
(blocks held across levels, the monotone threshold floor), its summary and knob map, opening
rendering and exporting the fit folder, and the hybrids' class check (the joint fit of opto:
tests/jobs/test_protocol.py, tests/dsp/fitting/test_joint_opto.py)."""
from __future__ import annotations

import numpy as np
import pytest

from audio.io import write_audio
from audio.material import synthesize
from common.config import load_config
from common.errors import UserError
from dsp.fitting.by_class import evaluate_any, fit_any, options_class
from dsp.fitting.opto import OptoFitOptions, evaluate_opto_esr
from dsp.models.classes import MODEL_CLASSES, ModelParams, model_class
from dsp.models.graybox import BLOCK_NAMES
from dsp.models.opto import OPTO_NAMES, OPTO_START
from dsp.models.opto_streaming import render
from jobs.chain import ChainSpec, run_chain, write_summary
from jobs.fit_options import fit_options, initial_params

SR = 8000
BLOCKS = {"input_highpass_hz": 30.0, "input_shelf_hz": 2500.0, "input_shelf_db": -3.0, "tube_drive": 1.2,
          "tube_asymmetry": -0.15, "output_highpass_hz": 15.0}
CELL = {**OPTO_START, "ratio": 3.5, "attack_ms": 8.0, "release_ms": 70.0, "release_slow_ms": 400.0,
        "memory_ms": 600.0, "memory_depth": 3.0, "sidechain_shelf_hz": 1500.0, "input_mix": 0.0}
pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_class_is_registered_and_its_fit_dispatched():
    assert "opto" in MODEL_CLASSES and model_class("opto").param_names == OPTO_NAMES
    options = OptoFitOptions()
    assert options_class(options) == "opto"
    x = synthesize(1.0, SR, seed=3).astype(np.float64)
    params = ModelParams("opto", {**CELL, "threshold_db": -30.0, **BLOCKS})
    from audio.framing import make_frames
    frames = make_frames(x, render(x, SR, params), SR, frame_s=1.0, overlap_s=0.2)
    assert evaluate_any(frames, params) == evaluate_opto_esr(frames, params) < 1e-20
    with pytest.raises(ValueError, match="input_mix"):
        model_class("opto").check({**params, "input_mix": -0.1}, "here")
    assert fit_any.__module__ == "dsp.fitting.by_class"


@pytest.fixture(scope="module")
def chain_fit(tmp_path_factory):
    """A two-level compress chain of opto on opto-rendered pairs whose true threshold at the
    lower PR is *below* the higher PR's: the monotone floor must hold it at or above."""
    root = tmp_path_factory.mktemp("opto_chain")
    files = {}
    for pr, threshold in ((100, -30.0), (80, -34.0)):
        x = synthesize(2.0, SR, seed=pr).astype(np.float32)
        y = render(x.astype(np.float64), SR, {**CELL, "threshold_db": threshold, **BLOCKS})
        write_audio(root / f"in_{pr}.wav", x, SR)
        write_audio(root / f"out_{pr}.wav", y.astype(np.float32), SR)
        files[pr] = (root / f"in_{pr}.wav", root / f"out_{pr}.wav")
    cfg = load_config("config", ["compressor=opto", "compressor.ftol=1e-4"])
    options = fit_options(cfg)
    spec = ChainSpec(["compress"], [100, 80], "chain", initial_params(cfg, options.ranges), frame_s=2.0,
                     overlap_s=0.3, align="off")
    rows = run_chain(lambda mode, pr: files.get(pr), root / "fits", spec, options)
    return root, rows


def test_a_chain_holds_its_blocks_and_its_threshold_floor(chain_fit):
    root, rows = chain_fit
    top, low = rows
    assert [r["peak_reduction"] for r in rows] == [100, 80]
    assert all(low[k] == top[k] for k in BLOCK_NAMES)          # blocks fitted at the first level, held
    assert low["threshold_db"] >= top["threshold_db"] - 1e-6     # the floor (the data wanted lower)
    assert top["input_mix"] == low["input_mix"] == 0.0           # compress mode: no input tap
    write_summary(root / "summary.csv", rows, "opto")
    header = (root / "summary.csv").read_text().splitlines()[0].split(",")
    assert all(k in header for k in OPTO_NAMES)


def test_the_fit_folder_opens_and_renders_between_levels(chain_fit):
    root, rows = chain_fit
    from dsp.knobs.knobmap import KnobMap
    from dsp.storage.open_fit import open_fit
    KnobMap.from_rows(rows, "opto").save(root / "fits" / "knobmap.yaml")
    fit = open_fit(root / "fits")
    setting = {"mode": "compress", "peak_reduction": 90}
    params = fit.at(setting)
    assert params.model_class == "opto"
    assert min(rows[0]["threshold_db"], rows[1]["threshold_db"]) <= params["threshold_db"] \
        <= max(rows[0]["threshold_db"], rows[1]["threshold_db"])
    x = synthesize(0.5, SR, seed=9)[None, :].repeat(2, axis=0)
    whole = fit.render(x, SR, setting)
    proc = fit.processor(SR, setting)
    blocks = np.concatenate([proc.process(x[:, i:i + 333]) for i in range(0, x.shape[1], 333)], axis=1)
    assert np.allclose(whole, blocks, rtol=0, atol=1e-6) and np.isfinite(whole).all()
    form = fit.export_form()
    assert form.exportable and form.signature.startswith("forward(x, peak_reduction, mode)")
    from deploy.build import build, resolve_source
    from deploy.verify import max_difference
    ex = build(*resolve_source(root / "fits"))   # export.py's module of the chain: equal to the renderer
    assert max_difference(ex.module, ex, seconds=0.2) < 1e-6


def test_the_hybrids_take_opto_and_refuse_an_unknown_class():
    from neural.conditioning import check_dsp_class
    with pytest.raises(UserError, match="compressor=fancy"):
        check_dsp_class("fancy")
    check_dsp_class("graybox")
    check_dsp_class("opto")   # hybrids on opto: tests/neural/test_opto_hybrid.py
