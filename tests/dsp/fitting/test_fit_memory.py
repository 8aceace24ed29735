"""A fit holds the pair once: frames are a table over the signals, the kernel computes
the level and the pre-emphasised target as it goes, and level matching stores no output.
(``benchmarks/fit_memory.py`` measures the whole process on a 20-minute pair.)"""
from __future__ import annotations

import tracemalloc
import warnings

import numpy as np

from audio.framing import make_frames
from dsp.fitting.ff5 import FitOptions, fit_frames
from dsp.derivatives.ff5_kernel import prepare
from dsp.fitting.newton import NewtonOptions
from dsp.models.ff5_streaming import render

SR = 44100


def _pair(seconds: float):
    rng = np.random.default_rng(5)
    n = int(seconds * SR)
    env = np.repeat(10 ** (rng.uniform(-40, 0, n // 2205 + 1) / 20), 2205)[:n]
    x = (rng.standard_normal(n) * env * 0.3).astype(np.float32)[None, :]
    y = render(x.astype(np.float64), SR, {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0,
                                         "release_ms": 100.0, "make_up_db": 0.0}).astype(np.float32)
    return x, y


def test_frames_and_kernel_data_share_the_signals():
    x, y = _pair(30.0)
    frames = make_frames(x, y, SR)
    assert frames.n_frames == 3 and frames.source_x.dtype == np.float32
    assert np.shares_memory(frames.source_x, x) and np.shares_memory(frames.source_y, y)
    data = prepare(frames)
    assert data.xs is frames.source_x and data.ys is frames.source_y and data.dtype == np.float64
    # the padded float64 view is still there for whoever asks, equal to the audio
    b = 1
    s, n = int(frames.start[b]), int(frames.lengths[b])
    np.testing.assert_array_equal(frames.x[b, :n], x[0, s:s + n].astype(np.float64))


def test_fit_allocates_far_less_than_the_pair():
    """numpy's allocations during a fit (frames, objective, level match, Newton steps)
    stay a small fraction of the pair; before, they were about seven times the pair."""
    x, y = _pair(60.0)
    pair_bytes = x.nbytes + y.nbytes
    options = FitOptions(newton=NewtonOptions(max_iterations=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit_frames(make_frames(x[:, :3 * SR], y[:, :3 * SR], SR), None, options)  # compile outside the count
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frames = make_frames(x, y, SR)
            assert not frames.target_is_silent()
            fit_frames(frames, None, options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * pair_bytes, (peak, pair_bytes)


def test_silent_target_is_found_without_copies():
    x, y = _pair(15.0)
    y = y.copy()
    y[:, SR:] = 0.0   # sound only in the unscored warm-up
    assert make_frames(x, y, SR).target_is_silent()
    y[0, -1] = 1e-3
    assert not make_frames(x, y, SR).target_is_silent()
