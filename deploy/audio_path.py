"""A hybrid's audio-rate path (:class:`neural.audio_path.AudioPath`) as a streaming TorchScript module.

The path after the head's gain, per sample: a conditioned polynomial shaper
``s = u + u^2 (a2 + a3 u)`` with ``(a2, a3) = base + cond @ W`` (computed when the setting
changes), then the linear filter
``H(z) = sum_i h_i z^-i + sum_k c_k (1 - p_k) / (1 - p_k z^-1)`` (a short FIR plus real
one-pole branches), run in float64 as one matrix product per block with its state
(:class:`deploy.kernels.BlockLTI`): the state is the FIR's last ``taps - 1`` shaped
samples and one value per branch and channel. The filter is linear, so
``H(s) = H(u) + a2 H(u^2) + a3 H(u^3)``: the block ``[state, u, u^2, u^3]`` meets one matrix
that stacks the filter's input rows three times, scaled by 1, ``a2`` and ``a3`` (rebuilt
when the setting moves them), and shaper and filter are one product.

The poles are computed as the project's module computes them (float32, then widened), so
both filter the same poles.

Shape: u, y :math:`(C, T)` float32; cond :math:`(1, D)` or None.
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types

import math
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from deploy.kernels import BlockLTI, flush_interval

__all__ = ["ScriptAudioPath", "fir_branches_state_space"]

_SAMPLE_RATE = 44100   # neural.audio_path.SAMPLE_RATE: the poles' corners are learnt at this rate


def fir_branches_state_space(fir: Tensor, poles: Tensor, weights: Tensor):
    """``(A, B, C, D)`` of ``y[t] = sum_i fir[i] s[t - i] + sum_k w_k h_k[t]``, ``h_k[t] = p_k h_k[t-1] + s[t]``.

    States: ``s[t-1] .. s[t-taps+1]``, then each branch's ``h_k[t-1]``. All float64.
    """
    taps, k = fir.shape[0], poles.shape[0]
    order = taps - 1 + k
    a = torch.zeros(order, order, dtype=torch.float64)
    b = torch.zeros(order, dtype=torch.float64)
    c = torch.zeros(order, dtype=torch.float64)
    if taps > 1:
        b[0] = 1.0
        for i in range(1, taps - 1):
            a[i, i - 1] = 1.0            # the delay line moves on
        c[:taps - 1] = fir[1:]
    for j in range(k):
        a[taps - 1 + j, taps - 1 + j] = poles[j]
        b[taps - 1 + j] = 1.0
        c[taps - 1 + j] = weights[j] * poles[j]
    d = float(fir[0] + weights.sum())
    return a, b, c, d


class ScriptAudioPath(nn.Module):
    """:class:`neural.audio_path.AudioPath` from its weights, with its streaming state.

    Args:
        path: the trained :class:`neural.audio_path.AudioPath`.
    """

    stacked: Dict[int, Tensor]

    def __init__(self, path: nn.Module):
        super().__init__()
        self.stacked = {}   # block length -> the filter's matrix with its input rows for u, u^2, u^3
        self.use_shaper = bool(path.use_shaper)
        self.conditioned = self.use_shaper and path.shaper_cond is not None
        base = path.shaper_base.detach().clone() if self.use_shaper else torch.zeros(2)
        self.register_buffer("shaper_base", base.float())
        cond = path.shaper_cond.detach().clone() if self.conditioned else torch.zeros(0, 2)
        self.register_buffer("shaper_cond", cond.float())
        with torch.no_grad():
            p = torch.exp(-2 * math.pi / _SAMPLE_RATE * torch.exp(path.log_hz.float())).double()
            w = path.branch.detach().double() * (1 - p)
        a, b, c, d = fir_branches_state_space(path.fir.detach().double(), p, w)
        self.filter = BlockLTI()
        # a silence leaves each branch state to decay with its pole (the delay line holds zeros)
        self.filter.set_system(a, b, c, d, [float(v) for v in torch.cat([a.reshape(-1), b, c]).tolist()] + [d],
                               flush_interval([float(v) for v in p.tolist()]))
        self.a2 = math.nan
        self.a3 = math.nan
        self.configure(None)

    @torch.jit.export
    def reset(self) -> None:
        self.filter.reset()

    @torch.jit.export
    def configure(self, cond: Optional[Tensor]) -> None:
        """The shaper's ``(a2, a3)`` at ``cond`` (1, D) (float32, as the project's module)."""
        a = self.shaper_base.unsqueeze(0)
        if self.conditioned and cond is not None:
            a = a + cond @ self.shaper_cond
        a2, a3 = float(a[0, 0]), float(a[0, 1])
        if a2 != self.a2 or a3 != self.a3:
            self.a2 = a2
            self.a3 = a3
            self.stacked.clear()

    def _stacked(self, n: int) -> Tensor:
        m = self.stacked.get(n)
        if m is None:
            if len(self.stacked) >= 8:
                self.stacked.clear()
            base = self.filter.matrix(n)
            k = base.shape[0] - n
            rows = base.narrow(0, k, n)
            m = torch.cat([base, rows * self.a2, rows * self.a3], 0)
            self.stacked[n] = m
        return m

    def forward(self, u: Tensor) -> Tensor:
        """One block of the path. :math:`(C, T)` -> :math:`(C, T)`, float32 or float64."""
        n = u.shape[1]
        if n == 0:
            return u
        if not self.use_shaper:
            return self.filter(u).to(u.dtype)
        if self.filter.state.shape[0] != u.shape[0]:
            self.filter.state = torch.zeros(u.shape[0], self.filter.a.shape[0], dtype=torch.float64)
        if n <= self.filter.chunk:
            return self._piece(u).to(u.dtype)
        parts: List[Tensor] = []
        for piece in u.split(self.filter.chunk, 1):
            parts.append(self._piece(piece))
        return torch.cat(parts, 1).to(u.dtype)

    def _piece(self, u: Tensor) -> Tensor:
        n = u.shape[1]
        f = self.filter
        f.tick(n)
        uu = u * u
        y, f.state = torch.mm(torch.cat([f.state, u, uu, uu * u], 1), self._stacked(n)).split([n, f.a.shape[0]], 1)
        return y
