"""The S6 (selective state space, Mamba-style) block.

Per sample: input projection to a signal branch ``u`` and a gate branch ``z``; causal
depthwise conv1d (width 4) over ``u`` then SiLU; input-dependent step
``delta = softplus(.)`` and input-dependent ``B``, ``C`` (linear maps of ``u``);
diagonal ``A = -exp(A_log)`` initialised to ``-(1, 2, ..., N)`` in every channel
(S4D-real); discretisation ``a = exp(delta * A)``, ``b = delta * B * u``; the selective
scan ``h_t = a_t h_{t-1} + b_t``; read-out ``y = C h + D u``; gating ``y * silu(z)``;
output projection.

The step-size bias is initialised so that ``delta`` spans ``dt_min`` to ``dt_max``
geometrically across channels: with ``A`` in ``-1..-N`` the state time constants then
run from about ``1 / (N dt_max)`` to ``1 / dt_min`` samples (2.5 to 10000 samples,
0.06 ms to 0.23 s at 44.1 kHz, for the defaults), the range of a compressor's attack
and release.

Scan: with autograd recording (training), :func:`neural.kernels.scan.scan_parallel`; without
(``torch.no_grad`` / ``torch.inference_mode``, CPU), the compiled fused kernel of
:mod:`neural.kernels.selective`, which is what makes short streaming blocks cheap.

Streaming: the block carries the last ``d_conv - 1`` conv inputs and the scan state;
running a signal block by block gives the offline output (to float rounding).

Backbone (:class:`S6Model`): the conditioned stack of :mod:`neural.backbones.stack`
with S6 blocks. Without a graph (CPU, cond constant over the block), a block of up to
:data:`neural.backbones.stack.COMPILED_STEPS` steps runs the whole stack in one compiled
call (:mod:`neural.kernels.s6_stack`): its weights are packed once and kept until they
change (their version counters), the FiLM scales and shifts kept for the last
conditioning vector, so a streaming block costs a handful of tensor operations instead
of ~40 per layer. Longer blocks (offline renders) take the torch path, faster there.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import s6_stack, selective
from ..kernels.compiled import use_compiled
from ..kernels.scan import scan_parallel
from .base import register
from .stack import ConditionedStack, kernel_array, per_layer

__all__ = ["S6Block", "S6Model"]

S6State = Tuple[Tensor, Tensor]


class S6Block(nn.Module):
    """Selective state-space block.

    Args:
        d_model: channels in and out.
        d_state: state size N per inner channel.
        expand: inner channels ``d_inner = expand * d_model``.
        d_conv: width of the causal depthwise convolution.
        dt_min, dt_max: range of the initial step sizes.
        chunk: chunk length of the parallel scan.
        fused: use the compiled kernel when no gradient is recorded (CPU, numba).

    ``forward(x, state=None) -> (y, state)``; ``state=None`` means silence before x.

    Shape:
        - x, y: :math:`(B, T, d_model)`
        - state: ``(conv_tail, h)`` with conv_tail :math:`(B, d_conv - 1, d_inner)`
          (the last conv inputs) and h :math:`(B, d_inner, N)` (the scan state)
    """

    def __init__(self, d_model: int, d_state: int = 4, expand: int = 1, d_conv: int = 4, dt_min: float = 1e-4,
                 dt_max: float = 1e-1, chunk: int = 8, fused: bool = True):
        super().__init__()
        if min(d_model, d_state, expand, d_conv) < 1 or not 0 < dt_min <= dt_max:
            raise ValueError("bad S6Block sizes or step range")
        d_inner = expand * d_model
        self.d_model, self.d_inner, self.d_state, self.d_conv = d_model, d_inner, d_state, d_conv
        self.chunk, self.fused = chunk, fused
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)  # rows: signal, gate
        bound = 1.0 / math.sqrt(d_conv)  # torch.nn.Conv1d's default init for fan-in d_conv
        self.conv_weight = nn.Parameter(torch.empty(d_inner, d_conv).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(d_inner).uniform_(-bound, bound))
        # rows: delta (full rank: the model is small), B, C
        self.x_proj = nn.Linear(d_inner, d_inner + 2 * d_state)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.register_buffer("_eye", torch.eye(d_inner).unsqueeze(-1), persistent=False)
        with torch.no_grad():
            dt = torch.logspace(math.log10(dt_min), math.log10(dt_max), d_inner)
            self.x_proj.bias[:d_inner] = dt + torch.log(-torch.expm1(-dt))  # softplus^-1(dt)
            self.x_proj.bias[d_inner:] = 0.0

    def initial_state(self, batch_size: int) -> S6State:
        """Zero state (silence before the first block)."""
        w = self.D
        return (
            w.new_zeros(batch_size, self.d_conv - 1, self.d_inner),
            w.new_zeros(batch_size, self.d_inner, self.d_state),
        )

    def _conv(self, u: Tensor, tail: Tensor) -> Tuple[Tensor, Tensor]:
        """Causal depthwise conv of u (B, T, d_inner) after tail (B, d_conv - 1, d_inner).

        The windows (B, T, d_inner * d_conv) meet a block-diagonal weight in one
        matmul: far fewer dispatches than ``conv1d`` on short streaming blocks.
        """
        steps = u.shape[1]
        u = torch.cat([tail, u], dim=1)
        new_tail = u[:, steps:]
        windows = u.unfold(1, self.d_conv, 1).reshape(u.shape[0], steps, self.d_inner * self.d_conv)
        weight = (self._eye * self.conv_weight).reshape(self.d_inner, self.d_inner * self.d_conv)
        return F.linear(windows, weight, self.conv_bias), new_tail

    def forward(self, x: Tensor, state: Optional[S6State] = None) -> Tuple[Tensor, S6State]:
        # row blocks of one weight, applied separately: contiguous outputs keep the
        # elementwise ops below on their fast paths
        d, n = self.d_inner, self.d_state
        w_in, w_x, b_x = self.in_proj.weight, self.x_proj.weight, self.x_proj.bias
        u, z = F.linear(x, w_in[:d]), F.linear(x, w_in[d:])  # (B, T, d_inner) each
        if state is None:
            tail, h0 = u.new_zeros(u.shape[0], self.d_conv - 1, d), None
        else:
            tail, h0 = state
        u, new_tail = self._conv(u, tail)
        u = F.silu(u)

        delta = F.softplus(F.linear(u, w_x[:d], b_x[:d]))  # (B, T, d_inner)
        B, C = F.linear(u, w_x[d:], b_x[d:]).split([n, n], dim=-1)  # (B, T, N) each
        a = torch.exp(delta.unsqueeze(-1) * -torch.exp(self.A_log))  # (B, T, d_inner, N)
        bu = delta * u
        if use_compiled(self, x, self.fused, selective.KERNEL):
            y, h_last = selective.selective_scan_fused(a, bu, B, C, u, self.D, h0)
        else:
            h, h_last = scan_parallel(a, bu.unsqueeze(-1) * B.unsqueeze(2), h0, self.chunk)
            y = torch.addcmul(torch.matmul(h, C.unsqueeze(-1)).squeeze(-1), u, self.D)
        return self.out_proj(y * F.silu(z)), (new_tail, h_last)


@register("s6")
class S6Model(ConditionedStack):
    """Conditioned stack of S6 blocks.

    Args:
        in_features, out_features, cond_dim: see :class:`neural.backbones.base.Backbone`.
        width: channels (d_model of each block).
        state: S6 state size N.
        layers: number of [S6, FiLM, GLU] layers.
        expand: inner channels per S6 block = expand * width.
        conv: width of the causal depthwise conv.
        film_hidden: hidden width of each FiLM MLP.
        dt_min, dt_max: initial step-size range (see the module doc).
        chunk: chunk length of the parallel scan.
        fused: use the compiled inference kernel when no gradient is recorded.
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, width: int = 16, state: int = 4,
                 layers: int = 1, expand: int = 1, conv: int = 4, film_hidden: int = 16, dt_min: float = 1e-4,
                 dt_max: float = 1e-1, chunk: int = 8, fused: bool = True):
        blocks = [S6Block(width, state, expand, conv, dt_min, dt_max, chunk, fused) for _ in range(layers)]
        super().__init__(in_features, out_features, cond_dim, width, blocks, film_hidden)
        self.fused = fused

    def compiled_kernel(self):
        return (s6_stack.KERNEL, 10) if self.fused else None

    def kernel_state(self, state: Optional[Tuple], batch: int, dtype) -> Tuple[Tensor, Tensor]:
        """(conv tails, scan states): ``(layers, B, d_conv - 1, d_inner)``, ``(layers, B, d_inner, N)``."""
        first = self.blocks[0]
        if state is None:
            return (torch.zeros(len(self.blocks), batch, first.d_conv - 1, first.d_inner, dtype=dtype),
                    torch.zeros(len(self.blocks), batch, first.d_inner, first.d_state, dtype=dtype))
        return torch.stack([s[0] for s in state]).to(dtype), torch.stack([s[1] for s in state]).to(dtype)

    def layer_states(self, first: Tensor, second: Tensor) -> Tuple:
        return tuple(zip(first.unbind(0), second.unbind(0)))

    def _pack(self, dtype) -> tuple:
        """The kernel's weight arguments in ``dtype``, per layer stacked on a first axis."""
        def stack(get):
            return per_layer(self.blocks, get, dtype)

        def own(t):
            return kernel_array(t, dtype)

        # the kernel's order: input layer, the S6 blocks (10 arrays); then (FiLM), GLUs, output layer
        # (the projections transposed: input index first)
        arrays = (
            own(self.in_proj.weight.T), own(self.in_proj.bias),
            stack(lambda i, b: b.in_proj.weight.T), stack(lambda i, b: b.conv_weight), stack(lambda i, b: b.conv_bias),
            stack(lambda i, b: b.x_proj.weight.T), stack(lambda i, b: b.x_proj.bias),
            stack(lambda i, b: -torch.exp(b.A_log)), stack(lambda i, b: b.D), stack(lambda i, b: b.out_proj.weight.T),
            stack(lambda i, b: self.glus[i].proj.weight.T),
            stack(lambda i, b: self.glus[i].proj.bias),
            own(self.out_proj.weight), own(self.out_proj.bias),
        )
        return arrays
