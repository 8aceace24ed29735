"""The loss pre-emphasis ``(1 - z^-1) / (1 - 0.995 z^-1)``, differentiable (torch); the numpy form is
:func:`audio.metrics.preemphasis_np`, the metrics' filter."""
from __future__ import annotations

import torch
from torchlpc import sample_wise_lpc

from audio.metrics import POLE

__all__ = ["POLE", "preemphasis"]



def preemphasis(x: torch.Tensor, pole: float = POLE) -> torch.Tensor:
    """Apply the pre-emphasis along time, starting from rest.

    Shape: ``(B, T)`` -> ``(B, T)``.
    """
    diff = torch.cat([x[:, :1], x[:, 1:] - x[:, :-1]], dim=1)
    a = x.new_full((x.shape[0], x.shape[1], 1), -pole)
    return sample_wise_lpc(diff, a)


