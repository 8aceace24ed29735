"""Properties of the compressor that hold for any parameters (hypothesis): the gain never
exceeds the make-up gain, silence stays silence, a lower threshold or a higher ratio
never reduces less, and time constants mean the same in ms at any sample rate."""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.models.ff5 import compress
from dsp.models.parameters import ms_to_coef
from dsp.models.ff5_streaming import StreamingCompressor, render

SR = 44100
FEW = settings(max_examples=12, deadline=None, derandomize=True)

thresholds = st.floats(-60.0, 0.0)
ratios = st.floats(1.001, 50.0)  # torchcomp requires ratio > 1
attacks = st.floats(0.05, 100.0)
releases = st.floats(5.0, 1000.0)
make_ups = st.floats(-24.0, 24.0)
seeds = st.integers(0, 2 ** 31 - 1)


def _params(thr, ratio, att, rel, mu) -> dict:
    return {"threshold_db": thr, "ratio": ratio, "attack_ms": att, "release_ms": rel, "make_up_db": mu}


def _signal(seed: int, n: int = 6000) -> np.ndarray:
    """Bursts of noise at random levels (-60..+6 dBFS) with exact-zero gaps."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.integers(50, 1500))
        if rng.random() < 0.7:
            x[pos:pos + length] = rng.normal(0, 1, min(length, n - pos)) * 10 ** (rng.uniform(-60, 6) / 20)
        pos += length
    return x


@FEW
@given(thresholds, ratios, attacks, releases, make_ups, seeds)
def test_gain_never_above_make_up(thr, ratio, att, rel, mu, seed):
    x = _signal(seed)
    p = _params(thr, ratio, att, rel, mu)
    y = render(x, SR, p)
    limit = np.abs(x) * 10 ** (mu / 20)
    assert np.all(np.abs(y) <= limit * (1 + 1e-12) + 1e-300)
    g = StreamingCompressor(p, SR).gain(x)
    assert np.all((g > 0) & (g <= 1.0))
    # the differentiable path (torchcomp) agrees
    natural = torch.tensor([thr, ratio, ms_to_coef(att, SR), ms_to_coef(rel, SR), mu], dtype=torch.float64)
    yt = compress(torch.from_numpy(x)[None], natural)[0].numpy()
    assert np.all(np.abs(yt) <= limit * (1 + 1e-12) + 1e-300)


@FEW
@given(thresholds, ratios, attacks, releases, make_ups, seeds)
def test_zero_in_zero_out(thr, ratio, att, rel, mu, seed):
    x = _signal(seed)
    x[::7] = 0.0
    y = render(np.stack([x, np.roll(x, 3)]), SR, _params(thr, ratio, att, rel, mu))
    assert np.all(y[0][x == 0] == 0) and np.all(y[1][np.roll(x, 3) == 0] == 0)


@FEW
@given(thresholds, st.floats(0.5, 30.0), ratios, attacks, releases, seeds)
def test_lower_threshold_reduces_more(thr, delta, ratio, att, rel, seed):
    x = _signal(seed)
    hi = render(x, SR, _params(thr, ratio, att, rel, 0.0))
    lo = render(x, SR, _params(thr - delta, ratio, att, rel, 0.0))
    assert np.all(np.abs(lo) <= np.abs(hi) * (1 + 1e-12))
    assert np.sum(lo ** 2) <= np.sum(hi ** 2)
    if np.max(np.abs(x)) > 10 ** ((thr + 1) / 20) and ratio > 1.01:  # the signal crosses the knee
        assert np.sum(lo ** 2) < np.sum(hi ** 2)


@FEW
@given(thresholds, ratios, st.floats(1.01, 10.0), attacks, releases, seeds)
def test_higher_ratio_reduces_more(thr, ratio, factor, att, rel, seed):
    x = _signal(seed)
    soft = render(x, SR, _params(thr, ratio, att, rel, 0.0))
    hard = render(x, SR, _params(thr, ratio * factor, att, rel, 0.0))
    assert np.all(np.abs(hard) <= np.abs(soft) * (1 + 1e-12))
    assert np.sum(hard ** 2) <= np.sum(soft ** 2)


def _t63_ms(frac: np.ndarray, sr: int) -> float:
    """Time (ms) at which ``frac`` (rising from 0 towards 1, one value per sample, the first
    one after one step) reaches 1 - 1/e, linearly interpolated between samples."""
    level = 1.0 - math.exp(-1.0)
    k = int(np.argmax(frac >= level))
    assert frac[k] >= level
    prev = frac[k - 1] if k > 0 else 0.0
    pos = k + (level - prev) / (frac[k] - prev)  # samples after the step, counted from 0
    return 1000.0 * pos / sr


def _burst_times(att: float, rel: float, sr: int) -> tuple[float, float]:
    """63 % times of the gain envelope for a constant-level burst: attack, then release."""
    burst = int(sr * (10 * att + 20) / 1000)
    tail = int(sr * 6 * rel / 1000)
    x = np.concatenate([np.zeros(100), np.full(burst, 0.5), np.zeros(tail)])  # |x| constant in the burst
    p = _params(-30.0, 4.0, att, rel, 0.0)
    g = StreamingCompressor(p, sr).gain(x)
    floor = 10 ** ((1 - 1 / 4.0) * (-30.0 - 20 * math.log10(0.5)) / 20)  # the static gain in the burst
    attack = (1 - g[100:100 + burst]) / (1 - floor)
    g_end = g[100 + burst - 1]
    release = (g[100 + burst:] - g_end) / (1 - g_end)
    return _t63_ms(attack, sr), _t63_ms(release, sr)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.floats(0.1, 50.0), st.floats(10.0, 400.0))
def test_time_constants_in_ms_at_any_rate(att, rel):
    a44, r44 = _burst_times(att, rel, 44100)
    a48, r48 = _burst_times(att, rel, 48000)
    period_ms = 1000.0 / 44100
    assert abs(a44 - a48) < period_ms and abs(r44 - r48) < period_ms
    # and the 63 % time is the time constant torchcomp's coefficient implies: ms / 2.2
    assert abs(a44 - att / 2.2) < period_ms and abs(r48 - rel / 2.2) < period_ms
