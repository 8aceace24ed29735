"""The differentiable feed-forward compressor, on torchcomp's ``compexp_gain``.

Peak detector ``|x|`` (clamped at 1e-8; a multichannel unit's linked detector where given), hard-knee static curve, one-pole
attack/release smoothing of the linear gain (attack while the gain falls), then
make-up gain. The expander is switched off by putting its threshold at -1000 dB.
"""
from __future__ import annotations

import torch
from torchcomp import compexp_gain, db2amp

__all__ = ["compressor_gain", "compress", "EXPANDER_OFF"]

PEAK_FLOOR = 1e-8
EXPANDER_OFF = {"exp_thresh": -1000.0, "exp_ratio": 0.5}


def compressor_gain(x: torch.Tensor, threshold_db, ratio, attack_coef, release_coef,
                    detector: torch.Tensor | None = None) -> torch.Tensor:
    """Smoothed linear gain (before make-up).

    Args:
        x: input signal.
        threshold_db, ratio, attack_coef, release_coef: scalars or ``(B,)`` tensors.
        detector: what the peak detector reads instead of ``x`` (a multichannel unit's
            linked detector, :attr:`audio.framing.Frames.detector`).

    Shape:
        x, detector: ``(B, T)``; returns ``(B, T)``.
    """
    level = (x if detector is None else detector).abs().clamp_min(PEAK_FLOOR)
    return compexp_gain(level, threshold_db, ratio, EXPANDER_OFF["exp_thresh"],
                        EXPANDER_OFF["exp_ratio"], attack_coef, release_coef)


def compress(x: torch.Tensor, natural: torch.Tensor, detector: torch.Tensor | None = None) -> torch.Tensor:
    """Compressor output from natural parameters.

    Args:
        x: input ``(B, T)``.
        natural: ``(5,)`` or ``(B, 5)``: threshold dB, ratio, attack coefficient,
            release coefficient, make-up dB (see :mod:`dsp.models.parameters`).
        detector: what the peak detector reads instead of ``x`` (see :func:`compressor_gain`).

    Shape:
        returns ``(B, T)``.
    """
    if natural.ndim == 1:
        natural = natural.unsqueeze(0).expand(x.shape[0], 5)
    g = compressor_gain(x, natural[:, 0], natural[:, 1], natural[:, 2], natural[:, 3], detector)
    return x * g * db2amp(natural[:, 4]).unsqueeze(1)
