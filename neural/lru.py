"""Linear recurrent unit (LRU) layers and the LRU backbone.

The LRU (Orvieto et al., "Resurrecting recurrent neural networks for long
sequences"): a linear recurrence with a complex diagonal state matrix,

    h_t = lambda * h_{t-1} + gamma * (B u_t),        y_t = Re(C h_t) + D * u_t

with ``lambda = exp(-exp(nu_log) + i exp(theta_log))`` (the exponential
parameterisation keeps ``|lambda| < 1`` whatever the optimiser does), the
normalisation ``gamma = sqrt(1 - |lambda|^2)`` (stored as ``gamma_log`` and
learnable, initialised to that value) so that white input gives a state of the
input's scale however close ``|lambda|`` is to 1, and the ring initialisation:
``|lambda|`` uniform on the ring ``[r_min, r_max]`` (uniform in area) and the phase
uniform in ``[0, max_phase]``. ``B`` (N x H) and ``C`` (H x N) are complex and dense,
``D`` is real.

For audio the ring sits close to 1: ``r_max = 0.99995`` is a time constant of 20000
samples (0.45 s at 44.1 kHz, an optical leveller's release), ``r_min = 0.9`` is 10
samples; ``max_phase = pi / 10`` keeps the modes below about 2 kHz.

Scan: the recurrence is time-invariant, so :func:`scan_lti` runs it chunk by chunk:
inside chunks of ``chunk`` samples the local states (from zero) come from a short
loop over all chunks at once; the states carried from chunk to chunk follow
``H_j = lambda^chunk H_{j-1} + E_j``, solved by :func:`neural.scan.scan_parallel`
(which handles complex tensors) in double precision, with the powers of lambda taken
as ``exp(k log lambda)`` in double precision. Why: a float32 lambda near the unit
circle is itself off by ~1e-7, and a rounded ``lambda^chunk`` applied thousands of
times over a 20000-sample memory drifts by ~1e-4; in double the carries stay at
float32 rounding (tests hold the scan against a sequential loop on 20k steps).
When no gradient is recorded (streaming, on CPU, with numba, ``fused=True``) a
compiled loop runs the recurrence instead, accumulating in double precision: a
streaming block then costs a few tensor operations rather than the ~40 of a scan.

Backbone (:class:`LRUModel`): the shared conditioned stack of :mod:`neural.models`
with ``LRU -> GELU`` as its sequence block, i.e. per layer
``LRU, GELU, FiLM(cond), GLU``, added to the layer input: the LRU paper's block
(LRU, GELU, GLU, residual) with the package's FiLM conditioning (no normalisation
layer, which keeps the model causal and stateless outside the recurrence).

Shape:
    - LRU layer: u, y :math:`(B, T, H)`; state :math:`(B, N)` complex
    - backbone: see :mod:`neural.models`
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import ConditionedStack
from .scan import scan_parallel

__all__ = ["LRULayer", "LRUBlock", "LRUModel", "scan_lti", "fused_available", "scan_complex_fused"]

_KERNEL = None
_AVAILABLE: Optional[bool] = None


def _build_kernel():
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


def fused_available() -> bool:
    """Whether the compiled complex recurrence can be used (numba importable and working)."""
    global _AVAILABLE, _KERNEL
    if _AVAILABLE is None:
        try:
            kernel = _build_kernel()
            lam = torch.tensor([0.5j], dtype=torch.complex128)
            bu = torch.ones(1, 2, 1, dtype=torch.complex64)
            h, out = torch.zeros(1, 1, dtype=torch.complex64), torch.zeros(1, 2, 1, dtype=torch.complex64)
            kernel(lam.numpy(), bu.numpy(), h.numpy(), out.numpy())
            if not torch.allclose(out.flatten(), torch.tensor([1.0, 1.0 + 0.5j], dtype=torch.complex64)):
                raise RuntimeError("the fused complex recurrence gave a wrong result")
            _KERNEL, _AVAILABLE = kernel, True
        except Exception:  # numba missing or broken: the torch path serves
            _AVAILABLE = False
    return _AVAILABLE


def scan_complex_fused(log_lam: Tensor, bu: Tensor, h0: Tensor) -> Tuple[Tensor, Tensor]:
    """``h_t = exp(log_lam) * h_{t-1} + bu_t`` in a compiled loop (no autograd, CPU).

    lambda is taken in double precision and the state accumulates in double.

    Shape: log_lam :math:`(N,)`, bu :math:`(B, T, N)` complex, h0 :math:`(B, N)`;
    returns ``(h, h_last)`` like :func:`neural.scan.scan_parallel`.
    """
    if not fused_available():
        raise RuntimeError("the fused complex recurrence needs numba")
    lam = torch.exp(log_lam.detach().to(torch.complex128)).contiguous()
    bu = bu.detach().contiguous()
    h = h0.detach().to(bu.dtype).clone(memory_format=torch.contiguous_format)
    out = torch.empty_like(bu)
    _KERNEL(lam.numpy(), bu.numpy(), h.numpy(), out.numpy())
    return out, h


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


class LRULayer(nn.Module):
    """Linear recurrent unit from ``width`` to ``width`` channels with ``state`` complex modes.

    Args:
        width: H, channels in and out.
        state: N, complex state size.
        r_min, r_max: ring of the initial ``|lambda|`` (0 <= r_min < r_max < 1).
        max_phase: initial phases are uniform in ``[0, max_phase]``.
        chunk: chunk length of :func:`scan_lti`.
        fused: run the compiled recurrence when no gradient is recorded (CPU, numba).

    ``forward(u, state=None) -> (y, state)``; ``state=None`` means silence before u.
    """

    def __init__(
        self,
        width: int,
        state: int = 16,
        r_min: float = 0.9,
        r_max: float = 0.99995,
        max_phase: float = math.pi / 10,
        chunk: int = 8,
        fused: bool = True,
    ):
        super().__init__()
        if min(width, state) < 1 or not 0 <= r_min < r_max < 1 or max_phase <= 0 or chunk < 2:
            raise ValueError("bad LRU sizes, ring or phase range")
        self.width, self.state, self.chunk, self.fused = width, state, int(chunk), fused
        # |lambda|^2 uniform in [r_min^2, r_max^2]; nu = -log|lambda|
        radius_sq = torch.rand(state) * (r_max**2 - r_min**2) + r_min**2
        nu = -0.5 * torch.log(radius_sq)
        theta = torch.rand(state).clamp_min(1e-3) * max_phase  # exp-parameterised: keep it > 0
        self.nu_log = nn.Parameter(torch.log(nu))
        self.theta_log = nn.Parameter(torch.log(theta))
        self.gamma_log = nn.Parameter(0.5 * torch.log(-torch.expm1(-2.0 * nu)))  # sqrt(1 - |lambda|^2)
        self.B = nn.Parameter(torch.randn(state, width, 2) / math.sqrt(2 * width))
        self.C = nn.Parameter(torch.randn(width, state, 2) / math.sqrt(state))
        self.D = nn.Parameter(torch.randn(width))

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero state (silence before the first block)."""
        dtype = torch.complex128 if self.D.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.state, dtype=dtype, device=self.D.device)

    def log_eigenvalues(self) -> Tensor:
        """``log lambda = -exp(nu_log) + i exp(theta_log)``, complex128 :math:`(N,)`."""
        return torch.complex(-torch.exp(self.nu_log.double()), torch.exp(self.theta_log.double()))

    def eigenvalues(self) -> Tensor:
        """``lambda``, complex :math:`(N,)` in the parameters' precision."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def _use_fused(self, u: Tensor) -> bool:
        if not self.fused or u.device.type != "cpu" or u.dtype not in (torch.float32, torch.float64):
            return False
        if torch.is_grad_enabled() and (u.requires_grad or any(p.requires_grad for p in self.parameters())):
            return False
        return fused_available()

    def forward(self, u: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        b, steps, _ = u.shape
        h0 = self.initial_state(b) if state is None else state
        if steps == 0:
            return u.clone(), h0
        # gamma * B u as one real matmul: rows (re, im) of every mode
        w_in = (self.B * torch.exp(self.gamma_log).view(-1, 1, 1)).permute(0, 2, 1).reshape(2 * self.state, self.width)
        bu = torch.view_as_complex(F.linear(u, w_in).unflatten(-1, (self.state, 2)))  # (B, T, N)
        if self._use_fused(u):
            h, h_last = scan_complex_fused(self.log_eigenvalues(), bu, h0)
        else:
            h, h_last = scan_lti(self.log_eigenvalues(), bu, h0, self.chunk)
        # Re(C h) = C_re h_re - C_im h_im, as one real matmul on (h_re, h_im) pairs
        sign = torch.tensor([1.0, -1.0], dtype=self.C.dtype, device=self.C.device)
        w_out = (self.C * sign).reshape(self.width, 2 * self.state)
        y = torch.addcmul(F.linear(torch.view_as_real(h).flatten(-2), w_out), u, self.D)
        return y, h_last


class LRUBlock(nn.Module):
    """``LRU -> GELU``, the sequence block of :class:`LRUModel`. Args: see :class:`LRULayer`."""

    def __init__(self, width: int, state: int = 16, r_min: float = 0.9, r_max: float = 0.99995,
                 max_phase: float = math.pi / 10, chunk: int = 8, fused: bool = True):
        super().__init__()
        self.lru = LRULayer(width, state, r_min, r_max, max_phase, chunk, fused)

    def initial_state(self, batch_size: int) -> Tensor:
        return self.lru.initial_state(batch_size)

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        y, state = self.lru(x, state)
        return F.gelu(y), state


class LRUModel(ConditionedStack):
    """Conditioned stack of LRU layers: per layer ``LRU, GELU, FiLM, GLU`` + residual.

    Args:
        in_features, out_features, cond_dim: see :class:`neural.models.ConditionedStack`.
        width: channels H.
        state: complex state size N per layer.
        layers: number of layers.
        r_min, r_max, max_phase: ring initialisation (see the module doc).
        chunk: chunk length of :func:`scan_lti`.
        film_hidden: hidden width of each FiLM MLP.
        fused: stream through the compiled recurrence when no gradient is recorded.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        width: int = 16,
        state: int = 16,
        layers: int = 2,
        r_min: float = 0.9,
        r_max: float = 0.99995,
        max_phase: float = math.pi / 10,
        chunk: int = 8,
        film_hidden: int = 16,
        fused: bool = True,
    ):
        blocks = [LRUBlock(width, state, r_min, r_max, max_phase, chunk, fused) for _ in range(max(layers, 0))]
        super().__init__(in_features, out_features, cond_dim, width, blocks, film_hidden)
