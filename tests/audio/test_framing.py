"""Framing: 12 s frames with a 1 s unscored warm-up; every sample after the first
warm-up is scored exactly once across the frames."""
from __future__ import annotations

import numpy as np
import pytest

from audio.framing import Frames, make_frames

SR = 100  # a low rate keeps the arrays small; framing only counts samples


def _coverage(frames, n: int, starts_hop: int) -> np.ndarray:
    """How often each of the ``n`` samples of one channel is scored."""
    count = np.zeros(n, dtype=int)
    mask = frames.score_mask()
    for b in range(frames.x.shape[0]):
        s = b * starts_hop
        idx = s + np.flatnonzero(mask[b])
        count[idx] += 1
    return count


@pytest.mark.parametrize("seconds", [1.5, 5.0, 12.0, 12.5, 23.0, 24.0, 34.7])
def test_frames_cover_every_sample_once(seconds):
    n = int(round(seconds * SR))
    x = np.arange(1, n + 1, dtype=float)
    y = -x
    f = make_frames(x, y, SR)
    frame, warm = 12 * SR, SR
    hop = frame - warm
    assert f.warmup == warm and f.sample_rate == SR
    assert f.x.shape[1] == min(frame, n)
    expected_frames = 1 if n <= frame else len(range(0, n - warm, hop))
    assert f.x.shape[0] == expected_frames
    # reconstruct the scored part of the signal from frames + mask
    mask = f.score_mask()
    rebuilt = np.zeros(n)
    for b in range(f.x.shape[0]):
        assert f.lengths[b] == min(frame, n - b * hop) and f.lengths[b] > warm
        idx = b * hop + np.flatnonzero(mask[b])
        rebuilt[idx] += f.x[b, mask[b]]
        np.testing.assert_array_equal(f.y[b, mask[b]], -f.x[b, mask[b]])
        # padding after the valid part is zero and never scored
        assert not f.x[b, f.lengths[b]:].any() and not mask[b, f.lengths[b]:].any()
        # the warm-up holds the real preceding audio (not zeros) so the state settles
        np.testing.assert_array_equal(f.x[b, :warm], x[b * hop:b * hop + warm])
    np.testing.assert_array_equal(_coverage(f, n, hop)[warm:], 1)
    assert not _coverage(f, n, hop)[:warm].any()
    np.testing.assert_array_equal(rebuilt[warm:], x[warm:])
    assert f.scored_samples == n - warm


def test_channels_are_framed_one_after_another():
    n = 30 * SR
    x = np.stack([np.arange(n, dtype=float), -np.arange(n, dtype=float) - 1])
    f = make_frames(x, x, SR)
    per_channel = len(range(0, n - SR, 11 * SR))
    assert f.x.shape[0] == 2 * per_channel
    valid = np.arange(f.x.shape[1])[None, :] < f.lengths[:, None]
    assert (f.x[:per_channel][valid[:per_channel]] >= 0).all()
    assert (f.x[per_channel:][valid[per_channel:]] < 0).all()
    assert f.scored_samples == 2 * (n - SR)
    # one signal's channels are linked (one unit's gain for all); a mono pair's frame, or rows
    # given directly (each a signal of its own), are not
    assert f.linked and not make_frames(x[0], x[0], SR).linked
    assert not Frames(x[:, :SR], x[:, :SR], np.array([SR, SR]), 0, SR).linked


def test_custom_frame_and_overlap():
    n = 10 * SR
    f = make_frames(np.ones(n), np.ones(n), SR, frame_s=3.0, overlap_s=0.5)
    assert f.warmup == 50 and f.x.shape[1] == 300
    assert f.scored_samples == n - 50


@pytest.mark.parametrize("kwargs,message", [
    ({"x": np.ones(50)}, "not longer than"),
    ({"x": np.ones(100)}, "not longer than"),
    ({"overlap_s": 12.0}, "overlap must be shorter"),
    ({"y": np.ones(301)}, "differ in shape"),
])
def test_invalid(kwargs, message):
    args = {"x": np.ones(300), "y": None, "overlap_s": 1.0, **kwargs}
    y = args["y"] if args["y"] is not None else np.ones_like(args["x"])
    with pytest.raises(ValueError, match=message):
        make_frames(args["x"], y, SR, overlap_s=args["overlap_s"])
