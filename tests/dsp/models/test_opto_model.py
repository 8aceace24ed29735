"""The optical-cell model: its parameterisation, the published behaviour it is built to show
(feedback ratio, limit mode's steeper curve, memory), streaming over channels, and the model
class through checkpoints, knob maps and rendering."""
from __future__ import annotations

import math

import numpy as np
import pytest
from dsp.knobs.knobmap import KnobMap
from dsp.storage.open_fit import load_param_map
from dsp.models.classes import class_of, model_class, processor, render as render_class
from dsp.models.graybox import TRANSPARENT
from dsp.models.opto import OPTO_NAMES, OPTO_START, OptoParameterisation, OptoRanges, Z_ORDER
from dsp.models.opto_streaming import StreamingOpto, render
from dsp.storage.records import load_checkpoint, save_checkpoint

SR = 8000
# transparent blocks (a 1 Hz high-pass is far below any tone used here), a plain cell
FLAT = {**TRANSPARENT, "input_highpass_hz": 1.0, "input_shelf_hz": 3000.0, "output_highpass_hz": 1.0, "tube_drive": 1e-4}
CELL = {**OPTO_START, "input_mix": 0.0, "sidechain_shelf_db": 0.0}


def _tone(level_db: float, seconds: float, freq: float = 200.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 10 ** (level_db / 20) * np.sin(2 * np.pi * freq * t)


def _level_db(y: np.ndarray) -> float:
    return 10 * math.log10(np.mean(y[-SR // 2:] ** 2))


@pytest.mark.parametrize("fit_mix", [True, False])
def test_parameterisation_round_trip_and_held_mix(fit_mix):
    param = OptoParameterisation(SR, fit_mix=fit_mix)
    params = {**OPTO_START, "memory_ms": 12000.0, "input_mix": 0.2 if fit_mix else 0.0}
    back = param.to_physical(param.from_physical(params))
    assert back == pytest.approx(params, rel=1e-9)
    assert param.size == len(Z_ORDER) - (not fit_mix)
    assert ("input_mix" in param.names) == fit_mix
    z = param.from_physical(params)
    v, d1, d2 = param.natural_derivs(z)
    eps = 1e-6
    for i in range(param.size):   # elementwise first and second derivatives, by differences
        up, down = z.clone(), z.clone()
        up[i] += eps
        down[i] -= eps
        vu, vd = (param.natural(w)[[Z_ORDER.index(n) for n in param.names]] for w in (up, down))
        assert float((vu - vd)[i] / (2 * eps)) == pytest.approx(float(d1[i]), rel=1e-5, abs=1e-12)
        assert float((vu - 2 * v + vd)[i] / eps ** 2) == pytest.approx(float(d2[i]), rel=1e-3, abs=1e-9)


def test_ranges_are_checked():
    with pytest.raises(ValueError, match="ratio range must start above 1"):
        OptoRanges(ratio=(1.0, 4.0))
    with pytest.raises(ValueError, match="release_slow_ms"):
        OptoRanges().check({**OPTO_START, "release_slow_ms": 50.0})
    OptoRanges().check({**OPTO_START, "input_mix": 0.0})          # compress mode: no tap
    param = OptoParameterisation(SR)
    assert param.bound_hits({**OPTO_START, "release_ms": 10.0, "input_mix": 1.0}) == ["release_ms", "input_mix"]


def test_feedback_gives_the_asymptotic_ratio():
    """Compress mode: the output rises by 1/ratio dB per input dB at heavy reduction."""
    out = [_level_db(render(_tone(level, 6.0), SR, {**CELL, **FLAT, "ratio": 4.0, "threshold_db": -40.0}))
           for level in (-10.0, 0.0)]
    assert (out[1] - out[0]) / 10.0 == pytest.approx(1 / 4.0, abs=0.03)


def test_limit_mode_tap_steepens_the_curve():
    """The input tap of limit mode reduces more at high levels than the feedback alone."""
    x = _tone(0.0, 6.0)
    compress = _level_db(render(x, SR, {**CELL, **FLAT, "threshold_db": -40.0}))
    limit = _level_db(render(x, SR, {**CELL, **FLAT, "threshold_db": -40.0, "input_mix": 0.1}))
    assert limit < compress - 3.0


def test_memory_slows_the_release_after_long_reduction():
    """After a long loud passage the cell lets go more slowly than after a short one."""
    params = {**CELL, **FLAT, "threshold_db": -30.0, "memory_depth": 20.0, "memory_ms": 2000.0}

    def recovered_at(loud_s: float) -> float:
        x = np.concatenate([_tone(-6.0, loud_s), _tone(-40.0, 3.0)])
        g = StreamingOpto(params, SR).gain(x[None])
        start = int(loud_s * SR)
        return float(20 * np.log10(g[start + 2 * SR] / g[start - 1]))  # dB recovered 2 s later

    assert recovered_at(6.0) < recovered_at(0.3) - 1.0


def test_linked_channels_share_one_gain_and_dual_mono_does_not():
    x = np.stack([_tone(-6.0, 1.0), 0.01 * _tone(-6.0, 1.0, 330.0)])
    params = {**CELL, **FLAT, "threshold_db": -30.0}
    linked = StreamingOpto(params, SR).gain(x)
    assert linked.shape == (x.shape[1],)
    dual = StreamingOpto(params, SR, linked=False).gain(x)
    assert dual.shape == x.shape
    assert np.allclose(dual[0], StreamingOpto(params, SR).gain(x[:1]), rtol=0, atol=1e-15)
    assert np.min(dual[1]) > np.min(linked) + 0.1      # the quiet channel alone is barely reduced
    stream = StreamingOpto(params, SR)
    stream.process(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="channels"):
        stream.process(np.zeros((1, 4)))


def test_missing_parameters_and_corners_are_refused():
    with pytest.raises(ValueError, match="memory_ms"):
        StreamingOpto({k: v for k, v in {**CELL, **FLAT}.items() if k != "memory_ms"}, SR)
    with pytest.raises(ValueError, match="sidechain_shelf_hz"):
        StreamingOpto({**CELL, **FLAT, "sidechain_shelf_hz": 5000.0}, SR)


def test_the_class_through_checkpoints_knob_maps_and_rendering(tmp_path):
    params = {**CELL, **FLAT}
    assert class_of(params).name == "opto" and model_class("opto").param_names == OPTO_NAMES
    path = tmp_path / "ckpt.yaml"
    save_checkpoint(path, {"compressor": "opto", "params": params, "esr": 0.01, "loss": 1.0, "iterations": 3,
                           "converged": True, "seconds": 1.0, "sample_rate": SR})
    back = load_checkpoint(path)
    assert back["compressor"] == "opto" and back["params"].model_class == "opto"
    assert back["params"] == pytest.approx(params)
    with pytest.raises(ValueError, match="ratio"):      # the cell's exponent ratio - 1 must be positive
        model_class("opto").check({**params, "ratio": 1.0}, "here")
    low = {**params, "threshold_db": -20.0, "release_slow_ms": 500.0, "memory_depth": 1.0, "input_mix": 0.0}
    high = {**params, "threshold_db": -40.0, "release_slow_ms": 2000.0, "memory_depth": 4.0, "input_mix": 0.0}
    mid = KnobMap({"compress": {40: low, 60: high}}, "opto").at({"mode": "compress", "peak_reduction": 50})
    assert list(mid) == list(OPTO_NAMES)
    assert mid["threshold_db"] == pytest.approx(-30.0) and mid["memory_depth"] == pytest.approx(2.0)
    assert 500.0 < mid["release_slow_ms"] < 2000.0 and mid["input_mix"] == 0.0
    kmap = KnobMap({"compress": {40: low, 60: high}}, "opto")
    kmap.save(tmp_path / "knobmap.yaml")
    assert load_param_map(tmp_path / "knobmap.yaml").at({"mode": "compress", "peak_reduction": 50}) == pytest.approx(mid)
    x = _tone(-6.0, 0.5)
    assert np.array_equal(render_class(x, SR, params), render(x, SR, params))
    proc = processor(params, SR)
    streamed = np.concatenate([proc.process(x[None, i:i + 300]) for i in range(0, x.size, 300)], axis=1)[0]
    assert np.allclose(streamed, render(x, SR, params), rtol=0, atol=1e-12)
