"""Diagonal S4 (S4D) layers and the S4 compressor backbone.

The S4 compressor model (Yin et al., "Modeling analog dynamic range compressors using
deep learning and state-space models"): a linear input layer, then blocks of

    Linear -> PReLU -> S4D -> FiLM(control MLP(cond)) -> PReLU, added to the block input

and a linear output layer. One control MLP (Linear, SiLU, Linear) on the conditioning
vector gives every block's FiLM scale and shift (``y (1 + gamma) + beta``, the form of
:class:`neural.backbones.film.FiLM`).

The S4D layer (one independent linear time-invariant SSM per channel):

    h_t = Abar * h_{t-1} + Bbar * u_t,        y_t = 2 Re(C . h_t) + D u_t

with ``N`` complex modes per channel (``state``; the conjugate modes are implied by
the ``2 Re``), continuous ``A = -exp(A_re_log) + i A_im``, a learnable step
``dt = exp(log_dt)`` per channel (initialised log-uniformly in ``[dt_min, dt_max]``)
and zero-order-hold discretisation ``Abar = exp(dt A)``,
``Bbar = (Abar - 1) / A * B``. Initialisations of ``A`` (``init=``):

- ``"lin"`` (S4D-Lin): ``A_n = -1/2 + i pi n``
- ``"inv"`` (S4D-Inv): ``A_n = -1/2 + i (N / pi) (N / (2n + 1) - 1)``

``B`` starts at 1, ``C`` complex normal (variance 1), ``D`` normal.

Computation (offline and streaming alike): the signal is cut into chunks of
``chunk`` samples. Inside a chunk the output is a causal convolution with the SSM
kernel ``K_l = 2 Re(C Bbar Abar^l)`` (plus ``D`` at lag 0), one Toeplitz matmul for
all chunks at once; each chunk's contribution to the state at its end is a second
matmul; the states at the chunk ends follow ``H_j = Abar^chunk H_{j-1} + E_j``, a
short complex recurrence solved with :func:`neural.kernels.scan.scan_parallel` in double
precision (a float32 ``Abar^chunk`` applied thousands of times would drift on the
slow modes); the state entering every chunk adds ``2 Re(C Abar^(t+1) H)`` to its
outputs. A length that is not a multiple of ``chunk`` is padded with zeros at the
end (they change no earlier output) and the final state is taken from the state
entering the last chunk. This is the recurrent form evaluated chunk by chunk (powers
``Abar^l`` are taken as ``exp(l dt A)``, never by repeated multiplication), so a
signal run block by block gives the offline output (to float rounding) for any
block length.

Streaming (no autograd, CPU, numba available, ``fused=True``): the recurrence itself,
sample by sample, in one compiled loop per layer
(:func:`neural.kernels.lti.diagonal_ssm_fused`, compiled on first use and cached on disk; the state accumulates in double precision), which is what makes
short blocks cheap. Without autograd the discretised parameters and chunk matrices
are cached (revalidated against the parameters' values on every call).

Shape:
    - S4D layer: u, y :math:`(B, T, D)`; state :math:`(B, D, N)` complex
    - backbone: see :mod:`neural.backbones.base`
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.compiled import use_compiled
from ..kernels.lti import SSM_KERNEL, complex_zeros, diagonal_ssm_fused
from ..kernels.scan import scan_parallel
from .base import Backbone, register

__all__ = ["S4DLayer", "S4DBlock", "S4DModel", "ChannelPReLU"]

class ChannelPReLU(nn.Module):
    """PReLU with one slope per channel on the last axis (``torch.nn.PReLU`` uses axis 1).

    Shape: any :math:`(*, D)` -> the same.
    """

    def __init__(self, channels: int, init: float = 0.25):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x.movedim(-1, 1), self.weight).movedim(1, -1)


class S4DLayer(nn.Module):
    """Diagonal S4 over ``channels`` independent channels, ``state`` complex modes each.

    Args:
        channels: D, channels in and out.
        state: N, complex modes per channel.
        init: ``"lin"`` or ``"inv"`` (initial imaginary parts of A; see the module doc).
        dt_min, dt_max: range of the initial step sizes.
        chunk: chunk length L of the chunked computation (>= 1).
        fused: run the compiled recurrence when no gradient is recorded (CPU, numba).

    ``forward(u, state=None) -> (y, state)``; ``state=None`` means silence before u.
    """

    def __init__(self, channels: int, state: int = 4, init: str = "lin", dt_min: float = 1e-4, dt_max: float = 1e-1,
                 chunk: int = 64, fused: bool = True):
        super().__init__()
        if min(channels, state, chunk) < 1 or not 0 < dt_min <= dt_max:
            raise ValueError("bad S4D sizes or step range")
        n = torch.arange(state, dtype=torch.float32)
        if init == "lin":
            a_im = math.pi * n
        elif init == "inv":
            a_im = state / math.pi * (state / (2 * n + 1) - 1)
        else:
            raise ValueError(f"unknown S4D init {init!r}; choose 'lin' or 'inv'")
        self.channels, self.state, self.chunk, self.fused = channels, state, int(chunk), fused
        self.log_dt = nn.Parameter(torch.empty(channels).uniform_(math.log(dt_min), math.log(dt_max)))
        self.A_re_log = nn.Parameter(torch.full((channels, state), math.log(0.5)))
        self.A_im = nn.Parameter(a_im.repeat(channels, 1))
        self.B = nn.Parameter(torch.stack([torch.ones(channels, state), torch.zeros(channels, state)], -1))
        self.C = nn.Parameter(torch.randn(channels, state, 2) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(channels))
        self._cache: Dict[object, Tuple[Tensor, Dict[str, Tensor]]] = {}

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero state (silence before the first block)."""
        return complex_zeros(self.D, batch_size, self.channels, self.state)

    def discrete(self, dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """``(dt A, Bbar, C)`` as complex tensors, each :math:`(D, N)`.

        Args:
            dtype: real dtype to compute in (default: the parameters').
        """
        cast = (lambda p: p) if dtype is None else (lambda p: p.to(dtype))
        a = torch.complex(-torch.exp(cast(self.A_re_log)), cast(self.A_im))
        dta = torch.exp(cast(self.log_dt)).unsqueeze(-1) * a
        bbar = torch.expm1(dta) / a * torch.view_as_complex(cast(self.B))
        return dta, bbar, torch.view_as_complex(cast(self.C))

    def _build(self, length: int) -> Dict[str, Tensor]:
        """The matrices for chunks of ``length`` samples (see the module doc), channel first."""
        dta, bbar, c = self.discrete()
        d, n = dta.shape
        lags = torch.arange(length + 1, dtype=self.D.dtype, device=self.D.device)
        powers = torch.exp(dta.unsqueeze(-1) * lags)  # (D, N, L + 1): Abar^l
        kernel = 2.0 * ((c * bbar).unsqueeze(-1) * powers[..., :length]).real.sum(1)  # (D, L)
        kernel = torch.cat([kernel[:, :1] + self.D.unsqueeze(-1), kernel[:, 1:]], 1)
        t = torch.arange(length, device=self.D.device)
        lag = t - t.unsqueeze(1)  # (s, t) -> t - s
        conv = kernel[:, lag.clamp_min(0)] * (lag >= 0)  # (D, L_s, L_t)
        # the input at s reaches the state at the chunk's end as Abar^(L-1-s) Bbar
        to_state = torch.view_as_real(powers[..., :length].flip(-1) * bbar.unsqueeze(-1))  # (D, N, L, 2)
        # the incoming state h reaches the output at t as 2 Re(C Abar^(t+1) h)
        from_state = torch.view_as_real(2.0 * c.unsqueeze(-1) * powers[..., 1:])  # (D, N, L, 2)
        sign = torch.tensor([1.0, -1.0], dtype=from_state.dtype, device=from_state.device)
        return {
            "conv": conv.contiguous(),
            "to_state": to_state.permute(0, 2, 1, 3).reshape(d, length, 2 * n),  # (D, L, 2N)
            "from_state": (from_state * sign).permute(0, 1, 3, 2).reshape(d, 2 * n, length),  # (D, 2N, L)
            "powers": powers,  # (D, N, L + 1): Abar^l
            "decay": torch.exp(self.discrete(torch.float64)[0] * length),  # (D, N) complex128: Abar^L
        }

    def _recording(self) -> bool:
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())

    def _cached(self, key: object, build) -> Dict[str, Tensor]:
        """``build()``, cached while no graph is recorded and the parameters' values are unchanged."""
        if self._recording():
            self._cache.clear()
            return build()
        values = torch.cat([p.detach().reshape(-1) for p in self.parameters()])
        hit = self._cache.get(key)
        if hit is not None and hit[0].dtype == values.dtype and hit[0].device == values.device:
            if torch.equal(hit[0], values):
                return hit[1]
        if len(self._cache) > 8:
            self._cache.clear()
        value = build()
        self._cache[key] = (values, value)
        return value

    def _matrices(self, length: int) -> Dict[str, Tensor]:
        return self._cached(length, lambda: self._build(length))

    def _fused(self, u: Tensor, h0: Tensor) -> Tuple[Tensor, Tensor]:
        """The recurrence in the compiled loop: u (B, T, D), h0 (B, D, N) -> y, h_last."""

        def build():
            dta, bbar, c = self.discrete(torch.float64)
            return {"abar": torch.exp(dta), "bbar": bbar, "c2": 2.0 * c, "skip": self.D.detach().clone()}

        m = self._cached("fused", build)
        return diagonal_ssm_fused(u, m["abar"], m["bbar"], m["c2"], m["skip"], h0)

    def _chunks(self, u: Tensor, h0: Tensor, m: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
        """Chunks u (D, B, n, L) from state h0 (D, B, N) -> outputs (D, B, n, L) and the
        complex states entering every chunk (D, B, n, N), the last one's end state appended.

        Channel-first so that every product is one ``bmm`` over channels on contiguous operands.
        """
        d, b, n, length = u.shape
        flat = u.reshape(d, b * n, length)
        ends = torch.bmm(flat, m["to_state"])  # (D, B n, 2N): (re, im) of every mode
        # the carries from chunk to chunk in double precision (see the module doc)
        ends = torch.view_as_complex(ends.view(d * b, n, self.state, 2)).to(torch.complex128)  # (D B, n, N)
        decay = m["decay"].unsqueeze(1).expand(d, b, self.state).reshape(d * b, 1, self.state)
        h0 = h0.reshape(d * b, 1, self.state).to(torch.complex128)
        if n == 1:
            states = decay * h0 + ends
        else:
            states, _ = scan_parallel(decay.expand_as(ends), ends, h0.squeeze(1))
        states = torch.cat([h0, states], 1).to(m["powers"].dtype)  # (D B, n + 1, N): entering chunk j, then the end
        incoming = torch.view_as_real(states[:, :-1]).reshape(d, b * n, 2 * self.state)
        y = torch.baddbmm(torch.bmm(flat, m["conv"]), incoming, m["from_state"])
        return y.view(d, b, n, length), states.view(d, b, n + 1, self.state)

    def forward(self, u: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        b, steps, d = u.shape
        h = self.initial_state(b) if state is None else state
        if steps == 0:
            return u.clone(), h
        if use_compiled(self, u, self.fused, SSM_KERNEL):
            return self._fused(u, h)
        length = min(self.chunk, steps)
        n = -(-steps // length)
        rest = steps - (n - 1) * length  # valid samples in the last chunk
        uc = u.permute(2, 0, 1)  # (D, B, T)
        if rest < length:  # zeros after the end change no output before it
            uc = torch.cat([uc, uc.new_zeros(d, b, length - rest)], -1)
        m = self._matrices(length)
        y, states = self._chunks(uc.contiguous().view(d, b, n, length), h.transpose(0, 1), m)
        if rest == length:
            h = states[:, :, -1]
        else:  # the state after the last valid sample: from the state entering its chunk
            tail = torch.bmm(uc[..., steps - rest: steps].contiguous(), m["to_state"][:, length - rest:])
            h = m["powers"][..., rest].unsqueeze(1) * states[:, :, -2] + torch.view_as_complex(
                tail.view(d, b, self.state, 2)
            )
        y = y.view(d, b, n * length)[..., :steps]
        return y.permute(1, 2, 0), h.transpose(0, 1).contiguous()


class S4DBlock(nn.Module):
    """``Linear -> PReLU -> S4D`` on ``width`` channels (the sequence block of :class:`S4DModel`).

    Args: see :class:`S4DLayer` (``width`` = channels).
    """

    def __init__(self, width: int, state: int = 4, init: str = "lin", dt_min: float = 1e-4,
                 dt_max: float = 1e-1, chunk: int = 64, fused: bool = True):
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.act = ChannelPReLU(width)
        self.ssm = S4DLayer(width, state, init, dt_min, dt_max, chunk, fused)

    def initial_state(self, batch_size: int) -> Tensor:
        return self.ssm.initial_state(batch_size)

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        return self.ssm(self.act(self.proj(x)), state)


@register("s4d")
class S4DModel(Backbone):
    """The S4 compressor backbone: ``layers`` blocks of [Linear, PReLU, S4D, FiLM, PReLU] + residual.

    One control MLP (Linear, SiLU, Linear) maps the conditioning vector to the FiLM
    scales and shifts of every block at once (per-block linear heads on a shared
    hidden layer), ``y * (1 + gamma) + beta`` as in :class:`neural.backbones.film.FiLM`.
    Family signature: see :mod:`neural.backbones.base`; the state is one complex
    :math:`(B, width, N)` per block.

    Args:
        in_features, out_features, cond_dim: see :class:`neural.backbones.base.Backbone`.
        width: channels (the paper's best: 32; 16 keeps the default under 10k parameters).
        state: complex modes per channel (the paper: 4).
        layers: number of blocks (the paper: 4).
        init: ``"lin"`` or ``"inv"``.
        dt_min, dt_max: initial step-size range (time constants ``2 / dt`` samples for
            ``Re(A) = -1/2``: 20 to 20000 samples, 0.45 ms to 0.45 s at 44.1 kHz).
        chunk: chunk length of the chunked computation.
        film_hidden: hidden width of the control MLP.
        fused: stream through the compiled recurrence when no gradient is recorded.
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, width: int = 16, state: int = 4,
                 layers: int = 4, init: str = "lin", dt_min: float = 1e-4, dt_max: float = 1e-1, chunk: int = 64,
                 film_hidden: int = 16, fused: bool = True):
        super().__init__(in_features, out_features, cond_dim, width=width, layers=layers, film_hidden=film_hidden)
        self.width = width
        self.in_proj = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(S4DBlock(width, state, init, dt_min, dt_max, chunk, fused) for _ in range(layers))
        self.control = (
            nn.Sequential(nn.Linear(cond_dim, film_hidden), nn.SiLU(), nn.Linear(film_hidden, 2 * width * layers))
            if cond_dim > 0
            else None
        )
        self.acts = nn.ModuleList(ChannelPReLU(width) for _ in range(layers))
        self.out_proj = nn.Linear(width, out_features)

    def initial_state(self, batch_size: int) -> Tuple[Tensor, ...]:
        """Zero state for ``batch_size`` signals: one complex :math:`(B, width, N)` per block."""
        return tuple(block.initial_state(batch_size) for block in self.blocks)

    def _films(self, cond: Optional[Tensor]):
        """Per block ``(scale + 1, shift)`` broadcastable to (B, T, width); None without conditioning."""
        if self.control is None:
            return [None] * len(self.blocks)
        out = self.control(cond)
        if cond.dim() == 2:
            out = out.unsqueeze(1)
        scale, shift = out.unflatten(-1, (len(self.blocks), 2, self.width)).unbind(-2)
        return [(scale[..., i, :] + 1.0, shift[..., i, :]) for i in range(len(self.blocks))]

    def _run(self, x: Tensor, cond: Optional[Tensor], state: Optional[Tuple[Tensor, ...]]):
        h = self.in_proj(x)
        new_state = []
        for i, (block, act, film) in enumerate(zip(self.blocks, self.acts, self._films(cond))):
            y, s = block(h, None if state is None else state[i])
            if film is not None:
                y = torch.addcmul(film[1], y, film[0])
            h = h + act(y)
            new_state.append(s)
        return self.out_proj(h), tuple(new_state)
