"""Compiled control-rate front and back end: frame level features and the per-sample ramp.

:func:`neural.control.frame_features` and :func:`neural.control.interpolate` take a dozen
tensor operations each; on a streaming block of a few frames that dispatch costs more
than the arithmetic. These kernels (numba, compiled on first use and cached on disk)
do the same in one call each, for inference (they compute no gradient; see
:mod:`neural.kernels.compiled`). Sums of squares are taken in double precision; the
ramp is computed with the torch path's roundings, so it is equal to it bit for bit.
The tests hold both against the torch path.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .compiled import CompiledKernel

__all__ = ["FEATURES_KERNEL", "RAMP_KERNEL", "frame_features_fused", "interpolate_fused"]


def _build_features():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(x, g, x_before, frame, floor, out):  # pragma: no cover - compiled
        batch, n = x.shape
        frames = n // frame
        with_g = out.shape[2] > 3
        for i in range(batch):
            prev = x_before[i, 0]
            for f in range(frames):
                sq = 0.0
                dsq = 0.0
                peak = 0.0
                for j in range(f * frame, (f + 1) * frame):
                    v = x[i, j]
                    sq += v * v
                    d = v - prev            # rounded as torch.diff rounds it
                    dsq += d * d
                    a = abs(v)
                    if a > peak:
                        peak = a
                    prev = v
                out[i, f, 0] = math.log10(max(math.sqrt(sq / frame), floor))
                out[i, f, 1] = math.log10(max(peak, floor))
                out[i, f, 2] = math.log10(max(math.sqrt(dsq / frame), floor))
                if with_g:
                    out[i, f, 3] = g[i, (f + 1) * frame - 1] * 0.05

    return kernel


def _check_features(kernel) -> None:
    x = torch.tensor([[0.5, -0.5, 0.0, 0.0]])
    out = torch.zeros(1, 2, 4)
    kernel(x.numpy(), torch.tensor([[-2.0, -4.0, -6.0, -8.0]]).numpy(), torch.tensor([[0.5]]).numpy(), 2, 1e-4,
           out.numpy())
    # frame 0: rms and peak 0.5, differences (0, -1); frame 1: silence (floored), differences (0.5, 0)
    expected = torch.tensor([[[math.log10(0.5), math.log10(0.5), math.log10(0.5 ** 0.5), -0.2],
                              [-4.0, -4.0, math.log10(0.125 ** 0.5), -0.4]]])
    if not torch.allclose(out, expected, atol=1e-6):
        raise RuntimeError("compiled frame features gave a wrong result")


def _build_ramp():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(c, ramp, start, out):  # pragma: no cover - compiled
        batch = c.shape[0]
        frame = ramp.shape[0]
        for i in range(batch):
            for k in range(out.shape[1]):
                s = start + k
                f = s // frame
                prev = c[i, f]
                out[i, k] = prev + (c[i, f + 1] - prev) * ramp[s - f * frame]

    return kernel


def _check_ramp(kernel) -> None:
    out = torch.zeros(1, 3)
    kernel(torch.tensor([[0.0, 1.0, 3.0]]).numpy(), torch.tensor([0.5, 1.0]).numpy(), 1, out.numpy())
    if not torch.equal(out, torch.tensor([[1.0, 2.0, 3.0]])):
        raise RuntimeError("compiled control-rate ramp gave a wrong result")


FEATURES_KERNEL = CompiledKernel(_build_features, _check_features)
RAMP_KERNEL = CompiledKernel(_build_ramp, _check_ramp)


def frame_features_fused(x: Tensor, g_dsp: Optional[Tensor], x_before: Tensor, frame: int, floor: float) -> Tensor:
    """:func:`neural.control.frame_features` in one compiled call (no autograd, CPU).

    Shape: x, g_dsp :math:`(B, F W)`, x_before :math:`(B, 1)` -> :math:`(B, F, 3)` or
    :math:`(B, F, 4)` with ``g_dsp``.
    """
    b, n = x.shape
    out = x.new_empty(b, n // frame, 3 if g_dsp is None else 4)
    g = x if g_dsp is None else g_dsp.to(x.dtype)
    FEATURES_KERNEL(x.detach().numpy(), g.detach().numpy(), x_before.detach().to(x.dtype).numpy(), frame,
                    floor, out.numpy())
    return out


_RAMPS: dict = {}


def interpolate_fused(c: Tensor, frame: int, start: int, stop: int) -> Tensor:
    """:func:`neural.control.interpolate` in one compiled call (no autograd, CPU).

    Shape: :math:`(B, F + 2)` -> :math:`(B, stop - start)`.
    """
    key = (frame, c.dtype)
    ramp = _RAMPS.get(key)
    if ramp is None:   # the torch path's ramp, rounded as it rounds it
        with torch.inference_mode(False):
            ramp = _RAMPS[key] = (torch.arange(1, frame + 1, dtype=c.dtype) / frame).numpy()
    out = c.new_empty(c.shape[0], stop - start)
    RAMP_KERNEL(c.detach().numpy(), ramp, start, out.numpy())
    return out
