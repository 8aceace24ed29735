"""Training losses, one signature: ``loss(prediction, target, warmup) -> (total, parts)``.

:class:`ESRLoss`: the error-to-signal ratio after the pre-emphasis
``(1 - z^-1) / (1 - 0.995 z^-1)`` (:func:`dsp.models.preemphasis.preemphasis`, differentiable),
pooled over the batch (sum of squared error over sum of squared target, as the test
metric pools over a file). :class:`HybridLoss`: ``esr_weight * ESR + stft_weight *
MR-STFT`` (``auraloss.freq.MultiResolutionSTFTLoss``: spectral convergence plus log
magnitude at three resolutions).

The pre-emphasis runs over the whole segment, warm-up included, so its own state has
settled where scoring starts; only samples from ``warmup`` on are scored.

Shape: prediction, target :math:`(B, T)`; warmup: an int < T.
"""
from __future__ import annotations

import auraloss
from torch import Tensor, nn

from dsp.models.preemphasis import preemphasis

__all__ = ["ESRLoss", "HybridLoss", "MIN_STFT_SAMPLES"]

MIN_STFT_SAMPLES = 2048  # the scored part must be longer than half the largest FFT (reflect padding)


class ESRLoss(nn.Module):
    """Pre-emphasised ESR over the scored part, pooled over the batch."""

    def forward(self, prediction: Tensor, target: Tensor, warmup: int = 0) -> tuple[Tensor, dict]:
        p = preemphasis(prediction)[:, warmup:]
        t = preemphasis(target)[:, warmup:]
        value = (p - t).square().sum() / t.square().sum().clamp_min(1e-12)
        return value, {"esr": value.detach()}


class HybridLoss(nn.Module):
    """``esr_weight * ESR + stft_weight * MR-STFT`` on the scored part.

    Args:
        esr_weight, stft_weight: weights (a zero weight skips that term).
        fft_sizes, hop_sizes, win_lengths: the STFT resolutions.
    """

    def __init__(self, esr_weight: float = 1.0, stft_weight: float = 0.01,
                 fft_sizes=(1024, 2048, 512), hop_sizes=(120, 240, 50), win_lengths=(600, 1200, 240)):
        super().__init__()
        self.esr_weight, self.stft_weight = float(esr_weight), float(stft_weight)
        self.esr = ESRLoss()
        self.stft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=list(fft_sizes), hop_sizes=list(hop_sizes), win_lengths=list(win_lengths))

    def forward(self, prediction: Tensor, target: Tensor, warmup: int = 0) -> tuple[Tensor, dict]:
        esr, parts = self.esr(prediction, target, warmup)
        total = self.esr_weight * esr
        if self.stft_weight:
            stft = self.stft(prediction[:, None, warmup:], target[:, None, warmup:])
            total = total + self.stft_weight * stft
            parts["stft"] = stft.detach()
        return total, parts
