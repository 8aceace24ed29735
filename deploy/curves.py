"""A manifest device's knob curves (``method=joint``) as a TorchScript module: ``forward(x, knobs)``.

Evaluated as :meth:`dsp.knobs.knobcurves.KnobCurves.at` does: each solver coordinate is an
additive spline in the knobs (:class:`dsp.knobs.basis.KnobBasis`), here as the piecewise
polynomials scipy converts each knob's B-spline into at export time (each knob clamped to
its fitted interval), then the solver's logits map to physical units as
:class:`dsp.models.parameters.Parameterisation` does at the fit's sample rate. A setting
farther than ``far`` outside the fitted range is refused, as the knob table refuses it.

Shape: x :math:`(T,)` or :math:`(C, T)`; returns the same shape and dtype. Streaming:
consecutive calls continue the signal; ``reset()`` returns to silence.
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types

import math
from typing import List

import numpy as np
import torch
from scipy.interpolate import BSpline, PPoly
from torch import nn

from deploy.compressor import KnobTableCompressor, _StreamingDSP

__all__ = ["KnobCurvesModule", "KnobCurvesCompressor"]


def _pieces(low: float, high: float, size: int, coefficients: np.ndarray) -> tuple[list, list]:
    """Breakpoints and per-interval polynomial coefficients (highest power first) of one
    knob's spline for each of the five coordinates: ``(breaks, [coordinate][interval][power])``."""
    if size == 1 or not low < high:
        return [low, max(high, low)], [[[float(c)] for c in coefficients[0]]]
    degree = min(3, size - 1)
    interior = np.linspace(low, high, size - degree + 1)[1:-1]
    knots = np.concatenate([[low] * (degree + 1), interior, [high] * (degree + 1)])
    out = []
    breaks = None
    for p in range(coefficients.shape[1]):
        poly = PPoly.from_spline(BSpline(knots, coefficients[:, p], degree, extrapolate=False))
        keep = [i for i in range(len(poly.x) - 1) if poly.x[i + 1] > poly.x[i]]   # drop empty intervals
        breaks = [float(poly.x[i]) for i in keep] + [float(high)]
        out.append([[float(v) for v in poly.c[:, i]] for i in keep])
    return breaks, out


class KnobCurvesModule(nn.Module):
    """The five physical parameters of a set of knob curves at any knob vector.

    Args:
        curves: a :class:`dsp.knobs.knobcurves.KnobCurves`.
        far: the scaled distance outside the fitted range beyond which a setting is refused.
    """

    knobs: List[str]
    breaks: List[List[float]]
    polys: List[List[List[List[float]]]]
    lo: List[float]
    hi: List[float]
    scale: List[float]

    def __init__(self, curves, far: float):
        super().__init__()
        joint = curves.fit.curves
        basis, coef = joint.basis, np.asarray(joint.coefficients, dtype=np.float64)
        self.knobs = [str(k) for k in basis.names]
        self.breaks, self.polys = [], []
        at = 0
        for j, spline in enumerate(basis.splines):
            kept = spline.size if j == 0 else spline.size - 1
            block = coef[at:at + kept]
            at += kept
            if j > 0:   # the dropped first function's coefficient is 0 (KnobBasis)
                block = np.vstack([np.zeros((1, coef.shape[1])), block])
            breaks, polys = _pieces(spline.low, spline.high, spline.size, block)
            self.breaks.append(breaks)
            self.polys.append(polys)
        table = curves._range   # the fitted range, as KnobCurves.check reads it
        self.lo = [float(v) for v in table.lo]
        self.hi = [float(v) for v in table.hi]
        self.scale = [float(v) for v in table.scale]
        self.far = float(far)
        param = joint._param()
        self.ratio_lo, self.ratio_hi = float(param._ratio[0]), float(param._ratio[1])
        self.at_lo, self.at_hi = float(param._at[0]), float(param._at[1])
        self.rt_lo, self.rt_hi = float(param._rt[0]), float(param._rt[1])
        self.fit_rate = float(joint.sample_rate)

    @torch.jit.export
    def knob_names(self) -> List[str]:
        return self.knobs

    def _coordinate(self, j: int, value: float, p: int) -> float:
        breaks = self.breaks[j]
        q = min(max(value, breaks[0]), breaks[len(breaks) - 1])
        pieces = self.polys[j][p]
        i = 0
        while i < len(pieces) - 1 and q >= breaks[i + 1]:
            i += 1
        dx = q - breaks[i]
        total = 0.0
        for c in pieces[i]:
            total = total * dx + c
        return total

    def _ms(self, coefficient: float) -> float:
        return -2200.0 / (self.fit_rate * math.log1p(-coefficient))

    @torch.jit.export
    def parameters_at(self, knobs: List[float]) -> List[float]:
        """threshold_db, ratio, attack_ms, release_ms, make_up_db at a knob vector."""
        if len(knobs) != len(self.knobs):
            raise RuntimeError("expected one value per knob, in the order of knob_names()")
        for i in range(len(self.knobs)):
            if not math.isfinite(knobs[i]):
                raise RuntimeError("knob " + self.knobs[i] + " is not a finite number")
            excess = max(max(self.lo[i] - knobs[i], knobs[i] - self.hi[i]), 0.0) / self.scale[i]
            if excess > self.far:
                raise RuntimeError("knob " + self.knobs[i] + " lies far outside the fitted range")
        z: List[float] = [0.0, 0.0, 0.0, 0.0, 0.0]
        for j in range(len(self.knobs)):
            for p in range(5):
                z[p] += self._coordinate(j, knobs[j], p)
        sig: List[float] = [1.0 / (1.0 + math.exp(-z[p])) for p in range(1, 4)]
        ratio = self.ratio_lo + (self.ratio_hi - self.ratio_lo) * sig[0]
        attack = self._ms(self.at_lo + (self.at_hi - self.at_lo) * sig[1])
        release = self._ms(self.rt_lo + (self.rt_hi - self.rt_lo) * sig[2])
        return [z[0], ratio, attack, release, z[4]]


class KnobCurvesCompressor(KnobTableCompressor):
    """A manifest device's knob curves: ``forward(x, knobs)``, the knob values in the order
    of ``knob_names()``; the gain state carries over a change of setting (the knob table's
    module, with smooth curves in place of the nearest fitted setting).

    Args:
        curves: a :class:`dsp.knobs.knobcurves.KnobCurves`.
        far: :data:`dsp.knobs.knobtable.FAR`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    def __init__(self, curves, far: float, sample_rate: int):
        _StreamingDSP.__init__(self, sample_rate)
        self.curves = KnobCurvesModule(curves, far)
        self.setting = torch.jit.annotate(List[float], [])    # the knob values the compressor is prepared for
