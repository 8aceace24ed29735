"""Block rendering: the same output as the differentiable compressor (torchcomp), linked
stereo detection, and time constants that mean the same in ms at any sample rate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.material import synthesize
from dsp.models.ff5_streaming import StreamingCompressor, render

from _reference import reference_render

SR = 44100
PARAMS = [
    {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0},
    {"threshold_db": -30.0, "ratio": 8.0, "attack_ms": 0.1, "release_ms": 200.0, "make_up_db": 6.0},
    {"threshold_db": -15.0, "ratio": 5.0, "attack_ms": 30.0, "release_ms": 30.0, "make_up_db": -3.0},
]


@pytest.fixture(scope="module")
def material() -> np.ndarray:
    return synthesize(2.0, SR, seed=4).astype(np.float64)


_REFERENCE_CACHE: dict = {}


def _reference(x: np.ndarray, params: dict, sample_rate: int = SR) -> np.ndarray:
    """The documented semantics as a plain loop (``tests/_reference.py``), ``(1, T)`` float64:
    independent of the project's code. Cached: the loop is slow and the inputs repeat."""
    x = np.asarray(x, np.float64)
    key = (x.shape, x.tobytes(), tuple(sorted(params.items())), sample_rate)
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = np.atleast_2d(reference_render(x, sample_rate, params))
    return _REFERENCE_CACHE[key]


@pytest.mark.parametrize("params", PARAMS)
def test_reference_loop_equals_torchcomp(material, params):
    """The loop the tests hold the renderer against agrees with torchcomp's own
    ``compexp_gain`` (library code only: its ``ms2coef``, ``amp2db``, ``db2amp``)."""
    from torchcomp import compexp_gain, db2amp, ms2coef

    x = torch.from_numpy(material[None, :])
    at = ms2coef(torch.tensor(params["attack_ms"], dtype=torch.float64), SR)
    rt = ms2coef(torch.tensor(params["release_ms"], dtype=torch.float64), SR)
    gain = compexp_gain(x.abs().clamp_min(1e-8), params["threshold_db"], params["ratio"], -1000.0, 0.5, at, rt)
    lib = (x * gain * db2amp(torch.tensor(params["make_up_db"], dtype=torch.float64))).numpy()
    np.testing.assert_allclose(_reference(material, params), lib, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("block", [1, 777, 1 << 18, None])
def test_render_equals_torchcomp(material, params, block):
    if block == 1:  # one sample a block is slow: 300 samples around the loudest one
        i = max(int(np.argmax(np.abs(material))) - 150, 0)
        x = material[i:i + 300]
    else:
        x = material
    ref = _reference(x, params)[0]
    out = render(x, SR, params) if block is None else render(x, SR, params, block=block)
    assert out.shape == x.shape and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-15)


def test_block_compressor_carries_state_between_blocks(material):
    params = PARAMS[1]
    ref = _reference(material, params)[0]
    comp = StreamingCompressor(params, SR)
    cuts = [0, 5, 1000, 1001, 44100, 50000, material.size]
    out = np.concatenate([comp.process(material[None, a:b])[0] for a, b in zip(cuts, cuts[1:])])
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-15)
    # a fresh compressor starts from unity gain again
    again = StreamingCompressor(params, SR).process(material[None, :1000])[0]
    np.testing.assert_allclose(again, ref[:1000], rtol=1e-12, atol=1e-15)


def test_render_keeps_float32():
    x = synthesize(1.0, SR, seed=1)
    out = render(x, SR, PARAMS[0], block=4096)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(x.astype(np.float64), PARAMS[0])[0], rtol=1e-5, atol=1e-7)


def test_stereo_linked_detection_uses_the_louder_channel():
    rng = np.random.default_rng(0)
    n = SR
    quiet = 10 ** (-40 / 20) * rng.uniform(-1, 1, n)          # below threshold on its own
    loud = np.zeros(n)
    loud[n // 4: n // 2] = 0.9 * np.where(np.sin(2 * np.pi * 200 * np.arange(n // 4) / SR) >= 0, 1.0, -1.0)
    params = PARAMS[0]
    stereo = np.stack([loud, quiet])
    out = render(stereo, SR, params, block=1000)
    alone = render(quiet, SR, params)
    np.testing.assert_allclose(alone, quiet, rtol=1e-12)       # untouched on its own
    burst = slice(n // 4 + SR // 100, n // 2)                  # 10 ms into the loud burst
    ratio = out[1, burst] / quiet[burst]
    assert np.all(ratio < 0.5)                                 # the loud left turns the right down
    # one gain for both channels: the gain the louder channel gets on its own
    gain_l = render(loud, SR, params)[burst] / loud[burst]
    np.testing.assert_allclose(ratio, gain_l, rtol=1e-10)
    # the quiet channel never lowers the loud one's gain
    np.testing.assert_allclose(out[0], render(loud, SR, params), rtol=1e-12, atol=1e-15)
    # channel order does not matter
    np.testing.assert_allclose(render(stereo[::-1], SR, params)[::-1], out, rtol=1e-12, atol=1e-15)


def test_stereo_equals_torchcomp_on_the_peak_of_both():
    rng = np.random.default_rng(1)
    x = synthesize(2.0, SR, seed=2).astype(np.float64)
    stereo = np.stack([x, np.roll(x, 3000) * rng.uniform(0.2, 1.5)])
    peak = np.max(np.abs(stereo), axis=0)
    gain = _reference(peak, PARAMS[2])[0] / np.where(peak > 0, peak, 1.0)
    out = render(stereo, SR, PARAMS[2], block=777)
    mask = peak > 1e-6
    np.testing.assert_allclose(out[:, mask], stereo[:, mask] * gain[mask], rtol=1e-9, atol=1e-15)


def _square_burst(sample_rate: int, level_db: float = -3.0, quiet_db: float = -50.0) -> tuple[np.ndarray, int, int]:
    """A quiet square tone with a loud 0.3 s burst after 0.2 s, then 1 s quiet again
    (constant |x|, so the detected level is a clean step). Returns the signal and the
    burst's first and last+1 sample."""
    n = int(1.5 * sample_rate)
    t = np.arange(n) / sample_rate
    sq = np.where(np.sin(2 * np.pi * 500.0 * t) >= 0, 1.0, -1.0)
    on, off = int(0.2 * sample_rate), int(0.5 * sample_rate)
    amp = np.full(n, 10 ** (quiet_db / 20))
    amp[on:off] = 10 ** (level_db / 20)
    return sq * amp, on, off


def _crossing_ms(curve: np.ndarray, level: float, falling: bool, sample_rate: int) -> float:
    """Time (ms) from the start of ``curve`` to its first crossing of ``level``,
    linearly interpolated between samples."""
    hit = curve <= level if falling else curve >= level
    i = int(np.argmax(hit))
    assert hit[i] and i > 0
    frac = (curve[i - 1] - level) / (curve[i - 1] - curve[i])
    return (i - 1 + frac) / sample_rate * 1000.0


def _ten_ninety_ms(gain: np.ndarray, start: float, end: float, sample_rate: int) -> float:
    """10 % to 90 % time (ms) of ``gain`` moving from ``start`` to ``end``."""
    falling = end < start
    lo = start + 0.1 * (end - start)
    hi = start + 0.9 * (end - start)
    return _crossing_ms(gain, hi, falling, sample_rate) - _crossing_ms(gain, lo, falling, sample_rate)


@pytest.mark.parametrize("attack_ms,release_ms", [(5.0, 50.0), (1.0, 100.0), (20.0, 300.0)])
def test_time_constants_in_ms_do_not_depend_on_the_rate(attack_ms, release_ms):
    params = {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": attack_ms, "release_ms": release_ms,
              "make_up_db": 0.0}
    static = 10 ** (-(20.0 - 3.0) * (1 - 1 / 4.0) / 20)   # 17 dB over the threshold at 4:1
    times = {}
    for sr in (44100, 48000, 96000):
        x, on, off = _square_burst(sr)
        gain = render(x, sr, params) / x
        assert np.all(gain[:on] == 1.0)                   # the quiet tone is below the threshold
        assert gain[off - 1] == pytest.approx(static, rel=1e-9)
        attack = _ten_ninety_ms(gain[on:off], 1.0, static, sr)
        release = _ten_ninety_ms(gain[off:], gain[off - 1], 1.0, sr)
        times[sr] = (attack, release)
        # the attack/release time is about the 10-90 % time of the gain (2.2 time constants)
        assert attack == pytest.approx(attack_ms * np.log(9) / 2.2, abs=1000 / sr)
        assert release == pytest.approx(release_ms * np.log(9) / 2.2, abs=1000 / sr)
    one_sample_ms = 1000 / 44100
    for sr in (48000, 96000):
        assert abs(times[sr][0] - times[44100][0]) <= 2 * one_sample_ms
        assert abs(times[sr][1] - times[44100][1]) <= 2 * one_sample_ms


def test_block_compressor_converts_ms_at_its_rate():
    p = PARAMS[0]
    a = StreamingCompressor(p, 44100)
    b = StreamingCompressor(p, 48000)
    assert float(b.at) < float(a.at) and float(b.rt) < float(a.rt)
    # the same decay over the same time: (1 - c)^(sr * t) does not depend on sr
    t = 0.01
    assert (1 - float(a.at)) ** (44100 * t) == pytest.approx((1 - float(b.at)) ** (48000 * t), rel=1e-12)
