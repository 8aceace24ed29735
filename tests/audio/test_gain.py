"""The gain estimator against a known gain: it follows the gain, not the waveform."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from audio.gain import gain_trace

SR = 44100


def _bass(seconds: float) -> np.ndarray:
    """A low bass line (E1, 41 Hz, and A1, 55 Hz, saw-like, low-passed): the hardest case
    for an envelope, whose harmonics beat at the fundamental."""
    t = np.arange(int(seconds * SR)) / SR
    f = np.where((t % 1.0) < 0.5, 41.2, 55.0)
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = 0.3 * scipy.signal.sawtooth(phase) + 0.1 * np.sin(3 * phase)
    b, a = scipy.signal.butter(2, 800 / (SR / 2))
    return scipy.signal.lfilter(b, a, x)


def _known_gain_db(n: int) -> np.ndarray:
    """0 dB, a 12 dB reduction from 1 s to 2.5 s with a 10 ms attack and a 300 ms release."""
    t = np.arange(n) / SR
    goal = np.where((t >= 1.0) & (t < 2.5), -12.0, 0.0)
    attack, release = 1 - np.exp(-1 / (0.010 * SR)), 1 - np.exp(-1 / (0.300 * SR))
    g, state = np.empty(n), 0.0
    for i in range(n):
        state += (attack if goal[i] < state else release) * (goal[i] - state)
        g[i] = state
    return g


def _transformer(y: np.ndarray) -> np.ndarray:
    """A static colouring of the output: a 30 Hz high-pass and a first-order all-pass at 100 Hz
    (moves the output's peaks against the input's)."""
    b, a = scipy.signal.butter(1, 30 / (SR / 2), "high")
    y = scipy.signal.lfilter(b, a, y)
    c = (np.tan(np.pi * 100 / SR) - 1) / (np.tan(np.pi * 100 / SR) + 1)
    return scipy.signal.lfilter([c, 1.0], [1.0, c], y)


@pytest.fixture(scope="module")
def known():
    x = _bass(4.0)
    g = _known_gain_db(len(x))
    return x, g, 10 ** (g / 20) * x


def _true_at(trace, g_db):
    return g_db[np.clip((trace.times_s * SR).astype(int), 0, len(g_db) - 1)]


def test_gain_of_a_pure_gain_is_that_gain(known):
    """Output = gain x input: the trace is the gain, within 0.1 dB away from the 10 ms attack."""
    x, g, y = known
    tr = gain_trace(x, y, SR)
    true = _true_at(tr, g)
    steady = ((tr.times_s > 0.2) & (tr.times_s < 0.95)) | ((tr.times_s > 1.15) & (tr.times_s < 2.45))
    assert np.nanmax(np.abs(tr.gain_db[steady] - true[steady])) < 0.1
    # the release is followed as it happens (smoothing within a few tenths of a dB)
    release = (tr.times_s > 2.7) & (tr.times_s < 3.8)
    assert np.nanmax(np.abs(tr.gain_db[release] - true[release])) < 0.5


def test_gain_through_a_filter_follows_the_gain_not_the_carrier(known):
    """A filtered output (peaks shifted against the input's): the trace stays flat where the
    gain is flat (under 0.2 dB peak to peak), where 2 ms envelopes swing by more than 10 dB."""
    x, g, y = known
    tr = gain_trace(x, _transformer(y), SR)
    true = _true_at(tr, g)
    # within each note (the filter's loss differs between 41 and 55 Hz) and away from the attack
    for lo in (0.0, 0.5, 1.5, 2.0):
        sel = (tr.times_s > lo + 0.1) & (tr.times_s < lo + 0.45) & ((tr.times_s < 1.0) | (tr.times_s > 1.15))
        err = tr.gain_db[sel] - true[sel]
        assert np.ptp(err) < 0.2, (lo, np.ptp(err))
        assert abs(np.mean(err)) < 1.5        # the filter's own static loss at that note
    # the old estimator (moving RMS over 2 ms) on the same pair, for scale
    k = np.ones(int(0.002 * SR)) / int(0.002 * SR)
    yf = _transformer(y)
    old = 10 * np.log10((np.convolve(yf ** 2, k, "same") + 1e-18) / (np.convolve(x ** 2, k, "same") + 1e-18))
    assert np.ptp(old[int(0.2 * SR):int(0.95 * SR)]) > 10.0


def test_silence_has_no_gain():
    x = np.concatenate([np.zeros(SR // 2), 0.1 * np.random.default_rng(0).standard_normal(SR)])
    tr = gain_trace(x, 0.5 * x, SR)
    assert np.all(np.isnan(tr.gain_db[tr.times_s < 0.25]))   # (the zero-phase low-pass reaches ~0.2 s back)
    late = tr.times_s > 0.7
    assert np.allclose(tr.gain_db[late], 20 * np.log10(0.5), atol=1e-6)


def test_frame_times_and_shapes():
    x = np.random.default_rng(1).standard_normal((2, 2 * SR)) * 0.1
    tr = gain_trace(x, x, SR, hop_ms=10.0)
    assert tr.times_s.shape == tr.gain_db.shape
    assert len(tr.times_s) == 2 * 1000 // 10
    assert np.allclose(np.diff(tr.times_s), 0.01, atol=1e-4)
    assert np.allclose(tr.gain_db, 0.0, atol=1e-9)


def test_steady_frames_leave_out_jumps_of_the_input_level():
    """A burst cut in and out of silence: the frames within 20 ms of its edges are not steady."""
    x = np.zeros(2 * SR)
    x[SR // 2: 3 * SR // 2] = 0.1 * np.random.default_rng(4).standard_normal(SR)
    tr = gain_trace(x, x, SR)
    assert np.all(tr.steady[(tr.times_s > 0.6) & (tr.times_s < 1.4)])
    for edge in (0.5, 1.5):
        assert not np.any(tr.steady[np.abs(tr.times_s - edge) < 0.01])
    assert not np.any(tr.steady[np.isnan(tr.gain_db)])
