"""What the end of a fit says besides its table: what each ESR is, what to doubt, where things are.

:func:`findings` reads a chain's or joint fit's summary rows and says, in a few lines:

- which ESR each column is (the fit's estimator, :mod:`audio.metrics`);
- every parameter that ended at an end of its range (:func:`dsp.fitting.bounds.at_bounds`),
  and every level whose Newton run did not converge;
- per mode, whether the threshold falls and the gain reduction grows with peak reduction
  (:func:`knob_shape`: Spearman's rank correlation over the fitted levels), as they must on a
  leveller whose knob is the sidechain gain.

Long lists become a count and a pointer to the file that holds them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from audio.material import synthesize
from dsp.fitting.bounds import at_bounds
from dsp.models.ff5_streaming import StreamingCompressor
from dsp.models.parameters import PARAM_NAMES

__all__ = ["ESR_LEGEND", "KnobShape", "knob_shape", "findings", "MONOTONE_RHO"]

ESR_LEGEND = ("ESR columns: the fit's estimator (pre-emphasised squared error over target energy on 12 s frames, "
              "each from rest with 1 s unscored) on the fitting audio (Train) and on each setting's Val and Test "
              "takes; compare.py's Test ESR scores whole takes")
MONOTONE_RHO = 0.8     # |Spearman rho| from which a curve counts as falling (or growing) with PR
MOST_LISTED = 6        # longer lists are a count and the file


@dataclass
class KnobShape:
    """How a mode's fitted parameters move with peak reduction."""
    mode: str
    levels: list[int]
    threshold_rho: float          # Spearman: threshold against PR (near -1: falls)
    gain_reduction_rho: float     # Spearman: gain reduction on program material against PR (near +1: grows)
    threshold_db: tuple[float, float]        # at the lowest and the highest level
    gain_reduction_db: tuple[float, float]

    @property
    def threshold_falls(self) -> bool:
        return self.threshold_rho <= -MONOTONE_RHO

    @property
    def gain_reduction_grows(self) -> bool:
        return self.gain_reduction_rho >= MONOTONE_RHO


def _gain_reduction_db(params: dict, x: np.ndarray, sample_rate: int) -> float:
    """The compressor's level drop before make-up on ``x``, dB (the gain on the peak level)."""
    g = StreamingCompressor({k: params[k] for k in PARAM_NAMES}, sample_rate).gain(x[None, :])
    return 10.0 * math.log10(float(np.sum(x * x)) / max(float(np.sum((g * x) ** 2)), 1e-30))


def _rho(a, b) -> float:
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def knob_shape(rows: list[dict], sample_rate: int = 44100, seconds: float = 6.0) -> list[KnobShape]:
    """Per mode with at least three fitted levels: the threshold's and the gain reduction's
    rank correlation with PR (gain reduction on ``seconds`` of synthesised program material)."""
    x = synthesize(seconds, sample_rate, seed=0).astype(np.float64)
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sel = sorted((r for r in rows if r["mode"] == mode and r.get("esr") is not None and not r.get("held_out")),
                     key=lambda r: int(r["peak_reduction"]))
        if len(sel) < 3:
            continue
        levels = [int(r["peak_reduction"]) for r in sel]
        thr = [float(r["threshold_db"]) for r in sel]
        gr = [_gain_reduction_db(r, x, sample_rate) for r in sel]
        out.append(KnobShape(mode, levels, _rho(levels, thr), _rho(levels, gr), (thr[0], thr[-1]), (gr[0], gr[-1])))
    return out


def _listed(items: list[str], what: str, where: str) -> str:
    if len(items) <= MOST_LISTED:
        return f"{what}: " + "; ".join(items)
    return f"{what}: {len(items)} levels (listed in {where})"


def findings(rows: list[dict], options, summary_file, sample_rate: int = 44100) -> list[str]:
    """The lines printed after a chain's table (see the module doc); each row gains
    ``at_bound`` (``name:lower|upper`` joined by spaces, for summary.csv)."""
    lines = [ESR_LEGEND + "."]
    bounded, unconverged = [], []
    for r in rows:
        if r.get("esr") is None or r.get("held_out"):
            r["at_bound"] = ""
            continue
        hits = at_bounds(r, options)
        r["at_bound"] = " ".join(f"{k}:{v}" for k, v in hits.items())
        label = f"{r['mode']} PR {r['peak_reduction']}"
        if hits:
            bounded.append(f"{label} " + ", ".join(f"{k} at its {v} bound ({float(r[k]):.4g})" for k, v in hits.items()))
        if not r.get("converged", True):
            unconverged.append(label)
    if bounded:
        lines.append(_listed(bounded, "warning: parameters at a range bound (the data wanted them further: the "
                                      "model is bending, or the range is too narrow)", f"{summary_file}, at_bound"))
    else:
        lines.append("no parameter ended at a range bound")
    if unconverged:
        lines.append(_listed(unconverged, "warning: not converged (best parameters kept)", f"{summary_file}"))
    for s in knob_shape(rows, sample_rate):
        thr = ("falls" if s.threshold_falls else "does NOT fall steadily") + f" with PR (Spearman rho {s.threshold_rho:+.2f}, " \
              f"{s.threshold_db[0]:.1f} -> {s.threshold_db[1]:.1f} dB over PR {s.levels[0]} -> {s.levels[-1]})"
        gr = ("grows" if s.gain_reduction_grows else "does NOT grow steadily") + \
             f" (rho {s.gain_reduction_rho:+.2f}, {s.gain_reduction_db[0]:.1f} -> {s.gain_reduction_db[1]:.1f} dB on " \
             "program material)"
        prefix = "" if s.threshold_falls and s.gain_reduction_grows else "warning: "
        lines.append(f"{prefix}{s.mode}: the threshold {thr}; the gain reduction {gr}")
    return lines
