"""Pair alignment: the latency and polarity of a target recording against its input.

A target recorded through a real interface arrives a few samples (or milliseconds)
late, sometimes with its polarity flipped; a fit on such a pair collapses (the best
"compressor" is silence). :func:`align_pair` finds both from the pair and corrects
them before any fit.

How: the target is a *compressed* copy of the input, i.e. the input delayed and
multiplied by a slowly varying positive gain, so its cross-correlation with the
input peaks at the latency with the sign of the polarity. The gain modulation and
the input's uneven spectrum broaden that peak; the phase transform (GCC-PHAT: each
frequency bin of the averaged cross-spectrum weighted by one over its magnitude)
whitens it into a sharp peak. Whole samples come from the peak of the weighted
correlation over a window of up to ``max_latency_s``. The fraction is a second,
separate estimate on the pair shifted by those whole samples: a phase-slope fit of the
cross-spectrum over short segments, each frequency weighted by how coherent the pair is
there (the Hannan-Thomson maximum-likelihood weighting, ``coherence / (1 - coherence)``
on the unit phasor). PHAT's equal weights let the bins where the compressor's gain
modulation, not the input, dominates the target pull the fraction off; the coherence
weighting leaves them out (``docs/experiments.md``, "Alignment").
The correction advances the target by the whole samples and by the fraction with a
linear phase ramp on its spectrum (exact band-limited interpolation, no resampling;
a windowed-sinc FIR leaves an error band below Nyquist that pre-emphasis magnifies
into an ESR floor near 1e-3), and trims both signals to their common span (the
input's samples are never changed).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy import optimize, signal

from common.errors import UserError

__all__ = ["AlignInfo", "AlignmentError", "ALIGN_MODES", "align_pair", "estimate_alignment", "apply_alignment",
           "fractional_advance"]

ALIGN_MODES = ("auto", "off")


class AlignmentError(UserError):
    """The pair shows no clear correlation peak: its latency cannot be estimated."""

# A pair counts as aligned (nothing resampled or trimmed) below this residual latency.
ALIGNED_TOLERANCE_SAMPLES = 0.02
# The correlation peak must stand this many times above the highest value elsewhere
# in the search window; unrelated signals give about 1.1-1.5.
MIN_PEAK_RATIO = 3.0
# Samples trimmed at each end after a fractional shift: where the file's hard edges
# ring and the target's missing samples leak in.
EDGE_GUARD = 64
# Analysis segments: length (a power of two, grown to hold the search window) and
# the most segments read from a long file (evenly spread).
_SEGMENT = 1 << 15
_MAX_SEGMENTS = 96
_LOW_HZ = 40.0           # below: transformer phase shifts and rumble, no timing information
_HIGH_FRACTION = 0.95    # of Nyquist: above, anti-alias filters roll off
# Fraction: short segments, so even a 1 s pair gives enough of them for a usable
# coherence estimate (the residual after the whole-sample shift is under a sample, so
# a short segment loses nothing); a long file contributes at most this many, spread.
_FRACTION_SEGMENT = 1024
_MAX_FRACTION_SEGMENTS = 4096
_MAX_COHERENCE = 0.999   # caps a bin's weight where input and target are identical


@dataclass(frozen=True)
class AlignInfo:
    """What alignment found and did; stored in the checkpoint and printed.

    Attributes:
        mode: ``"auto"`` or ``"off"``.
        latency_samples: the target's delay behind the input, in (fractional)
            samples; positive when the target is late. 0 with ``mode="off"``.
        polarity: +1, or -1 when the target is inverted.
        strength: height of the whitened correlation peak, 0..1 (1: every frequency
            agrees on one delay); NaN with ``mode="off"``.
        peak_ratio: the peak over the highest correlation elsewhere in the window.
        trimmed_start, trimmed_end: samples cut from the start and end of the pair.
        sample_rate: Hz, to express the latency in ms.
    """
    mode: str
    latency_samples: float
    polarity: int
    strength: float
    peak_ratio: float
    trimmed_start: int
    trimmed_end: int
    sample_rate: int

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    @property
    def corrected(self) -> bool:
        """True when the pair returned differs from the pair given."""
        return self.mode == "auto" and (self.polarity < 0 or self.trimmed_start > 0 or self.trimmed_end > 0)

    def to_dict(self) -> dict:
        """Plain types for a checkpoint (YAML)."""
        out = asdict(self)
        out["latency_ms"] = self.latency_ms
        out["corrected"] = self.corrected
        return {k: (float(v) if isinstance(v, float) else v) for k, v in out.items()}

    def describe(self) -> str:
        """One line for the console."""
        if self.mode == "off":
            return "alignment off (latency and polarity not checked)"
        pol = "inverted (corrected)" if self.polarity < 0 else "normal"
        return (f"target latency {self.latency_samples:+.2f} samples ({self.latency_ms:+.3f} ms), "
                f"polarity {pol}, correlation peak {self.strength:.2f} "
                f"({self.peak_ratio:.1f}x the next), trimmed {self.trimmed_start}+{self.trimmed_end} samples")


def align_pair(x: np.ndarray, y: np.ndarray, sample_rate: int, mode: str = "auto",
               max_latency_s: float = 0.1, target: str | os.PathLike = "target"
               ) -> tuple[np.ndarray, np.ndarray, AlignInfo]:
    """Find and correct the target's latency and polarity against the input.

    Args:
        x: input. **Shape:** ``(samples,)`` or ``(channels, samples)``.
        y: target, the same channel count (its length may differ).
        sample_rate: Hz.
        mode: ``"auto"`` corrects; ``"off"`` returns the pair unchanged.
        max_latency_s: largest latency searched, either way.
        target: the target's file name, for error messages.

    Returns:
        ``(x, y, info)``: the pair trimmed to its common span, the target advanced
        by the latency and multiplied by its polarity (same dtype and
        dimensionality as given), and the :class:`AlignInfo` record.

    Raises:
        UserError: naming ``target``, when there is no clear correlation peak
            (unrelated files, a latency beyond ``max_latency_s``, silence).
    """
    if mode not in ALIGN_MODES:
        raise UserError(f"align must be one of {', '.join(ALIGN_MODES)}; got {mode!r}")
    if mode == "off":
        return x, y, AlignInfo("off", 0.0, 1, math.nan, math.nan, 0, 0, int(sample_rate))
    latency, polarity, strength, ratio = estimate_alignment(x, y, sample_rate, max_latency_s, target)
    xa, ya, start, end = apply_alignment(x, y, latency, polarity)
    return xa, ya, AlignInfo("auto", latency, polarity, strength, ratio, start, end, int(sample_rate))


def estimate_alignment(x: np.ndarray, y: np.ndarray, sample_rate: int, max_latency_s: float = 0.1,
                       target: str | os.PathLike = "target") -> tuple[float, int, float, float]:
    """Latency (samples, positive: target late), polarity, peak strength and peak ratio.

    Shapes as in :func:`align_pair`. Raises UserError naming ``target`` when the
    pair shows no clear correlation peak.
    """
    x2, y2 = _as_2d(x), _as_2d(y)
    if x2.shape[0] != y2.shape[0]:
        raise UserError(f"{target}: has {y2.shape[0]} channels but the input has {x2.shape[0]}")
    n = min(x2.shape[1], y2.shape[1])
    max_lag = int(math.ceil(max_latency_s * sample_rate))
    if n < 4 * max_lag + 2 * EDGE_GUARD:
        raise UserError(f"{target}: {n / sample_rate:.2f} s is too short to check latency up to "
                        f"{max_latency_s * 1000:g} ms")
    spectrum, nfft = _cross_spectrum(x2[:, :n], y2[:, :n], sample_rate, max_lag)
    magnitude = np.abs(spectrum)
    total = float(magnitude.sum())
    if total <= 0.0:
        raise UserError(f"{target}: cannot check latency and polarity: input or target is silent")
    weighted = spectrum / np.maximum(magnitude, 1e-12 * magnitude.max()) * (magnitude > 0)
    weight_sum = float(np.count_nonzero(magnitude))
    corr = np.fft.irfft(weighted, nfft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    window = np.concatenate([corr[:max_lag + 1], corr[nfft - max_lag:]])
    best = int(np.argmax(np.abs(window)))
    peak, lag = float(window[best]), int(lags[best])
    far = np.abs(lags - lag) > 3  # outside the peak's own main lobe
    runner_up = float(np.max(np.abs(window[far]))) if np.any(far) else 0.0
    ratio = abs(peak) / runner_up if runner_up > 0 else math.inf
    strength = abs(peak) * nfft / weight_sum  # irfft divides by nfft; a pure delay gives 1
    if ratio < MIN_PEAK_RATIO or abs(lag) >= max_lag:
        raise AlignmentError(f"{target}: cannot align with the input: no clear correlation peak within "
                        f"±{max_latency_s * 1000:g} ms (peak {ratio:.1f}x the next, strength {strength:.2f}); "
                        f"is it a recording of this input?")
    polarity = 1 if peak > 0 else -1
    latency = _coherent_fraction(x2[:, :n], y2, lag, polarity, sample_rate)
    if latency is None:   # no coherent frequency to weigh: the whitened peak's own maximum
        latency = _refine_peak(weighted * polarity, nfft, lag)
    return latency, polarity, float(min(strength, 1.0)), float(ratio)


def apply_alignment(x: np.ndarray, y: np.ndarray, latency: float, polarity: int
                    ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Advance ``y`` by ``latency`` samples, multiply by ``polarity``, trim to the common span.

    Shapes as in :func:`align_pair`. Returns ``(x, y, trimmed_start, trimmed_end)``
    where the trims count samples cut from the input's start and end.
    """
    n = min(np.shape(x)[-1], np.shape(y)[-1])
    whole = int(math.floor(latency + 0.5))
    fraction = latency - whole
    if abs(latency) < ALIGNED_TOLERANCE_SAMPLES:
        whole, fraction = 0, 0.0
    elif abs(fraction) < ALIGNED_TOLERANCE_SAMPLES:
        fraction = 0.0
    y2 = _as_2d(y)   # no copy unless something changes: a long pair is held once
    guard = 0
    if fraction != 0.0:
        y2 = fractional_advance(y2, fraction)
        guard = EDGE_GUARD
    # aligned[k] = y[k + whole] for the input sample k; keep k where both exist
    start = max(0, guard - whole)
    stop = min(n, np.shape(y)[-1] - guard - whole)
    if stop - start <= 0:
        raise ValueError(f"latency {latency} leaves no common span")
    xa = _as_2d(x)[:, start:stop]
    ya = y2[:, start + whole:stop + whole].astype(np.asarray(y).dtype, copy=False)
    if polarity < 0:
        ya = np.negative(ya)
    if np.ndim(x) == 1:
        xa = xa[0]
    if np.ndim(y) == 1:
        ya = ya[0]
    return xa, ya, start, np.shape(x)[-1] - stop


def fractional_advance(y: np.ndarray, fraction: float) -> np.ndarray:
    """``y(t + fraction)`` along the last axis: a phase ramp on the zero-padded spectrum.

    Args:
        y: signal. **Shape:** ``(..., samples)``.
        fraction: advance in samples (any sign; ``|fraction| <= 0.5`` in use).

    Returns:
        the shape of ``y``, float32 for float32 (scipy's FFT keeps single precision: half the
        memory of a long pair, rounding far below its own), else float64; the first and last
        ``EDGE_GUARD`` samples carry the ringing of the file's hard edges and should be trimmed.
    """
    y = np.asarray(y)
    if y.dtype != np.float32:
        y = y.astype(np.float64)
    n = y.shape[-1]
    nfft = sp_fft.next_fast_len(n + 4 * EDGE_GUARD, real=True)  # padding keeps the wrap-around off the signal
    spectrum = sp_fft.rfft(y, nfft, axis=-1)
    ramp = np.exp(2j * np.pi * np.arange(nfft // 2 + 1) * fraction / nfft).astype(spectrum.dtype)
    spectrum *= ramp   # in place: the spectrum is the largest array here
    return sp_fft.irfft(spectrum, nfft, axis=-1, overwrite_x=True)[..., :n]


def _as_2d(a: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(a))


def _cross_spectrum(x: np.ndarray, y: np.ndarray, sample_rate: int, max_lag: int
                    ) -> tuple[np.ndarray, int]:
    """Averaged cross-spectrum ``conj(X) Y`` over Hann segments and channels, band-limited.

    Segments are long against the search window so the window's own taper barely
    weights the lags; a long file contributes at most ``_MAX_SEGMENTS`` of them.
    """
    n = x.shape[1]
    seg = _SEGMENT
    while seg < 8 * max_lag:
        seg *= 2
    seg = min(seg, 1 << int(math.floor(math.log2(n))))
    hop = seg // 2
    starts = np.arange(0, n - seg + 1, hop)
    if starts.size > _MAX_SEGMENTS:
        starts = starts[np.linspace(0, starts.size - 1, _MAX_SEGMENTS).round().astype(int)]
    win = signal.windows.hann(seg, sym=False)
    nfft = 2 * seg  # zero padding: lags up to the segment length without wrap-around
    acc = np.zeros(nfft // 2 + 1, dtype=np.complex128)
    for s in starts:
        xs = np.fft.rfft(x[:, s:s + seg].astype(np.float64) * win, nfft)
        ys = np.fft.rfft(y[:, s:s + seg].astype(np.float64) * win, nfft)
        acc += np.sum(np.conj(xs) * ys, axis=0)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    acc[(freqs < _LOW_HZ) | (freqs > _HIGH_FRACTION * sample_rate / 2)] = 0.0
    return acc, nfft


def _coherent_fraction(x: np.ndarray, y: np.ndarray, lag: int, polarity: int,
                       sample_rate: int) -> float | None:
    """Latency near the whole-sample ``lag``: the coherence-weighted phase slope.

    ``y`` is shifted by ``lag`` against ``x``; over short Hann segments of the shifted
    pair the cross-spectrum ``S_k``, the auto-spectra and so the coherence ``c_k`` of
    every bin are averaged. The fraction ``t`` maximises
    ``sum_k c_k / (1 - c_k) * Re(polarity * S_k / |S_k| * exp(2 pi i k t / seg))``
    over ``|t| <= 1`` (a grid, then a bounded search around its best point).

    Returns:
        The latency ``lag + t`` in samples, or None when the shifted pair is shorter
        than a segment or no bin in the band is coherent.
    """
    seg = _FRACTION_SEGMENT
    start, stop = max(0, -lag), min(x.shape[1], y.shape[1] - lag)
    if stop - start < seg:
        return None
    starts = np.arange(start, stop - seg + 1, seg // 2)
    if starts.size > _MAX_FRACTION_SEGMENTS:
        starts = starts[np.linspace(0, starts.size - 1, _MAX_FRACTION_SEGMENTS).round().astype(int)]
    win = signal.windows.hann(seg, sym=False)
    cross = np.zeros(seg // 2 + 1, dtype=np.complex128)
    power_x = np.zeros(seg // 2 + 1)
    power_y = np.zeros(seg // 2 + 1)
    for chunk in np.array_split(starts, max(1, starts.size // 256)):   # bounded memory
        idx = chunk[:, None] + np.arange(seg)
        xs = np.fft.rfft(x[:, idx].astype(np.float64) * win, axis=-1)
        ys = np.fft.rfft(y[:, idx + lag].astype(np.float64) * win, axis=-1)
        cross += np.sum(np.conj(xs) * ys, axis=(0, 1))
        power_x += np.sum(np.abs(xs) ** 2, axis=(0, 1))
        power_y += np.sum(np.abs(ys) ** 2, axis=(0, 1))
    freqs = np.fft.rfftfreq(seg, 1.0 / sample_rate)
    band = (freqs >= _LOW_HZ) & (freqs <= _HIGH_FRACTION * sample_rate / 2)
    magnitude = np.abs(cross)
    power = power_x * power_y
    usable = band & (power > 0) & (magnitude > 0)
    coherence = np.zeros_like(magnitude)
    coherence[usable] = np.minimum(magnitude[usable] ** 2 / power[usable], _MAX_COHERENCE)
    weight = coherence / (1.0 - coherence)
    if not np.any(weight > 0):
        return None
    phasor = np.zeros_like(cross)
    phasor[usable] = polarity * weight[usable] * cross[usable] / magnitude[usable]
    k = np.arange(cross.size)

    def slope_fit(t: np.ndarray) -> np.ndarray:
        return np.real(np.exp(2j * np.pi * np.outer(t, k) / seg) @ phasor)

    grid = np.linspace(-1.0, 1.0, 41)
    best = float(grid[int(np.argmax(slope_fit(grid)))])
    res = optimize.minimize_scalar(lambda t: -float(slope_fit(np.array([t]))[0]),
                                   bounds=(best - 0.05, best + 0.05), method="bounded",
                                   options={"xatol": 1e-5})
    return lag + float(res.x if res.success else best)


def _refine_peak(weighted: np.ndarray, nfft: int, lag: int) -> float:
    """Fractional lag of the correlation maximum near ``lag``.

    The correlation between samples is the band-limited interpolation of the
    cross-spectrum, ``r(t) = sum_k w_k Re(S_k exp(2 pi i k t / nfft))``; a parabola
    through the three samples around the peak starts a bounded search of ``r``.
    """
    k = np.arange(weighted.size)
    scale = np.where((k == 0) | (k == nfft // 2), 1.0, 2.0) / nfft

    def corr(t: float) -> float:
        return float(np.sum(scale * np.real(weighted * np.exp(2j * np.pi * k * t / nfft))))

    r_m, r_0, r_p = corr(lag - 1), corr(lag), corr(lag + 1)
    denom = r_m - 2.0 * r_0 + r_p
    guess = lag + (0.5 * (r_m - r_p) / denom if denom < 0 else 0.0)
    guess = min(max(guess, lag - 0.5), lag + 0.5)
    res = optimize.minimize_scalar(lambda t: -corr(t), bounds=(guess - 0.5, guess + 0.5), method="bounded",
                                   options={"xatol": 1e-4})
    return float(res.x) if res.success else float(guess)
