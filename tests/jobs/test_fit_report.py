"""The fit report's takes: the pair as the fit had it, its recorded alignment applied again."""
from __future__ import annotations

import numpy as np
import scipy.signal
import soundfile as sf

from audio.align import apply_alignment
from jobs.fit_report import _file_take

SR = 8000


def test_a_take_is_the_pair_aligned_with_the_recorded_latency(tmp_path):
    rng = np.random.default_rng(1)
    b, a = scipy.signal.butter(4, 400 / (SR / 2))
    x = scipy.signal.lfilter(b, a, rng.standard_normal(12 * SR))   # band-limited: a linear interpolation delays it
    x *= 0.3 / np.max(np.abs(x))
    latency, polarity = 3.37, -1    # a late, inverted target (fractional samples)
    n = np.arange(len(x))
    y = polarity * np.interp(n - latency, n, x)
    sf.write(str(tmp_path / "in.wav"), x, SR, subtype="FLOAT")
    sf.write(str(tmp_path / "tgt.wav"), y, SR, subtype="FLOAT")
    recorded = {"mode": "auto", "latency_samples": latency, "polarity": polarity}
    take = _file_take("t", None, tmp_path / "in.wav", tmp_path / "tgt.wav", "auto", recorded)
    x32, y32 = x.astype(np.float32)[None], y.astype(np.float32)[None]
    xa, ya, _, _ = apply_alignment(x32, y32, latency, polarity)
    for start, stop in ((4 * SR, 7 * SR), (0, SR), (11 * SR, xa.shape[1])):
        xs, ys = take.pair(start, stop)
        assert np.array_equal(xs, xa[:, start:stop]) and np.array_equal(ys, ya[:, start:stop])
    # and that is the input itself and the target moved back onto it (away from the ends)
    xs, ys = take.pair(4 * SR, 7 * SR)
    assert np.max(np.abs(ys - xs)) < 0.02 * np.max(np.abs(xs))
    loaded, sr = take.load()
    assert sr == SR and np.array_equal(loaded, xa)
