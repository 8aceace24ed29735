"""The metrics behind the README tables, against hand computations and their defining
properties."""
from __future__ import annotations

import math

import numpy as np
import pytest

from audio.metrics import METRICS, all_metrics, esr, lufs_diff, mae, stft

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
    values = all_metrics(pred, target, SR, skip=SR // 10)
    assert set(values) == set(METRICS) == {"esr", "mae", "stft", "lufs_diff"}
    for name, metric in METRICS.items():
        assert values[name] == pytest.approx(metric.fn(pred, target, SR, SR // 10), rel=1e-9)
    assert values["mae"] == pytest.approx(mae(pred[SR // 10:], target[SR // 10:], SR), rel=1e-12)
