"""Compiled selective scan for inference: recurrence and read-out fused in one loop.

On a streaming block of a few hundred samples the S6 block's cost is the number of
tensor operations, not arithmetic: the parallel scan (:mod:`neural.kernels.scan`) takes ~50
of them. This kernel (numba, compiled on first use and cached on disk) runs the
recurrence sample by sample and reads the output out on the fly, so the state
sequence is never materialised:

    h[t, d, n] = a[t, d, n] * h[t-1, d, n] + bu[t, d] * B[t, n]
    y[t, d]    = sum_n C[t, n] * h[t, d, n] + D[d] * u[t, d]

It computes no gradient: :class:`neural.backbones.s6.S6Block` uses it only when no graph is
recorded (``torch.no_grad`` / ``torch.inference_mode``) on CPU, and the torch path
(:func:`neural.kernels.scan.scan_parallel`) otherwise; the tests hold the two against each
other. Without numba, :func:`available` is False and the torch path is used.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .compiled import CompiledKernel

__all__ = ["KERNEL", "available", "selective_scan_fused"]


def _build():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(a, bu, B, C, u, D, h, y):  # pragma: no cover - compiled
        batch, steps, channels, states = a.shape
        for i in range(batch):
            for t in range(steps):
                for d in range(channels):
                    x = bu[i, t, d]
                    acc = 0.0
                    for n in range(states):
                        hn = a[i, t, d, n] * h[i, d, n] + x * B[i, t, n]
                        h[i, d, n] = hn
                        acc += hn * C[i, t, n]
                    y[i, t, d] = acc + D[d] * u[i, t, d]

    return kernel


def _check(kernel) -> None:
    """Compile for float32 with the layouts S6Block passes (B, C: strided views) and check."""
    a = torch.full((1, 2, 1, 1), 0.5)
    bc = torch.ones(1, 2, 2)
    u, h, y = torch.ones(1, 2, 1), torch.zeros(1, 1, 1), torch.zeros(1, 2, 1)
    kernel(a.numpy(), u.numpy(), bc[..., :1].numpy(), bc[..., 1:].numpy(), u.numpy(), torch.ones(1).numpy(),
           h.numpy(), y.numpy())
    if not torch.allclose(y.flatten(), torch.tensor([2.0, 2.5])):
        raise RuntimeError("fused selective scan gave a wrong result")


KERNEL = CompiledKernel(_build, _check)
available = KERNEL.available  # the first call compiles the kernel (about a second; cached on disk)


def selective_scan_fused(
    a: Tensor, bu: Tensor, B: Tensor, C: Tensor, u: Tensor, D: Tensor, h0: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor]:
    """Selective scan and read-out in one compiled loop (no autograd, CPU only).

    Args:
        a: discretised decays ``exp(delta * A)``.
        bu: ``delta * u``.
        B, C: input and output projections of the state, per sample.
        u: the block's signal branch (for the ``D`` skip).
        D: skip weights.
        h0: state before the block; zeros when None.

    Returns:
        ``(y, h_last)``.

    Shape:
        - a: :math:`(B, T, D_i, N)`; bu, u, y: :math:`(B, T, D_i)`;
          B, C: :math:`(B, T, N)`; D: :math:`(D_i)`; h0, h_last: :math:`(B, D_i, N)`
    """
    batch, _, channels, states = a.shape
    h = a.new_zeros(batch, channels, states) if h0 is None else h0.detach().clone(memory_format=torch.contiguous_format)
    y = torch.empty_like(u, memory_format=torch.contiguous_format)
    KERNEL(
        a.detach().numpy(), bu.detach().numpy(), B.detach().numpy(), C.detach().numpy(),
        u.detach().numpy(), D.detach().numpy(), h.numpy(), y.numpy(),
    )
    return y, h
