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

Scan: the recurrence is time-invariant; with autograd (training) it runs chunk by
chunk with the carries in double precision (:func:`neural.kernels.lti.scan_lti`, held
against a sequential loop on 20k steps by the tests); when no gradient is recorded
(streaming, on CPU, with numba, ``fused=True``) a compiled loop runs it instead
(:func:`neural.kernels.lti.scan_complex_fused`): a streaming block then costs a few
tensor operations rather than the ~40 of a scan.

Backbone (:class:`LRUModel`): the shared conditioned stack of :mod:`neural.backbones.stack`
with ``LRU -> GELU`` as its sequence block, i.e. per layer
``LRU, GELU, FiLM(cond), GLU``, added to the layer input: the LRU paper's block
(LRU, GELU, GLU, residual) with the package's FiLM conditioning (no normalisation
layer, which keeps the model causal and stateless outside the recurrence).

Shape:
    - LRU layer: u, y :math:`(B, T, H)`; state :math:`(B, N)` complex
    - backbone: see :mod:`neural.backbones.base`
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import lru_stack
from ..kernels.compiled import use_compiled
from ..kernels.lti import COMPLEX_KERNEL, complex_zeros, scan_complex_fused, scan_lti
from .base import register
from .stack import ConditionedStack, kernel_array, per_layer

__all__ = ["LRULayer", "LRUBlock", "LRUModel"]


class LRULayer(nn.Module):
    """Linear recurrent unit from ``width`` to ``width`` channels with ``state`` complex modes.

    Args:
        width: H, channels in and out.
        state: N, complex state size.
        r_min, r_max: ring of the initial ``|lambda|`` (0 <= r_min < r_max < 1).
        max_phase: initial phases are uniform in ``[0, max_phase]``.
        chunk: chunk length of :func:`neural.kernels.lti.scan_lti`.
        fused: run the compiled recurrence when no gradient is recorded (CPU, numba).

    ``forward(u, state=None) -> (y, state)``; ``state=None`` means silence before u.
    """

    def __init__(self, width: int, state: int = 16, r_min: float = 0.9, r_max: float = 0.99995,
                 max_phase: float = math.pi / 10, chunk: int = 8, fused: bool = True):
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
        return complex_zeros(self.D, batch_size, self.state)

    def log_eigenvalues(self) -> Tensor:
        """``log lambda = -exp(nu_log) + i exp(theta_log)``, complex128 :math:`(N,)`."""
        return torch.complex(-torch.exp(self.nu_log.double()), torch.exp(self.theta_log.double()))

    def eigenvalues(self) -> Tensor:
        """``lambda``, complex :math:`(N,)` in the parameters' precision."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def input_matrix(self) -> Tensor:
        """``gamma * B`` as one real matrix :math:`(2N, H)`: the rows (re, im) of every mode."""
        return (self.B * torch.exp(self.gamma_log).view(-1, 1, 1)).permute(0, 2, 1).reshape(2 * self.state, self.width)

    def output_matrix(self) -> Tensor:
        """``Re(C h) = C_re h_re - C_im h_im`` as one real matrix :math:`(H, 2N)` on the (re, im) pairs."""
        sign = torch.tensor([1.0, -1.0], dtype=self.C.dtype, device=self.C.device)
        return (self.C * sign).reshape(self.width, 2 * self.state)

    def forward(self, u: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        b, steps, _ = u.shape
        h0 = self.initial_state(b) if state is None else state
        if steps == 0:
            return u.clone(), h0
        bu = torch.view_as_complex(F.linear(u, self.input_matrix()).unflatten(-1, (self.state, 2)))  # (B, T, N)
        if use_compiled(self, u, self.fused, COMPLEX_KERNEL):
            h, h_last = scan_complex_fused(self.log_eigenvalues(), bu, h0)
        else:
            h, h_last = scan_lti(self.log_eigenvalues(), bu, h0, self.chunk)
        y = torch.addcmul(F.linear(torch.view_as_real(h).flatten(-2), self.output_matrix()), u, self.D)
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


@register("lru")
class LRUModel(ConditionedStack):
    """Conditioned stack of LRU layers: per layer ``LRU, GELU, FiLM, GLU`` + residual.

    Args:
        in_features, out_features, cond_dim: see :class:`neural.backbones.stack.ConditionedStack`.
        width: channels H.
        state: complex state size N per layer.
        layers: number of layers.
        r_min, r_max, max_phase: ring initialisation (see the module doc).
        chunk: chunk length of :func:`neural.kernels.lti.scan_lti`.
        film_hidden: hidden width of each FiLM MLP.
        fused: stream through the compiled recurrence when no gradient is recorded.
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, width: int = 16, state: int = 16,
                 layers: int = 2, r_min: float = 0.9, r_max: float = 0.99995, max_phase: float = math.pi / 10,
                 chunk: int = 8, film_hidden: int = 16, fused: bool = True):
        blocks = [LRUBlock(width, state, r_min, r_max, max_phase, chunk, fused) for _ in range(max(layers, 0))]
        super().__init__(in_features, out_features, cond_dim, width, blocks, film_hidden)
        self.fused = fused

    def compiled_kernel(self):
        return (lru_stack.KERNEL, 6) if self.fused else None

    def kernel_state(self, state: Optional[Tuple], batch: int, dtype) -> Tuple[Tensor, Tensor]:
        """The states' real and imaginary parts, ``(layers, B, N)`` each (a layer's own is complex ``(B, N)``)."""
        if state is None:
            zeros = torch.zeros(len(self.blocks), batch, self.blocks[0].lru.state, dtype=dtype)
            return zeros, zeros.clone()
        stacked = torch.stack(list(state))
        return stacked.real.to(dtype), stacked.imag.to(dtype)

    def layer_states(self, first: Tensor, second: Tensor) -> Tuple:
        return tuple(torch.complex(re, im) for re, im in zip(first.unbind(0), second.unbind(0)))

    def _pack(self, dtype) -> tuple:
        """The kernel's weight arguments: input layer, the LRU layers (6 arrays with it, stacked on a
        first axis; lambda complex128), then (FiLM) GLUs and the output layer; projections transposed."""
        layers = [b.lru for b in self.blocks]

        def stack(get):
            return per_layer(layers, get, dtype)

        def own(t):
            return kernel_array(t, dtype)

        return (
            own(self.in_proj.weight.T), own(self.in_proj.bias),
            stack(lambda i, m: m.input_matrix().T),
            torch.stack([torch.exp(m.log_eigenvalues()).detach() for m in layers]).contiguous().numpy(),
            stack(lambda i, m: m.output_matrix().T),
            stack(lambda i, m: m.D),
            stack(lambda i, m: self.glus[i].proj.weight.T), stack(lambda i, m: self.glus[i].proj.bias),
            own(self.out_proj.weight), own(self.out_proj.bias),
        )
