"""Program material synthesiser: determinism, range, dynamics, probe signal shapes."""
from __future__ import annotations

import numpy as np
import pytest

from audio import material
from audio.material import SEGMENT_KINDS, drum_hit, sine_sweep, synthesize

SR = 44100


def _window_peaks_db(x: np.ndarray, window_s: float = 0.25) -> np.ndarray:
    n = int(window_s * SR)
    frames = x[: x.size // n * n].reshape(-1, n)
    return 20.0 * np.log10(np.max(np.abs(frames), axis=1) + 1e-12)


def _zero_crossing_rate(x: np.ndarray) -> float:
    """Zero crossings per second."""
    return float(np.count_nonzero(np.diff(np.signbit(x)))) / (x.size / SR) / 2.0


def test_same_seed_same_bytes_different_seed_differs():
    a = synthesize(8.0, SR, seed=7)
    b = synthesize(8.0, SR, seed=7)
    c = synthesize(8.0, SR, seed=8)
    assert a.tobytes() == b.tobytes()
    assert a.shape == c.shape and not np.array_equal(a, c)


def test_does_not_touch_global_random_state():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    synthesize(2.0, SR, seed=1)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dtype_length_range_and_finite(seed):
    x = synthesize(20.0, SR, seed=seed)
    assert x.dtype == np.float32 and x.ndim == 1 and x.size == 20 * SR
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x)) <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_quiet_and_loud_passages(seed):
    peaks = _window_peaks_db(synthesize(30.0, SR, seed=seed))
    audible = peaks[peaks > -80.0]
    assert np.max(audible) > -10.0, "no loud passage"
    assert np.min(audible) < -28.0, "no quiet passage"
    assert np.ptp(audible) > 20.0


def test_odd_lengths_and_other_rates():
    assert synthesize(0.01, SR, seed=0).size == 441
    x = synthesize(3.0, 22050, seed=0)
    assert x.size == 3 * 22050 and np.max(np.abs(x)) <= 1.0


@pytest.mark.parametrize("kind", [k for k in SEGMENT_KINDS if k != "silence"])
def test_every_segment_kind_renders(kind):
    seg = material._SEGMENTS[kind](np.random.default_rng(0), 2 * SR, SR)
    assert seg.shape == (2 * SR,) and np.all(np.isfinite(seg)) and np.any(seg)


def test_every_kind_can_be_drawn():
    assert len(SEGMENT_KINDS) == len(material._KIND_WEIGHTS)
    assert np.isclose(material._KIND_WEIGHTS.sum(), 1.0) and np.all(material._KIND_WEIGHTS > 0)


def test_sine_sweep_shape():
    x = sine_sweep(1.6, SR, level_db=-12.0)
    assert x.dtype == np.float32 and x.size == int(1.6 * SR)
    assert np.max(np.abs(x)) == pytest.approx(10 ** (-12 / 20), rel=1e-3)
    # instantaneous frequency rises: compare zero-crossing rates in tenths of the sweep
    tenth = x.size // 10
    rates = [_zero_crossing_rate(x[i * tenth:(i + 1) * tenth]) for i in range(10)]
    assert all(b > a for a, b in zip(rates, rates[1:]))
    assert rates[0] < 100.0          # starts near 20 Hz
    assert rates[-1] > 5000.0        # ends in the top octaves
    # exponential: equal time, equal frequency ratio (roughly)
    assert rates[6] / rates[5] == pytest.approx(rates[4] / rates[3], rel=0.1)


@pytest.mark.parametrize("duration", [0.2, 0.4, 0.8])
def test_short_sweeps(duration):
    x = sine_sweep(duration, SR, level_db=-6.0)
    assert x.size == round(duration * SR)
    assert np.max(np.abs(x)) <= 10 ** (-6 / 20) + 1e-6


def test_drum_hit_shape():
    hit = drum_hit(SR, level_db=-6.0, seed=0)
    assert hit.dtype == np.float32 and hit.size == SR // 2
    assert np.max(np.abs(hit)) == pytest.approx(10 ** (-6 / 20), rel=1e-4)
    assert np.argmax(np.abs(hit)) < int(0.02 * SR), "peak must come in the first 20 ms"
    env = np.sqrt(np.mean(hit[: hit.size // 50 * 50].reshape(50, -1) ** 2, axis=1))
    assert env[-1] < 0.05 * env[:3].max(), "a hit decays"
    assert np.array_equal(hit, drum_hit(SR, -6.0, seed=0))


@pytest.mark.parametrize("seed", range(4))
def test_drum_hit_has_a_sharp_transient(seed):
    hit = np.abs(drum_hit(SR, level_db=-6.0, seed=seed))
    onset = np.flatnonzero(hit >= 0.5 * hit.max())[0]
    assert onset < int(0.001 * SR), "half the peak within 1 ms of the start"


@pytest.mark.parametrize("call", [
    lambda: synthesize(0.0),
    lambda: synthesize(-1.0),
    lambda: synthesize(1.0, sample_rate=100),
    lambda: sine_sweep(1.0, 44100, f1=30000.0),
    lambda: sine_sweep(1.0, 44100, level_db=3.0),
    lambda: drum_hit(44100, level_db=float("nan")),
])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
