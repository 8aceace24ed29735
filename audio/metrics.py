"""Accuracy metrics, one signature and one registry: ``metric(prediction, target, sample_rate, skip) -> float``.

Every metric is a function registered once (:func:`register_metric`) with its table label,
number format and one-line definition; the comparison's CSV, markdown and printed tables
read :data:`METRICS`, so a new metric is one function and one registration.
``docs/metrics.md`` gives each definition and its source. Signals are 1-D numpy arrays at
the same rate; the first ``skip`` samples (a warm-up) are left out. A metric registered
with ``needs_input=True`` also takes the input signal (``input=``), e.g. to estimate a
gain from input to output (:func:`gr_trajectory`).

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
           "squared_error_energy", "PooledESR", "esr", "mae", "stft", "lufs_diff", "k_weighted",
           "loudness_ratio_lu", "loudness_dynamics", "gr_trajectory", "SHORT_TERM_S", "LONG_TERM_S"]

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
        needs_input: ``fn`` also takes the input signal as ``input=``.
    """
    name: str
    label: str
    fmt: str
    definition: str
    fn: Callable[..., float]
    needs_input: bool = False


METRICS: dict[str, Metric] = {}


def register_metric(name: str, label: str, fmt: str, definition: str, needs_input: bool = False):
    """Decorator: register ``fn`` as the metric ``name`` (its column in every comparison table);
    ``needs_input``: ``fn(pred, target, sample_rate, skip, input=x)`` also gets the input."""
    def add(fn):
        METRICS[name] = Metric(name, label, fmt, definition, fn, needs_input)
        return fn
    return add


def all_metrics(pred, target, sample_rate: int, skip: int = 0, input=None) -> dict[str, float]:
    """Every registered metric of ``pred`` against ``target``, by name; ``input`` (the signal
    both were made from) goes to the metrics that need it.

    Raises:
        ValueError: a metric needs the input and none was given.
    """
    out = {}
    for name, m in METRICS.items():
        if m.needs_input:
            if input is None:
                raise ValueError(f"metric {name} needs the input signal (input=)")
            out[name] = m.fn(pred, target, sample_rate, skip, input=input)
        else:
            out[name] = m.fn(pred, target, sample_rate, skip)
    return out


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


# --- loudness dynamics and gain trajectories ---------------------------------------------
SHORT_TERM_S = 0.05    # the loudness-dynamics windows: 50 ms short-term, 3 s long-term
LONG_TERM_S = 3.0
_HOP_S = 0.01          # one loudness value every 10 ms
_ABSOLUTE_GATE = -70.0  # LUFS: BS.1770's absolute gate; quieter short-term blocks are not scored


def k_weighted(z: np.ndarray, sample_rate: int) -> np.ndarray:
    """``z`` through the K-weighting of ITU-R BS.1770 (pyloudnorm's two stages: a +4 dB
    shelf above 1.5 kHz and a 38 Hz high-pass), from rest."""
    from pyloudnorm.iirfilter import IIRfilter
    out = np.asarray(z, np.float64)
    for stage in (IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf"),
                  IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")):
        out = scipy.signal.lfilter(stage.b, stage.a, out)
    return out


def _window_means(blocks: np.ndarray, size: int) -> np.ndarray:
    """Centred moving mean of ``size`` blocks, truncated (fewer blocks) at both ends."""
    c = np.concatenate([[0.0], np.cumsum(blocks)])
    i = np.arange(len(blocks))
    lo = np.clip(i - size // 2, 0, len(blocks))
    hi = np.clip(i - size // 2 + size, 0, len(blocks))
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)


def loudness_ratio_lu(z: np.ndarray, sample_rate: int, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Short-term over long-term loudness of ``z``, in LU, every 10 ms after ``skip`` samples.

    The K-weighted signal (:func:`k_weighted`, filtered from the first sample) is cut into
    10 ms blocks after ``skip``; around each block the mean square over 50 ms
    (:data:`SHORT_TERM_S`, 5 blocks) and over 3 s (:data:`LONG_TERM_S`, 300 blocks) are
    taken, both centred on the block and truncated at the ends of the scored span.

    Returns:
        ``(ratio_lu, short_term_lufs)``: ``10 log10(short / long)`` and the short-term
        loudness ``-0.691 + 10 log10(short)``, one value per block.
    """
    w = k_weighted(z, sample_rate)[skip:]
    hop = max(1, int(round(_HOP_S * sample_rate)))
    n = len(w) // hop
    blocks = (w[: n * hop] ** 2).reshape(n, hop).mean(axis=1) if n else np.zeros(0)
    short = _window_means(blocks, int(round(SHORT_TERM_S / _HOP_S)))
    long = _window_means(blocks, int(round(LONG_TERM_S / _HOP_S)))
    tiny = 1e-12   # -120 dB: a silent block has a finite, very low loudness
    return 10.0 * np.log10((short + tiny) / (long + tiny)), -0.691 + 10.0 * np.log10(short + tiny)


@register_metric("loudness_dynamics", "LD err LU", ".2f",
                 "loudness-dynamics error: mean |difference| of the 50 ms / 3 s loudness ratio, LU")
def loudness_dynamics(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0) -> float:
    """Mean absolute difference between the prediction's and the target's short-term to
    long-term loudness ratios (:func:`loudness_ratio_lu`), in LU, over the blocks whose
    target short-term loudness is at least -70 LUFS. A level offset cancels in each ratio,
    so it leaves this metric unchanged (it is |dLUFS|'s). NaN when no block is loud enough."""
    rp, _ = loudness_ratio_lu(pred, sample_rate, skip)
    rt, lt = loudness_ratio_lu(target, sample_rate, skip)
    scored = lt >= _ABSOLUTE_GATE
    if not np.any(scored):
        return float("nan")
    return float(np.mean(np.abs(rp[scored] - rt[scored])))


@register_metric("gr_trajectory", "GR traj dB", ".2f",
                 "gain-reduction trajectory error: RMS dB between the target's and the model's gain "
                 "traces (input to output, one estimator), their mean offset removed", needs_input=True)
def gr_trajectory(pred: np.ndarray, target: np.ndarray, sample_rate: int, skip: int = 0, *, input) -> float:
    """RMS in dB of the difference between the target's and the prediction's gain traces
    (:func:`audio.gain.gain_trace` from ``input`` to each, every 5 ms), over the frames after
    ``skip`` where the input is above the estimator's floor and steady (no jump of its level
    within +-20 ms, where delay reads as gain), after removing the mean of that difference:
    a constant level offset is |dLUFS|'s, not a dynamics error. NaN when no frame qualifies."""
    from audio.gain import gain_trace
    gt = gain_trace(input, target, sample_rate)
    gp = gain_trace(input, pred, sample_rate)
    d = gt.gain_db - gp.gain_db
    d = d[(gt.times_s >= skip / sample_rate) & gt.steady & np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))
