"""Cutting paired recordings into the fit's frames: 12 s frames with a 1 s overlap.

The first ``warmup`` samples of every frame are simulated but not scored, so each
frame's compressor state has settled before its error counts; with the 1 s
overlap every sample after the first second of the file is scored exactly once.
"""
from __future__ import annotations

import numpy as np

from common.errors import UserError

__all__ = ["Frames", "make_frames", "frame_pair"]


class Frames:
    """A batch of equally long frames cut from a pair of signals, without copying them.

    A frame is a row ``(channel, start, length)`` of a table over the source signals;
    past its ``length`` a frame reads as zeros. The kernels read the sources through
    the table, so a fit holds no second copy of the audio (overlaps included).
    :attr:`x` and :attr:`y` build the padded ``(B, T)`` float64 arrays on demand,
    for code that wants them (autograd, tests, short audio).

    Args:
        x, y: source signals, ``(C, N)`` (float32 or float64 are kept as they are;
            other types become float64). Built directly with only these and
            ``lengths``, every row of ``x``/``y`` is one frame (``(B, T)``).
        lengths: valid samples of each frame, ``(B,)``.
        warmup: leading samples of every frame that are not scored.
        sample_rate: Hz.
        channel, start: ``(B,)`` source row and first sample of each frame
            (default: frame ``b`` is row ``b`` from sample 0).
        length: ``T``, the padded frame length (default: ``x.shape[1]``).
        detector: what the compressor's peak detector reads, ``(D, N)`` beside the
            sources (a multichannel pair's linked detector: the loudest channel's ``|x|``,
            as the renderers link them), with ``detector_row`` ``(B,)`` each frame's row;
            None (default): every frame's detector is its own input.
        linked: the source rows are the channels of one signal whose unit has one gain for
            all of them (what :func:`make_frames` makes of a multichannel pair), so a model
            whose gain is lit by every channel (the optical cell) hears them all in every
            frame; False (default): a row is a signal of its own.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, lengths: np.ndarray, warmup: int, sample_rate: int,
                 channel: np.ndarray | None = None, start: np.ndarray | None = None,
                 length: int | None = None, detector: np.ndarray | None = None,
                 detector_row: np.ndarray | None = None, linked: bool = False):
        self.source_x = _signal(x)
        self.linked = bool(linked) and self.source_x.shape[0] > 1
        self.source_y = _signal(y)
        self.source_detector = None if detector is None else _signal(detector).astype(self.source_x.dtype, copy=False)
        if self.source_x.shape != self.source_y.shape:
            raise ValueError(f"input {self.source_x.shape} and target {self.source_y.shape} differ in shape")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        n_frames = len(self.lengths)
        self.channel = np.arange(n_frames, dtype=np.int64) if channel is None else np.asarray(channel, np.int64)
        self.start = np.zeros(n_frames, dtype=np.int64) if start is None else np.asarray(start, np.int64)
        self.length = int(self.source_x.shape[1] if length is None else length)
        self.warmup = int(warmup)
        self.sample_rate = int(sample_rate)
        if not (len(self.channel) == len(self.start) == n_frames):
            raise ValueError("channel, start and lengths must have one entry per frame")
        self.detector_row = None
        if self.source_detector is not None:
            self.detector_row = (np.zeros(n_frames, dtype=np.int64) if detector_row is None
                                 else np.asarray(detector_row, np.int64))
            if (self.source_detector.shape[1] != self.source_x.shape[1] or len(self.detector_row) != n_frames
                    or np.any(self.detector_row < 0) or np.any(self.detector_row >= self.source_detector.shape[0])):
                raise ValueError("the detector does not match the frames")
        if n_frames and (np.any(self.lengths > self.length) or np.any(self.lengths < 0)
                         or np.any(self.start < 0) or np.any(self.start + self.lengths > self.source_x.shape[1])
                         or np.any(self.channel < 0) or np.any(self.channel >= self.source_x.shape[0])):
            raise ValueError("a frame reaches outside its source signal")

    @property
    def n_frames(self) -> int:
        return len(self.lengths)

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, T)`` of the padded frames."""
        return self.n_frames, self.length

    def frame(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """The valid part of frame ``b``: input and target views into the sources. Shape: ``(lengths[b],)``."""
        c, s, n = int(self.channel[b]), int(self.start[b]), int(self.lengths[b])
        return self.source_x[c, s:s + n], self.source_y[c, s:s + n]

    def rows(self, part: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The frames of ``part``, zero padded, float64: ``(x, y, detector)``, each ``(b, T)``
        (``detector`` None when each frame's is its own input). For code that takes the
        frames a few at a time, so a long pair is never held twice."""
        idx = range(self.n_frames)[part]
        x, y = np.zeros((len(idx), self.length)), np.zeros((len(idx), self.length))
        det = None if self.source_detector is None else np.zeros((len(idx), self.length))
        for i, b in enumerate(idx):
            c, s, n = int(self.channel[b]), int(self.start[b]), int(self.lengths[b])
            x[i, :n], y[i, :n] = self.source_x[c, s:s + n], self.source_y[c, s:s + n]
            if det is not None:
                det[i, :n] = self.source_detector[int(self.detector_row[b]), s:s + n]
        return x, y, det

    def mask_rows(self, part: slice) -> np.ndarray:
        """:meth:`score_mask` of the frames of ``part``."""
        n = np.arange(self.length)[None, :]
        return (n >= self.warmup) & (n < self.lengths[part][:, None])

    @property
    def detector(self) -> np.ndarray | None:
        """What each frame's peak detector reads, zero padded, float64 ``(B, T)``; None when it
        is the frame's own input."""
        if self.source_detector is None:
            return None
        out = np.zeros(self.shape)
        for b in range(self.n_frames):
            s, n = int(self.start[b]), int(self.lengths[b])
            out[b, :n] = self.source_detector[int(self.detector_row[b]), s:s + n]
        return out

    @property
    def x(self) -> np.ndarray:
        """Input frames, zero padded, float64. Shape: ``(B, T)`` (a new array unless the
        frames are the rows of a float64 source)."""
        return self._padded(self.source_x, 0)

    @property
    def y(self) -> np.ndarray:
        """Target frames, zero padded, float64. Shape: ``(B, T)``."""
        return self._padded(self.source_y, 1)

    def _padded(self, source: np.ndarray, which: int) -> np.ndarray:
        if self._is_rows() and source.dtype == np.float64:
            return source
        out = np.zeros(self.shape)
        for b in range(self.n_frames):
            part = self.frame(b)[which]
            out[b, :len(part)] = part
        return out

    def _is_rows(self) -> bool:
        return (self.source_x.shape == self.shape and not self.start.any()
                and np.array_equal(self.channel, np.arange(self.n_frames)))

    @property
    def scored_samples(self) -> int:
        return int(np.maximum(self.lengths - self.warmup, 0).sum())

    def score_mask(self) -> np.ndarray:
        """Boolean ``(B, T)``: True where a sample counts in the loss."""
        n = np.arange(self.length)[None, :]
        return (n >= self.warmup) & (n < self.lengths[:, None])

    def target_is_silent(self) -> bool:
        """True when every scored target sample is zero (nothing to fit)."""
        return not any(np.any(self.frame(b)[1][self.warmup:]) for b in range(self.n_frames))


def _signal(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous 2-D float32/float64 array, copied only when it must be."""
    a = np.atleast_2d(np.asarray(a))
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def make_frames(x: np.ndarray, y: np.ndarray, sample_rate: int, frame_s: float = 12.0,
                overlap_s: float = 1.0) -> Frames:
    """Frame a pair of signals (a table over them; the audio is not copied).

    Args:
        x, y: input and target, 1-D, or ``(channels, samples)`` whose channels are
            framed one after another, linked as every renderer links a multichannel
            unit's gain (the five-parameter detector reads the loudest channel's ``|x|``;
            the optical cell is lit by every channel). float32 and
            float64 are kept as they are.
        frame_s: frame length; a shorter file becomes a single frame.
        overlap_s: overlap between frames, which is also the unscored warm-up.

    Returns:
        :class:`Frames`.
    """
    x, y = _signal(x), _signal(y)
    if x.dtype != y.dtype:  # one working type for the kernels
        x, y = x.astype(np.float64), y.astype(np.float64)
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
    channel, start, lens = [], [], []
    for ch in range(x.shape[0]):
        for s in starts:
            valid = min(s + length, n) - s
            if valid <= warmup:
                continue
            channel.append(ch)
            start.append(s)
            lens.append(valid)
    detector = np.max(np.abs(x), axis=0, keepdims=True) if x.shape[0] > 1 else None
    return Frames(x, y, np.asarray(lens, dtype=np.int64), warmup, int(sample_rate),
                  channel=np.asarray(channel, dtype=np.int64), start=np.asarray(start, dtype=np.int64),
                  length=length, detector=detector, linked=x.shape[0] > 1)


def frame_pair(x, y, sample_rate: int, frame_s: float, overlap_s: float, target) -> Frames:
    """Frames for a fit; a UserError naming ``target`` if the pair is too short for the
    warm-up or the target is silent where it is scored."""
    try:
        frames = make_frames(x, y, sample_rate, frame_s, overlap_s)
    except ValueError as exc:
        raise UserError(f"{target}: {exc}") from None
    if frames.target_is_silent():
        raise UserError(f"{target}: target is silent after the {overlap_s:g} s warm-up; nothing to fit")
    return frames
