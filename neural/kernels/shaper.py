"""Compiled shaper of the audio path for streaming: the filter's whole input row in one call.

On a host block (up to 512 samples, no graph) :class:`neural.audio_path.AudioPath` runs its
filter as one matrix product ``[tail, s, h0] @ M``. Building that row in torch takes the
shaper's half a dozen elementwise operations and two concatenations; this kernel (numba,
compiled on first use and cached on disk) writes it in one call, with the torch path's
operations in its order and precision (``u + (u * u) * (a2 + a3 * u)``), so the row is
equal to the torch path's bit for bit. No gradient (see :mod:`neural.kernels.compiled`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .compiled import CompiledKernel

__all__ = ["KERNEL", "filter_row"]


def _build():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(u, a, shape, tail, h0, out):  # pragma: no cover - compiled
        batch, steps = u.shape
        lead = tail.shape[1]
        for i in range(batch):
            for k in range(lead):
                out[i, k] = tail[i, k]
            if shape:
                a2 = a[i, 0]
                a3 = a[i, 1]
                for t in range(steps):
                    v = u[i, t]
                    out[i, lead + t] = v + (v * v) * (a2 + a3 * v)
            else:
                for t in range(steps):
                    out[i, lead + t] = u[i, t]
            for k in range(h0.shape[1]):
                out[i, lead + steps + k] = h0[i, k]

    return kernel


def _check(kernel) -> None:
    out = torch.zeros(1, 4)
    kernel(torch.tensor([[2.0]]).numpy(), torch.tensor([[0.5, 0.25]]).numpy(), True,
           torch.tensor([[7.0]]).numpy(), torch.tensor([[1.0, 3.0]]).numpy(), out.numpy())
    if not torch.equal(out, torch.tensor([[7.0, 2.0 + 4.0 * (0.5 + 0.5), 1.0, 3.0]])):
        raise RuntimeError("compiled audio-path shaper gave a wrong result")


KERNEL = CompiledKernel(_build, _check)


def filter_row(u: Tensor, a: Tensor, shape: bool, tail: Tensor, h0: Tensor) -> Tensor:
    """``[tail, shaped u, h0]`` in one compiled call (no autograd, CPU).

    Args:
        u: the block. **Shape:** :math:`(B, T)`.
        a: the shaper's ``(a2, a3)`` per signal, in u's dtype (ignored when ``shape`` is False).
            **Shape:** :math:`(B, 2)`.
        shape: whether to apply the shaper.
        tail: the FIR's last inputs. **Shape:** :math:`(B, taps - 1)`.
        h0: the branches' states. **Shape:** :math:`(B, K)`.

    Returns:
        :math:`(B, taps - 1 + T + K)`.
    """
    out = u.new_empty(u.shape[0], tail.shape[1] + u.shape[1] + h0.shape[1])
    KERNEL(u.detach().numpy(), a.detach().numpy(), shape, tail.detach().numpy(), h0.detach().numpy(), out.numpy())
    return out
