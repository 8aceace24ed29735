"""Accuracy metrics, one signature for all: ``metric(prediction, target, sample_rate) -> float``.

- ``esr``: error-to-signal ratio after the pre-emphasis ``(1 - z^-1)/(1 - 0.995 z^-1)``,
  the standard sum of squared error over sum of squared target (not a per-sample mean);
- ``mae``: mean absolute error of the waveforms;
- ``stft``: multi-resolution STFT distance (auraloss defaults);
- ``lufs_diff``: absolute loudness difference in LU (pyloudnorm, ITU-R BS.1770).

Signals are 1-D numpy arrays at the same rate; ``skip`` leading samples (a
warm-up) can be left out of every metric.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

import scipy.signal

__all__ = ["POLE", "preemphasis_np", "pooled_error", "esr", "mae", "stft", "lufs_diff", "METRICS", "all_metrics"]


POLE = 0.995   # the pre-emphasis (1 - z^-1) / (1 - POLE z^-1) of the ESR and of the fit's loss


def preemphasis_np(x: np.ndarray, pole: float = POLE) -> np.ndarray:
    """The pre-emphasis on numpy arrays, along the last axis, from rest."""
    return scipy.signal.lfilter([1.0, -1.0], [1.0, -pole], x, axis=-1)


def pooled_error(pred: np.ndarray, target: np.ndarray, skip: int = 0) -> tuple[float, float]:
    """The two sums of the ESR: squared error of the pre-emphasised signals and energy of the
    pre-emphasised target (kept apart so that several files can be pooled)."""
    t = preemphasis_np(np.asarray(target, np.float64))[skip:]
    e = preemphasis_np(np.asarray(pred, np.float64))[skip:] - t
    return float(np.sum(e * e)), float(np.sum(t * t))


def esr(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    error, energy = pooled_error(pred, target, skip)
    return error / max(energy, 1e-20)


def mae(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64)[skip:] - np.asarray(target, np.float64)[skip:])))


_STFT = None


def stft(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    global _STFT
    if _STFT is None:
        import auraloss
        _STFT = auraloss.freq.MultiResolutionSTFTLoss()
    p = torch.as_tensor(np.asarray(pred, np.float32)[skip:]).view(1, 1, -1)
    t = torch.as_tensor(np.asarray(target, np.float32)[skip:]).view(1, 1, -1)
    with torch.no_grad():
        return float(_STFT(p, t))


def lufs_diff(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    import pyloudnorm
    meter = pyloudnorm.Meter(sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = meter.integrated_loudness(np.asarray(pred, np.float64)[skip:])
        b = meter.integrated_loudness(np.asarray(target, np.float64)[skip:])
    if not (math.isfinite(a) and math.isfinite(b)):
        return float("nan")
    return float(abs(a - b))


METRICS = {"esr": esr, "mae": mae, "stft": stft, "lufs_diff": lufs_diff}


def all_metrics(pred, target, sample_rate: int, skip: int = 0) -> dict[str, float]:
    return {name: fn(pred, target, sample_rate, skip) for name, fn in METRICS.items()}
