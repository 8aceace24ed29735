"""A hybrid's audio-rate path (:class:`neural.audio_path.AudioPath`) as a streaming TorchScript module.

The path after the head's gain, per sample: a conditioned polynomial shaper
``s = u + u^2 (a2 + a3 u)`` with ``(a2, a3) = base + cond @ W``, then the linear filter
``H(z) = sum_i h_i z^-i + sum_k c_k (1 - p_k) / (1 - p_k z^-1)`` (a short FIR plus real
one-pole branches). The project's module evaluates the filter as cached matrices or a
chunked scan; here the FIR is one ``conv1d`` and the branches run as plain float loops
(float64), which streams at any block size with a state of the FIR's last ``taps - 1``
shaped samples and one value per branch and channel.

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

__all__ = ["ScriptAudioPath"]

_SAMPLE_RATE = 44100   # neural.audio_path.SAMPLE_RATE: the models run at this rate only


class ScriptAudioPath(nn.Module):
    """:class:`neural.audio_path.AudioPath` from its weights, with its streaming state.

    Args:
        path: the trained :class:`neural.audio_path.AudioPath`.
    """

    poles: List[float]
    weights: List[float]
    branches: List[List[float]]

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
        self.poles = [float(v) for v in p]
        self.weights = [float(v) for v in w]
        self.register_buffer("tail", torch.zeros(0, self.taps - 1, dtype=torch.float64))
        self.branches = []

    @torch.jit.export
    def reset(self) -> None:
        self.tail = torch.zeros(0, self.taps - 1, dtype=torch.float64)
        empty: List[List[float]] = []
        self.branches = empty

    def _shape(self, u: Tensor, cond: Optional[Tensor]) -> Tensor:
        a = self.shaper_base.unsqueeze(0)
        if self.conditioned and cond is not None:
            a = a + cond @ self.shaper_cond       # (C, 2)
        a = a.unsqueeze(1)                        # (C, 1, 2): constant over the block
        return u + u * u * (a[..., 0] + a[..., 1] * u)

    def _branches(self, s: Tensor) -> Tensor:
        """The one-pole branches' summed output for one block (advances their state). (C, T) float64."""
        rows: List[List[float]] = s.tolist()
        out: List[List[float]] = []
        k = len(self.poles)
        for c in range(len(rows)):
            h = self.branches[c]
            acc: List[float] = []
            for v in rows[c]:
                total = 0.0
                for i in range(k):
                    hi = self.poles[i] * h[i] + v
                    h[i] = hi
                    total += self.weights[i] * hi
                acc.append(total)
            out.append(acc)
        return torch.tensor(out, dtype=torch.float64).reshape(s.shape)

    def forward(self, u: Tensor, cond: Optional[Tensor]) -> Tensor:
        """One block of the path. :math:`(C, T)` float32 -> :math:`(C, T)` float32."""
        channels = u.shape[0]
        if self.tail.shape[0] != channels:
            self.tail = torch.zeros(channels, self.taps - 1, dtype=torch.float64)
            self.branches = [[0.0] * len(self.poles) for c in range(channels)]
        if u.shape[1] == 0:
            return u
        s = (self._shape(u, cond) if self.use_shaper else u).to(torch.float64)
        ext = torch.cat([self.tail, s], 1)
        self.tail = ext[:, ext.shape[1] - (self.taps - 1):]
        y = F.conv1d(ext.unsqueeze(1), self.fir_kernel).squeeze(1)
        if len(self.poles) > 0:
            y = y + self._branches(s)
        return y.to(u.dtype)
