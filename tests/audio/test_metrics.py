"""The metrics behind the README tables, against hand computations and their defining
properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal

from audio.metrics import (METRICS, all_metrics, esr, gr_trajectory, k_weighted, loudness_dynamics, loudness_ratio_lu,
                           lufs_diff, mae, stft)

SR = 44100


def _preemphasis_by_hand(x) -> list[float]:
    """(1 - z^-1) / (1 - 0.995 z^-1) from rest, one sample at a time."""
    out, prev_x, prev_y = [], 0.0, 0.0
    for v in x:
        y = v - prev_x + 0.995 * prev_y
        out.append(y)
        prev_x, prev_y = v, y
    return out


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(11)
    t = np.arange(3 * SR) / SR
    target = 0.4 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)) \
        + 0.02 * rng.standard_normal(t.size)
    pred = target + 0.01 * rng.standard_normal(t.size)
    return pred, target


def test_esr_is_the_hand_computation():
    pred = np.array([0.5, -0.25, 0.75, 0.0, 0.125])
    target = np.array([0.25, 0.0, 1.0, -0.5, 0.25])
    e = _preemphasis_by_hand(pred - target)
    t = _preemphasis_by_hand(target)
    expected = sum(v * v for v in e) / sum(v * v for v in t)
    assert esr(pred, target, SR) == pytest.approx(expected, rel=1e-12)
    # skip leaves out leading samples after filtering (the filter still runs through them)
    expected_skip = sum(v * v for v in e[2:]) / sum(v * v for v in t[2:])
    assert esr(pred, target, SR, skip=2) == pytest.approx(expected_skip, rel=1e-12)


def test_esr_landmarks(signals):
    _, target = signals
    assert esr(target, target, SR) == 0.0
    assert esr(np.zeros_like(target), target, SR) == pytest.approx(1.0, rel=1e-12)   # silence: all error
    assert esr(2 * target, target, SR) == pytest.approx(1.0, rel=1e-12)
    assert esr(1.1 * target, target, SR) == pytest.approx(0.01, rel=1e-9)
    pred, _ = signals
    assert esr(3 * pred, 3 * target, SR) == pytest.approx(esr(pred, target, SR), rel=1e-12)  # scale free


def test_esr_weights_high_frequencies():
    """The pre-emphasis makes the same error count more at high frequency."""
    t = np.arange(SR) / SR
    target = 0.5 * np.sin(2 * np.pi * 1000 * t)
    low = target + 0.01 * np.sin(2 * np.pi * 5 * t)
    high = target + 0.01 * np.sin(2 * np.pi * 8000 * t)
    assert esr(high, target, SR) > 10 * esr(low, target, SR)


def test_mae_is_the_hand_computation():
    pred = np.array([0.5, -0.25, 0.75, 0.0])
    target = np.array([0.25, 0.0, 1.0, -0.5])
    assert mae(pred, target, SR) == pytest.approx((0.25 + 0.25 + 0.25 + 0.5) / 4, rel=1e-15)
    assert mae(pred, target, SR, skip=3) == pytest.approx(0.5, rel=1e-15)
    assert mae(target, target, SR) == 0.0


def test_stft_distance(signals):
    pred, target = signals
    assert stft(target, target, SR) == pytest.approx(0.0, abs=1e-6)
    near = stft(pred, target, SR)
    rng = np.random.default_rng(3)
    far = stft(target + 0.1 * rng.standard_normal(target.size), target, SR)
    assert 0.0 < near < far


def test_loudness_difference_of_a_6_db_copy(signals):
    _, target = signals
    assert lufs_diff(0.5 * target, target, SR) == pytest.approx(20 * math.log10(2), abs=1e-6)
    assert lufs_diff(target, 0.5 * target, SR) == pytest.approx(20 * math.log10(2), abs=1e-6)  # absolute
    assert lufs_diff(target, target, SR) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(lufs_diff(np.zeros_like(target), target, SR))  # silence has no loudness


def test_one_signature_for_all(signals):
    pred, target = signals
    x = 1.5 * target   # stands in for the input both were made from
    values = all_metrics(pred, target, SR, skip=SR // 10, input=x)
    assert set(values) == set(METRICS) == {"esr", "mae", "stft", "lufs_diff", "loudness_dynamics", "gr_trajectory"}
    for name, metric in METRICS.items():
        extra = {"input": x} if metric.needs_input else {}
        assert values[name] == pytest.approx(metric.fn(pred, target, SR, SR // 10, **extra), rel=1e-9)
    assert values["mae"] == pytest.approx(mae(pred[SR // 10:], target[SR // 10:], SR), rel=1e-12)
    with pytest.raises(ValueError, match="gr_trajectory"):
        all_metrics(pred, target, SR)   # a metric that needs the input is never scored without it


# --- loudness dynamics and gain trajectories ----------------------------------------------------
@pytest.fixture(scope="module")
def compressed():
    """Program material, a compressor's gain on it (dB) and the compressed target."""
    from audio.material import synthesize
    from dsp.models.ff5_streaming import StreamingCompressor
    x = synthesize(8.0, SR, seed=3).astype(np.float64)
    params = {"threshold_db": -30.0, "ratio": 4.0, "attack_ms": 10.0, "release_ms": 300.0, "make_up_db": 0.0}
    gain = np.asarray(StreamingCompressor(params, SR).gain(x[None, :]), np.float64).reshape(-1)
    return x, gain, gain * x


def test_a_static_level_offset_moves_only_the_loudness_level(compressed):
    """3 dB louder, otherwise the target: |dLUFS| is 3, the two dynamics metrics are 0."""
    x, _, target = compressed
    pred = 10 ** (3 / 20) * target
    assert lufs_diff(pred, target, SR, SR) == pytest.approx(3.0, abs=1e-6)
    assert loudness_dynamics(pred, target, SR, SR) == pytest.approx(0.0, abs=1e-6)
    assert gr_trajectory(pred, target, SR, SR, input=x) == pytest.approx(0.0, abs=1e-6)
    assert esr(pred, target, SR, SR) > 0.1   # the waveform metric does count it


def test_the_targets_own_gain_has_no_trajectory_error(compressed):
    """A model that applies the target's gain to the input, without the target's phase shift
    (second-order all-pass sections at 80 Hz and 2 kHz: the peaks move, the power spectrum does
    not): its waveform differs (ESR), its gain trajectory does not (under 0.2 dB, against
    several dB for an uncompressed copy)."""
    x, gain, target = compressed
    coloured = target
    for fc in (80.0, 2000.0):
        c = (np.tan(np.pi * fc / SR) - 1) / (np.tan(np.pi * fc / SR) + 1)
        coloured = scipy.signal.lfilter([c, 1.0], [1.0, c], scipy.signal.lfilter([c, 1.0], [1.0, c], coloured))
    own_gain = gain * x
    assert esr(own_gain, coloured, SR, SR) > 1e-3
    assert gr_trajectory(own_gain, coloured, SR, SR, input=x) < 0.2
    assert gr_trajectory(x, coloured, SR, SR, input=x) > 2.0
    assert gr_trajectory(target, target, SR, SR, input=x) == 0.0


def test_trajectory_error_of_two_known_gains():
    """Gains moving 3 dB and 6 dB (0.5 Hz sines in dB) apart by a 3 dB sine: RMS 3 / sqrt 2 dB;
    a constant offset added to one does not change it."""
    rng = np.random.default_rng(5)
    t = np.arange(6 * SR) / SR
    x = 0.1 * rng.standard_normal(t.size)
    g1 = -6.0 + 3.0 * np.sin(2 * np.pi * 0.5 * t)
    g2 = -2.0 + 6.0 * np.sin(2 * np.pi * 0.5 * t)
    target, pred = 10 ** (g1 / 20) * x, 10 ** (g2 / 20) * x
    assert gr_trajectory(pred, target, SR, 0, input=x) == pytest.approx(3 / math.sqrt(2), abs=0.02)
    assert gr_trajectory(2 * pred, target, SR, 0, input=x) == pytest.approx(3 / math.sqrt(2), abs=0.02)


def test_k_weighting_matches_pyloudnorm():
    """The K-weighted mean square of stationary noise gives BS.1770's loudness (pyloudnorm)."""
    import pyloudnorm
    z = 0.05 * np.random.default_rng(2).standard_normal(4 * SR)
    ours = -0.691 + 10 * math.log10(np.mean(k_weighted(z, SR)[SR // 2:] ** 2))
    assert ours == pytest.approx(pyloudnorm.Meter(SR).integrated_loudness(z), abs=0.05)


def test_loudness_dynamics_of_a_known_envelope():
    """Steady noise against the same noise switched between two levels 6 dB apart every
    0.25 s: the error is the mean |short/long loudness ratio| of that envelope (computed here
    from the envelope alone, 50 ms and 3 s centred windows), within 0.15 LU of noise."""
    rng = np.random.default_rng(8)
    n = 9 * SR
    noise = 0.05 * rng.standard_normal(n)
    t = np.arange(n) / SR
    env = np.where((t % 0.5) < 0.25, 1.0, 0.5)
    value = loudness_dynamics(env * noise, noise, SR, 0)
    hop = SR // 100
    blocks = (env[: n // hop * hop] ** 2).reshape(-1, hop).mean(axis=1)
    def centred(size):
        c = np.concatenate([[0.0], np.cumsum(blocks)])
        i = np.arange(len(blocks))
        lo, hi = np.clip(i - size // 2, 0, len(blocks)), np.clip(i - size // 2 + size, 0, len(blocks))
        return (c[hi] - c[lo]) / (hi - lo)
    expected = np.mean(np.abs(10 * np.log10(centred(5) / centred(300))))
    assert expected > 2.5                      # a real difference: about 3 LU
    assert value == pytest.approx(expected, abs=0.15)
    assert loudness_dynamics(noise, noise, SR, 0) == 0.0
    assert loudness_dynamics(0.25 * env * noise, env * noise, SR, 0) == pytest.approx(0.0, abs=1e-6)


def test_loudness_ratio_skips_the_warm_up_and_gates_silence():
    z = np.concatenate([np.zeros(SR), 0.1 * np.random.default_rng(0).standard_normal(2 * SR)])
    ratio, short = loudness_ratio_lu(z, SR, skip=SR // 2)
    assert len(ratio) == len(short) == (len(z) - SR // 2) // (SR // 100)
    assert np.all(short[:40] < -70)            # the silent half second is below the gate
    assert math.isnan(loudness_dynamics(np.zeros(SR), np.zeros(SR), SR, 0))
