"""Cutting paired recordings into the fit's frames: 12 s frames with a 1 s overlap.

The first ``warmup`` samples of every frame are simulated but not scored, so each
frame's compressor state has settled before its error counts; with the 1 s
overlap every sample after the first second of the file is scored exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Frames", "make_frames"]


@dataclass
class Frames:
    """A batch of equally long frames, zero padded at the end where needed.

    Attributes:
        x, y: input and target, ``(B, T)`` float64.
        lengths: valid samples of each frame, ``(B,)`` int64.
        warmup: leading samples of every frame that are not scored.
        sample_rate: Hz.
    """
    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray
    warmup: int
    sample_rate: int

    @property
    def scored_samples(self) -> int:
        return int(np.maximum(self.lengths - self.warmup, 0).sum())

    def score_mask(self) -> np.ndarray:
        """Boolean ``(B, T)``: True where a sample counts in the loss."""
        n = np.arange(self.x.shape[1])[None, :]
        return (n >= self.warmup) & (n < self.lengths[:, None])


def make_frames(x: np.ndarray, y: np.ndarray, sample_rate: int, frame_s: float = 12.0,
                overlap_s: float = 1.0) -> Frames:
    """Frame a pair of signals.

    Args:
        x, y: input and target, 1-D, or ``(channels, samples)`` whose channels are
            framed one after another.
        frame_s: frame length; a shorter file becomes a single frame.
        overlap_s: overlap between frames, which is also the unscored warm-up.

    Returns:
        :class:`Frames`.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError(f"input {x.shape} and target {y.shape} differ in shape")
    frame = int(round(frame_s * sample_rate))
    warmup = int(round(overlap_s * sample_rate))
    if not 0 <= warmup < frame:
        raise ValueError("the overlap must be shorter than the frame")
    n = x.shape[1]
    if n <= warmup:
        raise ValueError(f"audio of {n / sample_rate:.2f} s is not longer than the "
                         f"{overlap_s:g} s warm-up")
    hop = frame - warmup
    starts = [0] if n <= frame else list(range(0, n - warmup, hop))
    length = min(frame, n)
    xs, ys, lens = [], [], []
    for ch in range(x.shape[0]):
        for s in starts:
            seg = slice(s, min(s + length, n))
            valid = seg.stop - seg.start
            if valid <= warmup:
                continue
            fx = np.zeros(length)
            fy = np.zeros(length)
            fx[:valid] = x[ch, seg]
            fy[:valid] = y[ch, seg]
            xs.append(fx)
            ys.append(fy)
            lens.append(valid)
    return Frames(np.stack(xs), np.stack(ys), np.asarray(lens, dtype=np.int64), warmup, int(sample_rate))
