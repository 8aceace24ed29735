"""Conditioning layers: FiLM (feature-wise linear modulation) and the gated linear unit.

As in the S6 optical-compressor models, every sequence block is followed by a FiLM
layer, whose scale and shift come from a small MLP on the conditioning vector (knobs
or fitted DSP parameters), and then by a GLU.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FiLM", "GLU"]


class FiLM(nn.Module):
    """``y = x * (1 + gamma(cond)) + beta(cond)``, gamma and beta per channel.

    A two-layer MLP (Linear, SiLU, Linear) maps the conditioning vector to gamma and
    beta; the scale is centred on 1 so that small weights mean a small modulation.
    With ``cond_dim = 0`` the layer is the identity and ``cond`` is ignored.

    Args:
        cond_dim: size C of the conditioning vector (0: unconditioned).
        channels: number of feature channels D that are modulated.
        hidden: width of the MLP's hidden layer.

    Shape:
        - x: :math:`(B, T, D)`
        - cond: :math:`(B, C)` (constant over the block) or :math:`(B, T, C)`
          (per sample), or None when ``cond_dim = 0``
        - output: :math:`(B, T, D)`
    """

    def __init__(self, cond_dim: int, channels: int, hidden: int = 16):
        super().__init__()
        if cond_dim < 0 or channels < 1 or hidden < 1:
            raise ValueError(f"bad FiLM sizes: cond_dim={cond_dim}, channels={channels}, hidden={hidden}")
        self.cond_dim = cond_dim
        self.channels = channels
        self.net = (
            nn.Sequential(nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, 2 * channels))
            if cond_dim > 0
            else None
        )

    def coefficients(self, cond: Tensor) -> Tuple[Tensor, Tensor]:
        """``(gamma, beta)`` for ``cond``: :math:`(B, D)` each for a :math:`(B, C)` cond, :math:`(B, T, D)`
        for a per-sample one. Needs ``cond_dim > 0``."""
        if cond is None or cond.shape[-1] != self.cond_dim:
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"FiLM expects cond of shape (B, {self.cond_dim}) or (B, T, {self.cond_dim}), got {got}")
        scale, shift = self.net(cond).chunk(2, dim=-1)
        return scale, shift

    def forward(self, x: Tensor, cond: Optional[Tensor]) -> Tensor:
        if self.net is None:
            return x
        scale, shift = self.coefficients(cond)
        if cond.dim() == 2:
            scale, shift = scale.unsqueeze(1), shift.unsqueeze(1)
        return torch.addcmul(shift, x, scale + 1.0)


class GLU(nn.Module):
    """Gated linear unit: ``Linear(D -> 2D)``, then ``value * sigmoid(gate)``.

    Args:
        channels: number of channels D in and out.

    Shape:
        - x: :math:`(B, T, D)`
        - output: :math:`(B, T, D)`
    """

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Linear(channels, 2 * channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.glu(self.proj(x), dim=-1)
