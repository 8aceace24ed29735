"""Compiled (numba) kernels of the streaming renderers: a whole block in one call.

A host-sized block (32 to 512 samples) costs the block renderers far more in Python and
library call overhead than in arithmetic: torchcomp's ``compressor_core`` is a parallel
numba kernel whose thread start costs milliseconds per call, and the static curve and
the gray-box's filters are a dozen small numpy/torch calls. These kernels do the same
arithmetic in one compiled call per block:

- :func:`compressor_gain`: peak level (the loudest channel when linked), the static curve
  ``10^(min(0, slope (threshold - 20 log10 level)) / 20)`` on the floored level, and the
  attack/release smoother ``g = g (1 - c) + c f`` with torchcomp's arithmetic, carrying
  the gain state;
- :func:`graybox_block`: the gray-box's input filter (a second-order section in transposed
  direct form II, as ``scipy.signal.lfilter`` runs it), the gain, the tube shaper and the
  output filter, carrying the filter states.

Both keep the renderers' operations in their order (the tests hold them against
torchcomp and scipy). Compiled on first use and cached on disk.

Denormals: in a long silence a filter state decays towards zero and would reach the
subnormal range, where every multiplication costs tens of times more (a block of silence
then cost twice a block of music); states below :data:`FLUSH` are set to zero at the end
of every block, as the exported modules do (``deploy.kernels.FLUSH``). Their share of
the output was below ``1e-200``.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["FLUSH", "flushed", "compressor_gain", "graybox_block"]

FLUSH = 1e-200   # states below this are zero at the end of a block (deploy.kernels.FLUSH)


@numba.njit(cache=True, nogil=True, inline="always")
def flushed(v):  # pragma: no cover - compiled
    """``v``, or 0 when it is below :data:`FLUSH` in magnitude (on its way to the subnormal range)."""
    return v if abs(v) >= FLUSH else 0.0


@numba.njit(cache=True, nogil=True)
def compressor_gain(x, linked, threshold, slope, at, rt, floor, state, out):  # pragma: no cover - compiled
    """The smoothed gain before make-up for one block; advances ``state``.

    Args:
        x: the block, ``(C, n)`` float64.
        linked: one detector on the loudest channel (``state`` and ``out`` have one row)
            or one per channel.
        threshold, slope: dB and ``1 - 1 / ratio``.
        at, rt: attack and release coefficients.
        floor: the peak floor (:data:`dsp.models.ff5.PEAK_FLOOR`).
        state: the gain after the previous block, ``(D,)`` float64 (updated).
        out: ``(D, n)`` float64, written.
    """
    channels, n = x.shape
    for d in range(state.shape[0]):
        g = state[d]
        for t in range(n):
            if linked:
                level = abs(x[0, t])
                for c in range(1, channels):
                    v = abs(x[c, t])
                    if v > level:
                        level = v
            else:
                level = abs(x[d, t])
            if level < floor:
                level = floor
            s = slope * (threshold - 20.0 * math.log10(level))
            if s > 0.0:
                s = 0.0
            f = 10.0 ** (s / 20.0)
            coeff = at if f < g else rt
            g *= 1.0 - coeff
            g += coeff * f
            out[d, t] = g
        state[d] = g


@numba.njit(cache=True, nogil=True)
def graybox_block(x, gain, b_in, a_in, z_in, drive, asymmetry, b_out, a_out, z_out, out):  # pragma: no cover
    """``Hout(S(gain Hin(x)))`` for one block; advances the filter states.

    Args:
        x: the block, ``(C, n)`` float64.
        gain: the compressor's gain, make-up included, ``(n,)`` float64.
        b_in, a_in: the input filter, second order (``a_in[0] = 1``).
        z_in: its state, ``(C, 2)`` (updated).
        drive, asymmetry: the tube shaper's ``T(v) + a T(v)^2``, ``T(v) = tanh(k v) / k``.
        b_out, a_out: the output filter, first order (``a_out[0] = 1``).
        z_out: its state, ``(C, 1)`` (updated; states below :data:`FLUSH` become 0).
        out: ``(C, n)`` float64, written.
    """
    channels, n = x.shape
    for c in range(channels):
        z0 = z_in[c, 0]
        z1 = z_in[c, 1]
        w = z_out[c, 0]
        for t in range(n):
            xv = x[c, t]
            u = z0 + b_in[0] * xv                    # lfilter's order of operations
            z0 = z1 + xv * b_in[1] - u * a_in[1]
            z1 = xv * b_in[2] - u * a_in[2]
            tube = math.tanh(drive * (u * gain[t])) / drive
            s = tube + asymmetry * tube * tube
            y = w + b_out[0] * s
            w = s * b_out[1] - y * a_out[1]
            out[c, t] = y
        z_in[c, 0] = flushed(z0)
        z_in[c, 1] = flushed(z1)
        z_out[c, 0] = flushed(w)
