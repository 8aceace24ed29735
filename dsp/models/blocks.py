"""Gray-box blocks around the compressor: first-order transformer filters and a tube shaper.

Pure functions, tensors in and tensors out (differentiable to any order through
torch autograd), plus their numpy/scipy twins for block-wise rendering. The two
paths share one set of coefficient formulas, so they compute the same filter.

Filters are first-order sections from the bilinear transform, pre-warped at their
corner, each ``H(z) = (b0 + b1 z^-1) / (1 + a1 z^-1)``:

- :func:`highpass_coefficients`: ``H(s) = s / (s + wc)``, a transformer's
  low-frequency roll-off and its phase lead;
- :func:`shelf_coefficients`: ``H(s) = (G s + wc) / (s + wc)``: unity at low
  frequency, ``G`` (``gain_db``) at high frequency, pole at the corner; with
  ``G < 1`` it is a gentle top-end roll-off (a first-order low-pass with a floor),
  and at 0 dB it is exactly transparent.

In the fit the filters are applied in the frequency domain (:func:`fft_filter`):
the input frame is zero-padded by at least the length over which the slowest section's
impulse response decays by e^-40 (:func:`decay_samples`), so the result is the
recursion run from rest (as :func:`scipy.signal.lfilter` does) to float64 rounding.

The tube shaper (:func:`shaper`) is ``T(u) + a T(u)^2`` with ``T(u) = tanh(k u) / k``:
drive ``k`` sets the odd (compressive) curvature, asymmetry ``a`` the even
(second-harmonic) part. Its small-signal gain is 1 for every ``k`` and ``a``, and as
``k -> 0`` and ``a = 0`` it is the identity, so it starts transparent; the DC offset
``a T^2`` creates is removed by the output high-pass (the output coupling).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["highpass_coefficients", "shelf_coefficients", "section_response",
           "fft_filter", "fft_length", "unit_delay", "decay_samples", "shaper", "shaper_np", "cascade"]


def _tan_warp(freq_hz, sample_rate: float):
    if isinstance(freq_hz, torch.Tensor):
        return torch.tan(math.pi * freq_hz / sample_rate)
    return math.tan(math.pi * float(freq_hz) / sample_rate)


def highpass_coefficients(freq_hz, sample_rate: float):
    """First-order high-pass ``s / (s + wc)``: returns ``(b0, b1, a1)``.

    Args:
        freq_hz: -3 dB corner (float or 0-d tensor), below Nyquist.
        sample_rate: Hz.
    """
    k = _tan_warp(freq_hz, sample_rate)
    norm = 1.0 / (1.0 + k)
    return norm, -norm, (k - 1.0) * norm


def shelf_coefficients(freq_hz, gain_db, sample_rate: float):
    """First-order high shelf ``(G s + wc) / (s + wc)``: returns ``(b0, b1, a1)``.

    Args:
        freq_hz: pole frequency (float or 0-d tensor), below Nyquist.
        gain_db: high-frequency gain ``G`` in dB (0 dB: the identity).
        sample_rate: Hz.
    """
    k = _tan_warp(freq_hz, sample_rate)
    if isinstance(gain_db, torch.Tensor):
        g = torch.pow(10.0, gain_db / 20.0)
    else:
        g = 10.0 ** (float(gain_db) / 20.0)
    norm = 1.0 / (1.0 + k)
    return (g + k) * norm, (k - g) * norm, (k - 1.0) * norm


def cascade(*sections) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator (``a[0] = 1``) of first-order sections in series (floats)."""
    b, a = np.ones(1), np.ones(1)
    for b0, b1, a1 in sections:
        b = np.convolve(b, [float(b0), float(b1)])
        a = np.convolve(a, [1.0, float(a1)])
    return b, a


def fft_length(samples: int, tail: int = 0) -> int:
    """FFT size for :func:`fft_filter`: a fast size of at least ``samples + tail``.

    The first ``samples`` outputs of the circular convolution of a zero-padded signal
    with the aliased impulse response differ from the linear one only by the response
    beyond ``n_fft - samples >= tail`` samples, which is negligible by the choice of
    ``tail``; no more padding is needed (the FFT cost is about halved against padding
    by a whole frame).

    Args:
        samples: signal length.
        tail: impulse-response length beyond which the filter's response is negligible
            (see :func:`decay_samples`); the circular wrap of the FFT then stays below it.
    """
    import scipy.fft
    return scipy.fft.next_fast_len(samples + max(1, int(tail)), real=True)


def decay_samples(slowest_corner_hz: float, sample_rate: float) -> int:
    """Samples for a first-order section at ``slowest_corner_hz`` to decay by e^-40 (4e-18)."""
    return int(math.ceil(40.0 * sample_rate / (2.0 * math.pi * slowest_corner_hz)))


@functools.lru_cache(maxsize=8)
def unit_delay(n_fft: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """``e^{-jw}`` on the rfft grid of ``n_fft`` (cached: the fit asks for the same grid
    at every step).

    Shape:
        returns complex ``(n_fft // 2 + 1,)``; treat it as read-only.
    """
    w = torch.arange(n_fft // 2 + 1, dtype=dtype, device=device) * (2.0 * math.pi / n_fft)
    return torch.polar(torch.ones_like(w), -w)


def section_response(sections, n_fft: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Frequency response of first-order sections in series on the rfft grid.

    Args:
        sections: iterable of ``(b0, b1, a1)`` (floats or 0-d tensors).
        n_fft: FFT length.

    Shape:
        returns complex ``(n_fft // 2 + 1,)``.
    """
    zinv = unit_delay(n_fft, dtype, device)
    h = torch.ones_like(zinv)
    for b0, b1, a1 in sections:
        h = h * (b0 + b1 * zinv) / (1.0 + a1 * zinv)
    return h


def fft_filter(spectrum: torch.Tensor, response: torch.Tensor, samples: int, n_fft: int,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Filter signals given by their zero-padded rfft; returns the first ``samples``.

    Args:
        spectrum: ``torch.fft.rfft(x, n_fft)`` of the signals, complex ``(B, F)``.
        response: complex ``(F,)``, e.g. from :func:`section_response`.
        out: where to write them (a ``(B, samples)`` slot of a larger array), else a new array.

    Shape:
        returns real ``(B, samples)``.
    """
    padded = torch.fft.irfft(spectrum * response, n=n_fft)
    if out is not None:
        return out.copy_(padded[..., :samples])
    # a copy of the first samples: a view would keep the whole padded buffer alive (twice the memory)
    return padded[..., :samples].clone() if samples < n_fft else padded


def shaper(u: torch.Tensor, drive, asymmetry) -> torch.Tensor:
    """Tube stage ``T(u) + a T(u)^2``, ``T(u) = tanh(k u) / k`` (unity small-signal gain).

    Args:
        u: signal; drive ``k > 0`` and asymmetry ``a``: floats or 0-d tensors.

    Shape:
        same as ``u``.
    """
    t = torch.tanh(drive * u) / drive
    return t + asymmetry * t * t


def shaper_np(u: np.ndarray, drive: float, asymmetry: float) -> np.ndarray:
    """:func:`shaper` on numpy arrays (same formula)."""
    t = np.tanh(drive * u) / drive
    return t + asymmetry * t * t
