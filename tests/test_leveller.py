"""The Python API (``leveller``): fit a pair, render with the fit, render at a setting of
a knob map, run a neural model; checked against the compressor's documented semantics
(``tests/_reference.py``) and the truth the targets were rendered with."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import leveller
from support import SR, TRUE_PARAMS, program
from dsp.knobs.knobmap import KnobMap
from neural.checkpoint import build_model, model_spec, save_checkpoint


def test_fit_pair_recovers_the_digital_compressor(make_pair):
    inp, tgt = make_pair(seconds=3.0)
    fit = leveller.fit_pair(inp, tgt)
    assert fit["converged"] and fit["esr"] < 1e-8 and fit["sample_rate"] == SR
    for k, v in TRUE_PARAMS.items():
        assert fit["params"][k] == pytest.approx(v, rel=1e-4, abs=1e-3), k


def test_render_follows_the_documented_compressor(reference):
    x = program(1.0)
    y = leveller.render(x, SR, TRUE_PARAMS)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, reference(x, SR, TRUE_PARAMS), atol=1e-5)


def test_knob_map_renders_at_any_setting(tmp_path, reference):
    low = {**TRUE_PARAMS, "threshold_db": -10.0}
    KnobMap({"compress": {100: TRUE_PARAMS, 40: low}}).save(tmp_path / "knobmap.yaml")
    fits = leveller.load_param_map(tmp_path)           # the folder, as a chain writes it
    params = fits.at({"mode": "compress", "peak_reduction": 70})
    assert params["threshold_db"] == pytest.approx(-15.0)  # linear in dB between -20 and -10
    x = program(1.0)
    np.testing.assert_allclose(leveller.render(x, SR, params), reference(x, SR, params), atol=1e-5)


def test_neural_model_loads_and_renders(tmp_path):
    torch.manual_seed(0)
    spec = model_spec("s6", "blackbox", "knobs", {"width": 4, "state": 2})
    model = build_model(spec)
    kmap = KnobMap({"compress": {100: TRUE_PARAMS, 40: TRUE_PARAMS}})
    save_checkpoint(tmp_path / "best.pt", {"model": spec, "variant": "blackbox", "sample_rate": SR,
                                           "param_map": kmap.to_record(), "state_dict": model.state_dict(),
                                           "config": {"seed": 0}})
    net = leveller.load_neural(tmp_path / "best.pt")
    x = program(0.5)[0].astype(np.float32)
    y = net.render(x, SR, {"mode": "compress", "peak_reduction": 70})
    # a fresh black box has a zero-initialised output: unity gain, the input comes through
    assert y.shape == x.shape and np.allclose(y, x, atol=1e-6)
