"""The gain a device applied, read off its input and output: one estimator for every plot and metric.

A compressor multiplies its input by a slowly moving gain. Reading that gain back from
the two signals with short envelopes (a few ms) follows the waveform instead: the output
of a real unit is also filtered (transformers, a tube stage), so its peaks do not line up
with the input's and the ratio of two short envelopes swings by 10-20 dB with every cycle
of a bass note. :func:`gain_trace` compares the two signals' *powers* smoothed by a
Gaussian window (10 ms standard deviation by default, centred: no delay) whose response
is down 29 dB at 41 Hz (E1, the lowest bass fundamental's beat rate) and more above: the
carrier and its beats are gone, a gain change is blurred over about +-20 ms. The window is
non-negative, so for an output that is the input times a gain the estimate is a weighted
mean of that gain: it never overshoots, even at the edge of silence.

Definition (``docs/metrics.md``): ``P_s = G * s^2`` for ``s`` the input and the output,
where ``s^2`` is first averaged over 1 ms blocks and ``G`` is the Gaussian (truncated at
+-4 standard deviations, renormalised where it meets the ends of the signal); the gain is
``10 log10(P_out / P_in)`` in dB, sampled every ``hop_ms``, and undefined (NaN) where
``P_in`` is below ``floor_db`` dBFS (silence has no gain). Two traces of the same input
are estimated identically, so their difference is the difference of the two outputs' gains.

Where the input's level jumps (more than ``steady_db`` = 10 dB within +-20 ms: a note cut
off, a hit out of silence) a few ms of delay between output and input (a transformer's
phase shift) read as dB of gain, in either direction. :attr:`GainTrace.steady` marks the
frames away from such jumps; the trajectory error (:func:`audio.metrics.gr_trajectory`)
scores only those, the plots draw every frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import scipy.signal

__all__ = ["GainTrace", "gain_trace", "mono", "smoothed_power", "SMOOTHING_MS", "HOP_MS", "FLOOR_DB", "STEADY_DB", "STEADY_MS"]

SMOOTHING_MS = 10.0  # the power smoother's standard deviation: the carrier's beats out, the gain's motion in
HOP_MS = 5.0        # one gain value every 5 ms
FLOOR_DB = -60.0    # input power (dBFS) below which the gain is undefined
STEADY_DB = 10.0    # a frame is steady when the input level moves less than this (dB) ...
STEADY_MS = 20.0    # ... within this many ms on either side
_BLOCK_MS = 1.0     # the powers are block means at 1 kHz before the smoothing (cheap; far above its band)


@dataclass
class GainTrace:
    """A gain over time.

    Attributes:
        times_s: ``(frames,)`` the centre of each frame, seconds from the start of the signal.
        gain_db: ``(frames,)`` output over input in dB; NaN where the input is below the floor.
        input_db: ``(frames,)`` the input's smoothed power, dBFS.
        steady: ``(frames,)`` True where the gain is defined and the input level moves less
            than ``steady_db`` within ``steady_ms`` on either side (see the module doc).
    """
    times_s: np.ndarray
    gain_db: np.ndarray
    input_db: np.ndarray
    steady: np.ndarray


def mono(z) -> np.ndarray:
    """``(C, T)`` -> the channels' mean, ``(T,)`` float64; 1-D as it is."""
    z = np.asarray(z, dtype=np.float64)
    return z.mean(axis=0) if z.ndim == 2 else z.reshape(-1)


def smoothed_power(z: np.ndarray, sample_rate: int, smoothing_ms: float = SMOOTHING_MS,
                   hop_ms: float = HOP_MS) -> np.ndarray:
    """The smoothed power of ``z`` (see the module doc), one value every ``hop_ms``.

    Shape: ``(samples,)`` or ``(channels, samples)`` (channels averaged first) ->
    ``(frames,)`` with ``frames = ceil(samples // block / step)`` (block 1 ms, step ``hop_ms`` blocks).
    """
    z = mono(z)
    block = max(1, int(round(sample_rate * _BLOCK_MS * 1e-3)))
    n = len(z) // block
    if n == 0:
        return np.zeros(0)
    p = (z[: n * block] ** 2).reshape(n, block).mean(axis=1)
    sigma = smoothing_ms / _BLOCK_MS
    if sigma > 0:
        half = int(np.ceil(4 * sigma))
        k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
        # a truncated window near the ends, renormalised (the ends are not biased low)
        p = scipy.signal.oaconvolve(p, k, mode="same") / scipy.signal.oaconvolve(np.ones(n), k, mode="same")
        p = np.maximum(p, 0.0)   # rounding of the FFT convolution around exact zeros
    step = max(1, int(round(hop_ms / _BLOCK_MS)))
    return p[step // 2::step]


def gain_trace(x: np.ndarray, y: np.ndarray, sample_rate: int, smoothing_ms: float = SMOOTHING_MS,
               hop_ms: float = HOP_MS, floor_db: float = FLOOR_DB, steady_db: float = STEADY_DB,
               steady_ms: float = STEADY_MS) -> GainTrace:
    """The gain from ``x`` (input) to ``y`` (output) over time, in dB (see the module doc).

    Args:
        x, y: ``(samples,)`` or ``(channels, samples)``, the same length and rate.
        sample_rate: Hz.
        smoothing_ms: the power smoother's standard deviation; longer is smoother and slower.
        hop_ms: time between values.
        floor_db: input power (dBFS, RMS) below which the gain is NaN.
        steady_db, steady_ms: the largest input level change within ``steady_ms`` on either
            side of a frame marked steady.

    Returns:
        :class:`GainTrace`, ``frames = samples // (sample_rate / 1000) // hop_ms``.
    """
    px = smoothed_power(x, sample_rate, smoothing_ms, hop_ms)
    py = smoothed_power(y, sample_rate, smoothing_ms, hop_ms)
    n = min(len(px), len(py))
    px, py = px[:n], py[:n]
    tiny = 1e-30
    with np.errstate(divide="ignore", invalid="ignore"):
        g = 10.0 * np.log10((py + tiny) / (px + tiny))
    g[px < 10.0 ** (floor_db / 10.0)] = np.nan
    block = max(1, int(round(sample_rate * _BLOCK_MS * 1e-3)))
    step = max(1, int(round(hop_ms / _BLOCK_MS)))
    times = (np.arange(n) * step + step // 2 + 0.5) * block / sample_rate
    level = 10.0 * np.log10(px + tiny)
    if n:
        size = 2 * int(round(steady_ms / hop_ms)) + 1
        swing = scipy.ndimage.maximum_filter1d(level, size) - scipy.ndimage.minimum_filter1d(level, size)
        steady = np.isfinite(g) & (swing < steady_db)
    else:
        steady = np.zeros(0, bool)
    return GainTrace(times, g, level, steady)
