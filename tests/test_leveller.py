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


def test_fit_pair_recovers_the_digital_compressor_and_says_what_it_aligned(tmp_path):
    """A target 37 samples late and inverted: fit_pair corrects both, says so, and recovers
    the compressor; its parameters render with leveller.render as they are."""
    from support import write_wav
    from dsp.models.ff5_streaming import render
    x = program(3.0, seed=2)
    y = render(x, SR, TRUE_PARAMS)
    late = -np.concatenate([np.zeros((1, 37)), y[:, :-37]], axis=1)
    fit = leveller.fit_pair(write_wav(tmp_path / "in.wav", x), write_wav(tmp_path / "t.wav", late), compressor="ff5")
    assert fit["alignment"]["latency_samples"] == pytest.approx(37.0, abs=0.05)
    assert fit["alignment"]["polarity"] == -1
    assert fit["converged"] and fit["esr"] < 1e-6 and fit["sample_rate"] == SR and fit["warnings"] == []
    for k, v in TRUE_PARAMS.items():
        assert fit["params"][k] == pytest.approx(v, rel=1e-3, abs=1e-2), k
    assert fit["params"].model_class == "ff5"
    np.testing.assert_allclose(leveller.render(x, SR, fit["params"]), render(x, SR, fit["params"]))


def test_render_follows_the_documented_compressor(reference):
    x = program(1.0)
    y = leveller.render(x, SR, TRUE_PARAMS)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, reference(x, SR, TRUE_PARAMS), atol=1e-5)


def test_knob_map_renders_at_any_setting(tmp_path, reference):
    low = {**TRUE_PARAMS, "threshold_db": -10.0}
    KnobMap({"compress": {100: TRUE_PARAMS, 40: low}}, "ff5").save(tmp_path / "knobmap.yaml")
    fits = leveller.open_fit(tmp_path)                 # the folder, as a chain writes it
    params = fits.at({"mode": "compress", "peak_reduction": 70})
    assert params["threshold_db"] == pytest.approx(-15.0)  # linear in dB between -20 and -10
    x = program(1.0)
    np.testing.assert_allclose(leveller.render(x, SR, params), reference(x, SR, params), atol=1e-5)
    np.testing.assert_array_equal(fits.render(x, SR, {"mode": "compress", "peak_reduction": 70}),
                                  leveller.render(x, SR, params))


GRAY = {**TRUE_PARAMS, "input_highpass_hz": 30.0, "input_shelf_hz": 8000.0, "input_shelf_db": -4.0,
        "tube_drive": 2.0, "tube_asymmetry": 0.2, "output_highpass_hz": 15.0}


def test_a_graybox_map_renders_with_its_blocks_everywhere(tmp_path, run_cli):
    """The one way to open a fit: the API's render of a gray-box map's parameters, test_comp.py
    on the same folder and setting, and the exported file agree; the blocks are not dropped."""
    import soundfile as sf
    from support import write_wav
    KnobMap({"compress": {40: {**GRAY, "threshold_db": -10.0}, 100: {**GRAY, "tube_drive": 0.5}}},
            "graybox").save(tmp_path / "knobmap.yaml")
    setting = {"mode": "compress", "peak_reduction": 65}
    fit = leveller.open_fit(tmp_path)
    params = fit.at(setting)
    assert params.model_class == "graybox" and len(params) == 11
    x = program(1.0, seed=3, channels=2).astype(np.float32)
    api = leveller.render(x, SR, params)
    five = leveller.render(x, SR, {k: params[k] for k in TRUE_PARAMS})
    assert np.max(np.abs(api - five)) > 1e-3                 # the blocks are part of the sound
    write_wav(tmp_path / "in.wav", x)
    res = run_cli(["test_comp.py", str(tmp_path), "in.wav", "out.wav", "--peak-reduction", "65", "--mode",
                   "compress"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cli = sf.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)[0].T
    assert np.max(np.abs(cli - api)) < 1e-6
    res = run_cli(["export.py", str(tmp_path), "gray.pt"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    module = torch.jit.load(str(tmp_path / "gray.pt"))
    with torch.no_grad():
        exported = np.concatenate([module(torch.from_numpy(x[:, i:i + 512]), 65.0, 0).numpy()
                                   for i in range(0, x.shape[1], 512)], axis=1)
    assert np.max(np.abs(exported - api)) < 1e-6


@pytest.mark.parametrize("setting, words", [
    ({"mode": "compress", "peak_reduction": -5}, "outside 0..100"),
    ({"mode": "compress", "peak_reduction": 1000}, "outside 0..100"),
    ({"mode": "compress", "peak_reduction": float("nan")}, "not finite"),
    ({"mode": "compress", "peak_reduction": "abc"}, "not a number"),
    ({"mode": "compress", "peak_reduction": 20}, "nearest fitted setting is compress PR 40"),
    ({"mode": "limit", "peak_reduction": 60}, "no 'limit' mode"),
    ({"mode": "squash", "peak_reduction": 60}, "unknown mode"),
    (None, "needs a setting"),
])
def test_the_api_refuses_settings_the_command_line_refuses(tmp_path, setting, words):
    KnobMap({"compress": {40: TRUE_PARAMS, 100: TRUE_PARAMS}}, "ff5").save(tmp_path / "knobmap.yaml")
    fit = leveller.open_fit(tmp_path)
    with pytest.raises(leveller.UserError, match=words):
        fit.render(program(0.2), SR, setting)


@pytest.mark.parametrize("params, sample_rate, words", [
    ({**TRUE_PARAMS, "attack_ms": -5.0}, SR, "attack_ms = -5"),
    ({**TRUE_PARAMS, "attack_ms": 0.0}, SR, "attack_ms = 0"),
    ({**TRUE_PARAMS, "ratio": 0.5}, SR, "ratio = 0.5"),
    ({**TRUE_PARAMS, "ratio": float("nan")}, SR, "non-finite"),
    (TRUE_PARAMS, -44100, "sample rate"),
    (TRUE_PARAMS, 0, "sample rate"),
    ({k: v for k, v in GRAY.items() if k != "tube_drive"}, SR, "no model class's set"),
])
def test_render_refuses_impossible_parameters(params, sample_rate, words):
    with pytest.raises(leveller.UserError, match=words):
        leveller.render(program(0.2), sample_rate, params)


def test_neural_model_loads_and_renders(tmp_path):
    torch.manual_seed(0)
    spec = model_spec("s6", "blackbox", "knobs", {"width": 4, "state": 2})
    model = build_model(spec)
    kmap = KnobMap({"compress": {100: TRUE_PARAMS, 40: TRUE_PARAMS}}, "ff5")
    save_checkpoint(tmp_path / "best.pt", {"model": spec, "variant": "blackbox", "sample_rate": SR,
                                           "param_map": kmap.to_record(), "state_dict": model.state_dict(),
                                           "config": {"seed": 0}})
    net = leveller.load_neural(tmp_path / "best.pt")
    x = program(0.5)[0].astype(np.float32)
    y = net.render(x, SR, {"mode": "compress", "peak_reduction": 70})
    # a fresh black box has a zero-initialised output: unity gain, the input comes through
    assert y.shape == x.shape and np.allclose(y, x, atol=1e-6)
