"""Time-invariant complex diagonal recurrences (the LRU and S4D layers).

- :func:`scan_lti`: ``h_t = lambda * h_{t-1} + bu_t`` with a constant complex
  ``lambda``, differentiable and chunked: inside chunks of ``chunk`` samples the local
  states (from zero) come from a short loop over all chunks at once; the states
  carried from chunk to chunk follow ``H_j = lambda^chunk H_{j-1} + E_j``, solved by
  :func:`neural.kernels.scan.scan_parallel` in double precision, with the powers of
  lambda taken as ``exp(k log lambda)`` in double precision. Why: a float32 lambda
  near the unit circle is itself off by ~1e-7, and a rounded ``lambda^chunk`` applied
  thousands of times over a 20000-sample memory drifts by ~1e-4; in double the
  carries stay at float32 rounding.
- :func:`scan_complex_fused`: the same recurrence in a compiled loop (numba), the
  state accumulated in double precision (the LRU layer's streaming path).
- :func:`diagonal_ssm_fused`: the S4D layer's recurrence and read-out,
  ``h = Abar h + Bbar u``, ``y = Re(C2 h) + D u`` per channel and mode, in a
  compiled loop with the state in double precision.

The compiled loops compute no gradient (see :mod:`neural.kernels.compiled`).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .compiled import CompiledKernel
from .scan import scan_parallel

__all__ = ["scan_lti", "scan_complex_fused", "diagonal_ssm_fused", "complex_zeros", "COMPLEX_KERNEL", "SSM_KERNEL"]


def complex_zeros(real: Tensor, *shape: int) -> Tensor:
    """A zero complex state of ``shape``: complex128 beside float64 ``real``, else complex64, on its device."""
    dtype = torch.complex128 if real.dtype == torch.float64 else torch.complex64
    return torch.zeros(*shape, dtype=dtype, device=real.device)


def _build_complex():
    import numba
    import numpy as np

    @numba.njit(cache=True, nogil=True)
    def kernel(lam, bu, h, out):  # pragma: no cover - compiled
        batch, steps, states = bu.shape
        for i in range(batch):
            for n in range(states):
                a = lam[n]  # complex128
                hn = np.complex128(h[i, n])  # the state accumulates in double precision
                for t in range(steps):
                    hn = a * hn + bu[i, t, n]
                    out[i, t, n] = hn
                h[i, n] = hn

    return kernel


def _check_complex(kernel) -> None:
    lam = torch.tensor([0.5j], dtype=torch.complex128)
    bu = torch.ones(1, 2, 1, dtype=torch.complex64)
    h, out = torch.zeros(1, 1, dtype=torch.complex64), torch.zeros(1, 2, 1, dtype=torch.complex64)
    kernel(lam.numpy(), bu.numpy(), h.numpy(), out.numpy())
    if not torch.allclose(out.flatten(), torch.tensor([1.0, 1.0 + 0.5j], dtype=torch.complex64)):
        raise RuntimeError("the fused complex recurrence gave a wrong result")


def _build_ssm():
    import numba
    import numpy as np

    @numba.njit(cache=True, nogil=True)
    def kernel(u, abar, bbar, c2, skip, h, y):  # pragma: no cover - compiled
        batch, steps, channels = u.shape
        states = abar.shape[1]
        for i in range(batch):
            for d in range(channels):
                for t in range(steps):
                    y[i, t, d] = skip[d] * u[i, t, d]
                for n in range(states):
                    a, b, c = abar[d, n], bbar[d, n], c2[d, n]  # complex128
                    hn = np.complex128(h[i, d, n])  # the state accumulates in double precision
                    for t in range(steps):
                        hn = a * hn + b * u[i, t, d]
                        y[i, t, d] += (c * hn).real
                    h[i, d, n] = hn

    return kernel


def _check_ssm(kernel) -> None:
    u, y = torch.ones(1, 2, 1), torch.zeros(1, 2, 1)
    h = torch.zeros(1, 1, 1, dtype=torch.complex64)
    c = torch.full((1, 1), 0.5 + 0.0j, dtype=torch.complex128)
    kernel(u.numpy(), c.numpy(), (2 * c).numpy(), (2 * c).numpy(), torch.ones(1).numpy(), h.numpy(), y.numpy())
    if not torch.allclose(y.flatten(), torch.tensor([2.0, 2.5])):
        raise RuntimeError("the fused S4D recurrence gave a wrong result")


COMPLEX_KERNEL = CompiledKernel(_build_complex, _check_complex)
SSM_KERNEL = CompiledKernel(_build_ssm, _check_ssm)


def scan_complex_fused(log_lam: Tensor, bu: Tensor, h0: Tensor) -> Tuple[Tensor, Tensor]:
    """``h_t = exp(log_lam) * h_{t-1} + bu_t`` in a compiled loop (no autograd, CPU).

    lambda is taken in double precision and the state accumulates in double.

    Shape: log_lam :math:`(N,)`, bu :math:`(B, T, N)` complex, h0 :math:`(B, N)`;
    returns ``(h, h_last)`` like :func:`neural.kernels.scan.scan_parallel`.
    """
    lam = torch.exp(log_lam.detach().to(torch.complex128)).contiguous()
    bu = bu.detach().contiguous()
    h = h0.detach().to(bu.dtype).clone(memory_format=torch.contiguous_format)
    out = torch.empty_like(bu)
    COMPLEX_KERNEL(lam.numpy(), bu.numpy(), h.numpy(), out.numpy())
    return out, h


def diagonal_ssm_fused(u: Tensor, abar: Tensor, bbar: Tensor, c2: Tensor, skip: Tensor,
                       h0: Tensor) -> Tuple[Tensor, Tensor]:
    """The S4D recurrence and read-out in a compiled loop (no autograd, CPU).

    Args:
        u: input.
        abar, bbar: discretised state and input factors (complex128).
        c2: twice the read-out ``C`` (complex128).
        skip: the ``D`` skip weights.
        h0: state before the block (complex).

    Returns:
        ``(y, h_last)``.

    Shape: u, y :math:`(B, T, D)`; abar, bbar, c2 :math:`(D, N)`; skip :math:`(D,)`;
    h0, h_last :math:`(B, D, N)`.
    """
    u = u.detach().contiguous()
    h = h0.detach().clone(memory_format=torch.contiguous_format)
    y = torch.empty_like(u)
    SSM_KERNEL(u.numpy(), abar.numpy(), bbar.numpy(), c2.numpy(), skip.numpy(), h.numpy(), y.numpy())
    return y, h


def scan_lti(log_lam: Tensor, bu: Tensor, h0: Optional[Tensor] = None, chunk: int = 8) -> Tuple[Tensor, Tensor]:
    """``h_t = lambda * h_{t-1} + bu_t`` with a constant complex ``lambda = exp(log_lam)``.

    Differentiable; chunked (see the module doc): a loop of ``chunk`` steps inside
    the chunks, the carries between chunks in double precision.

    Args:
        log_lam: ``log lambda`` per mode (``Re < 0`` for a stable recurrence).
        bu: inputs (complex).
        h0: state before the first step; zeros when None.
        chunk: steps per chunk (>= 2).

    Returns:
        ``(h, h_last)``: every state and the final state (``h0`` when T = 0).

    Shape:
        - log_lam: :math:`(N,)`; bu, h: :math:`(B, T, N)`; h0, h_last: :math:`(B, N)`
    """
    batch, steps, states = bu.shape
    if h0 is None:
        h0 = bu.new_zeros(batch, states)
    if steps == 0:
        return bu.clone(), h0
    if chunk < 2:
        raise ValueError(f"chunk must be at least 2, got {chunk}")
    wide = torch.complex128
    log_lam = log_lam.to(wide)
    length = min(int(chunk), steps)
    n = -(-steps // length)
    if n * length > steps:  # zeros after the end change no state before it
        bu = torch.cat([bu, bu.new_zeros(batch, n * length - steps, states)], 1)
    lam = torch.exp(log_lam).to(bu.dtype)
    x = bu.view(batch, n, length, states).unbind(2)
    h = x[0]
    local = [h]
    for j in range(1, length):
        h = lam * h + x[j]
        local.append(h)
    local = torch.stack(local, 2)  # (B, n, L, N): states from zero inside each chunk
    carried = h0.to(wide).unsqueeze(1)  # the state entering each chunk
    if n > 1:
        decay = torch.exp(length * log_lam).expand(batch, n - 1, states)
        ends, _ = scan_parallel(decay, local[:, :-1, -1].to(wide), carried[:, 0])
        carried = torch.cat([carried, ends], 1)
    powers = torch.exp(torch.arange(1, length + 1, dtype=torch.float64, device=bu.device).unsqueeze(-1) * log_lam)
    out = local + (carried.unsqueeze(2) * powers).to(bu.dtype)
    out = out.view(batch, n * length, states)[:, :steps]
    return out, out[:, -1]
