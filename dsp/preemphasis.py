"""The loss pre-emphasis ``(1 - z^-1) / (1 - 0.995 z^-1)``, differentiable (torch) and plain (numpy)."""
from __future__ import annotations

import numpy as np
import scipy.signal
import torch
from torchlpc import sample_wise_lpc

__all__ = ["POLE", "preemphasis", "preemphasis_np"]

POLE = 0.995


def preemphasis(x: torch.Tensor, pole: float = POLE) -> torch.Tensor:
    """Apply the pre-emphasis along time, starting from rest.

    Shape: ``(B, T)`` -> ``(B, T)``.
    """
    diff = torch.cat([x[:, :1], x[:, 1:] - x[:, :-1]], dim=1)
    a = x.new_full((x.shape[0], x.shape[1], 1), -pole)
    return sample_wise_lpc(diff, a)


def preemphasis_np(x: np.ndarray, pole: float = POLE) -> np.ndarray:
    """Same filter on numpy arrays, along the last axis."""
    return scipy.signal.lfilter([1.0, -1.0], [1.0, -pole], x, axis=-1)
