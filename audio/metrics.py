"""Accuracy metrics, one signature and one registry: ``metric(prediction, target, sample_rate, skip) -> float``.

Every metric is a function registered once (:func:`register_metric`) with its table label,
number format and one-line definition; the comparison's CSV, markdown and printed tables
read :data:`METRICS`, so a new metric is one function and one registration.
``docs/metrics.md`` gives each definition and its source. Signals are 1-D numpy arrays at
the same rate; the first ``skip`` samples (a warm-up) are left out.

**ESR, two estimators of one quantity.** ESR is the sum of squared error over the sum of
squared target after the pre-emphasis ``(1 - z^-1) / (1 - 0.995 z^-1)`` (not a per-sample
mean). Errors and energies of several takes are added before the ratio
(:class:`PooledESR`), never averaged as ratios:

- *fit ESR* (the fits' own figure, "ESR fitting audio" in summaries): the DSP objective's
  loss over its energy (:mod:`dsp.derivatives`) on 12 s frames, each rendered from rest
  with its first second unscored; the Val/Test columns of a fit's summary use it too;
- *Test ESR* (:func:`esr`, every comparison figure): the whole take rendered once, its
  state carried through, the first second (``skip``) unscored.

The two differ by the frames' restarts (a compressor's release spans the frame edges).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.signal
import torch

__all__ = ["POLE", "TEST_SKIP_S", "preemphasis_np", "Metric", "METRICS", "register_metric", "all_metrics",
           "squared_error_energy", "PooledESR", "esr", "mae", "stft", "lufs_diff"]

POLE = 0.995   # the pre-emphasis (1 - z^-1) / (1 - POLE z^-1) of the ESR and of the fit's loss
TEST_SKIP_S = 1.0   # the Test ESR's unscored warm-up at the start of a take (compare.py's skip_s)


def preemphasis_np(x: np.ndarray, pole: float = POLE) -> np.ndarray:
    """The pre-emphasis on numpy arrays, along the last axis, from rest."""
    return scipy.signal.lfilter([1.0, -1.0], [1.0, -pole], x, axis=-1)


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn(pred, target, sample_rate, skip) -> float``, lower is better.

    Attributes:
        name: the column name (``compare.csv``).
        label: the table header.
        fmt: the number format in tables (e.g. ``.4f``).
        definition: one line for people (``docs/metrics.md`` has the full one).
    """
    name: str
    label: str
    fmt: str
    definition: str
    fn: Callable[[np.ndarray, np.ndarray, int, int], float]


METRICS: dict[str, Metric] = {}


def register_metric(name: str, label: str, fmt: str, definition: str):
    """Decorator: register ``fn`` as the metric ``name`` (its column in every comparison table)."""
    def add(fn):
        METRICS[name] = Metric(name, label, fmt, definition, fn)
        return fn
    return add


def all_metrics(pred, target, sample_rate: int, skip: int = 0) -> dict[str, float]:
    """Every registered metric of ``pred`` against ``target``, by name."""
    return {name: m.fn(pred, target, sample_rate, skip) for name, m in METRICS.items()}


def squared_error_energy(pred: np.ndarray, target: np.ndarray, skip: int = 0) -> tuple[float, float]:
    """The two sums of the ESR: squared error of the pre-emphasised signals and energy of the
    pre-emphasised target, after ``skip`` samples (kept apart so that takes can be pooled)."""
    t = preemphasis_np(np.asarray(target, np.float64))[skip:]
    e = preemphasis_np(np.asarray(pred, np.float64))[skip:] - t
    return float(np.sum(e * e)), float(np.sum(t * t))


class PooledESR:
    """One ESR over several parts (takes, frames, settings): errors and energies add first."""

    def __init__(self):
        self.error = 0.0
        self.energy = 0.0

    def add(self, error: float, energy: float) -> "PooledESR":
        """A part's squared error and target energy (e.g. a fit objective's loss and energy)."""
        self.error += float(error)
        self.energy += float(energy)
        return self

    def add_signals(self, pred: np.ndarray, target: np.ndarray, skip: int = 0) -> "PooledESR":
        """A whole take, as :func:`esr` scores it."""
        return self.add(*squared_error_energy(pred, target, skip))

    @property
    def value(self) -> float | None:
        """The pooled ESR; None when no target energy was added."""
        return self.error / self.energy if self.energy > 0 else None


@register_metric("esr", "ESR", ".4f", "Test ESR: pre-emphasised squared error over target energy, whole take")
def esr(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    error, energy = squared_error_energy(pred, target, skip)
    return error / max(energy, 1e-20)


@register_metric("mae", "MAE", ".2e", "mean absolute error of the waveforms")
def mae(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64)[skip:] - np.asarray(target, np.float64)[skip:])))


_STFT = None


@register_metric("stft", "STFT", ".3f", "multi-resolution STFT distance (auraloss defaults)")
def stft(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    global _STFT
    if _STFT is None:
        import auraloss
        _STFT = auraloss.freq.MultiResolutionSTFTLoss()
    p = torch.as_tensor(np.asarray(pred, np.float32)[skip:]).view(1, 1, -1)
    t = torch.as_tensor(np.asarray(target, np.float32)[skip:]).view(1, 1, -1)
    with torch.no_grad():
        return float(_STFT(p, t))


@register_metric("lufs_diff", "|dLUFS|", ".2f", "absolute integrated-loudness difference, LU (ITU-R BS.1770)")
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
