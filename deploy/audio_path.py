"""A hybrid's audio-rate path (:class:`neural.audio_path.AudioPath`) as a streaming TorchScript module.

The path after the head's gain, per sample: a conditioned polynomial shaper
``s = u + u^2 (a2 + a3 u)`` with ``(a2, a3) = base + cond @ W``, then the linear filter
``H(z) = sum_i h_i z^-i + sum_k c_k (1 - p_k) / (1 - p_k z^-1)`` (a short FIR plus real
one-pole branches). The project's module evaluates the filter as cached matrices or a
chunked scan; here, in float64, the FIR is one ``conv1d`` and the branches
``h_k[t] = p_k h_k[t-1] + s[t]`` run chunk-wise: inside each chunk of :data:`CHUNK`
samples from zero as one product with the powers of ``p`` (built once), then the true
states carried from chunk to chunk (``h = p^c h + local end``, a loop over the chunks
only). That streams at any block size with a state of the FIR's last ``taps - 1``
shaped samples and one value per branch and channel, at a few tensor operations per
chunk rather than per sample.

The poles are computed as the project's module computes them (float32, then widened), so
both filter the same poles.

Shape: u, y :math:`(C, T)` float32; cond :math:`(C, D)` or None.
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CHUNK", "ScriptAudioPath"]

CHUNK = 32   # samples per chunk of the branches' in-chunk product

_SAMPLE_RATE = 44100   # neural.audio_path.SAMPLE_RATE: the models run at this rate only


class ScriptAudioPath(nn.Module):
    """:class:`neural.audio_path.AudioPath` from its weights, with its streaming state.

    Args:
        path: the trained :class:`neural.audio_path.AudioPath`.
    """


    def __init__(self, path: nn.Module):
        super().__init__()
        self.use_shaper = bool(path.use_shaper)
        self.conditioned = self.use_shaper and path.shaper_cond is not None
        base = path.shaper_base.detach().clone() if self.use_shaper else torch.zeros(2)
        self.register_buffer("shaper_base", base.float())
        cond = path.shaper_cond.detach().clone() if self.conditioned else torch.zeros(0, 2)
        self.register_buffer("shaper_cond", cond.float())
        self.taps = int(path.fir_taps)
        self.register_buffer("fir_kernel", path.fir.detach().double().flip(0).reshape(1, 1, -1).clone())
        with torch.no_grad():
            p = torch.exp(-2 * math.pi / _SAMPLE_RATE * torch.exp(path.log_hz.float())).double()
            w = path.branch.detach().double() * (1 - p)
        self.poles = int(p.shape[0])
        self.register_buffer("weights", w.clone())                           # (K,): c_k (1 - p_k)
        lag = torch.arange(CHUNK, dtype=torch.float64)
        diff = lag[:, None] - lag[None, :]                                    # (t, j): t - j
        powers = torch.exp(diff.clamp_min(0)[..., None] * torch.log(p)) * (diff >= 0)[..., None]
        self.register_buffer("powers", powers)                                # (c, c, K): p^(t - j), t >= j
        self.register_buffer("lead", torch.exp((lag + 1)[:, None] * torch.log(p)))   # (c, K): p^(t + 1)
        self.register_buffer("tail", torch.zeros(0, self.taps - 1, dtype=torch.float64))
        self.register_buffer("branches", torch.zeros(0, self.poles, dtype=torch.float64))

    @torch.jit.export
    def reset(self) -> None:
        self.tail = torch.zeros(0, self.taps - 1, dtype=torch.float64)
        self.branches = torch.zeros(0, self.poles, dtype=torch.float64)

    def _shape(self, u: Tensor, cond: Optional[Tensor]) -> Tensor:
        a = self.shaper_base.unsqueeze(0)
        if self.conditioned and cond is not None:
            a = a + cond @ self.shaper_cond       # (C, 2)
        a = a.unsqueeze(1)                        # (C, 1, 2): constant over the block
        return u + u * u * (a[..., 0] + a[..., 1] * u)

    def _branches(self, s: Tensor) -> Tensor:
        """The one-pole branches' weighted sum for one block (advances their state).

        Shape: s :math:`(C, T)` float64, ``T >= 1`` -> :math:`(C, T)` float64.
        """
        channels, steps = s.shape[0], s.shape[1]
        c = min(self.powers.shape[0], steps)
        n = (steps + c - 1) // c
        chunks = F.pad(s, [0, n * c - steps]).reshape(channels, n, c)
        local = torch.einsum("bnj,tjk->bntk", chunks, self.powers[:c, :c])     # (C, n, c, K) from zero
        lead = self.lead[:c]
        decay = lead[c - 1]                                                   # p^c
        ends = local[:, :, c - 1]                                             # (C, n, K)
        h = self.branches
        incoming: List[Tensor] = []
        for j in range(n):
            incoming.append(h)
            h = torch.addcmul(ends[:, j], decay, h)
        states = local + lead * torch.stack(incoming, 1).unsqueeze(2)         # (C, n, c, K)
        states = states.reshape(channels, n * c, self.poles)[:, :steps]
        self.branches = states[:, steps - 1]
        return states @ self.weights

    def forward(self, u: Tensor, cond: Optional[Tensor]) -> Tensor:
        """One block of the path. :math:`(C, T)` float32 -> :math:`(C, T)` float32."""
        channels = u.shape[0]
        if self.tail.shape[0] != channels:
            self.tail = torch.zeros(channels, self.taps - 1, dtype=torch.float64)
            self.branches = torch.zeros(channels, self.poles, dtype=torch.float64)
        if u.shape[1] == 0:
            return u
        s = (self._shape(u, cond) if self.use_shaper else u).to(torch.float64)
        ext = torch.cat([self.tail, s], 1)
        self.tail = ext[:, ext.shape[1] - (self.taps - 1):]
        y = F.conv1d(ext.unsqueeze(1), self.fir_kernel).squeeze(1)
        if self.poles > 0:
            y = y + self._branches(s)
        return y.to(u.dtype)
