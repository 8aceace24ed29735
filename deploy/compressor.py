"""The fitted compressor as TorchScript modules: streaming, self-contained, no project imports at run time.

Everything here is written for ``torch.jit.script``: the saved file holds the code and
the fitted numbers, so a host with nothing but torch runs it. Semantics are those of
:class:`dsp.models.ff5_streaming.StreamingCompressor` (torchcomp's ``compexp_gain`` on the peak level
``|x|``, linked over channels, gain smoothing coefficient ``1 - exp(-2200 / (ms * sr))``,
attack while the gain falls, make-up after), computed in float64 like the renderer.

- :class:`PeakCompressor`: the per-sample recursion and its state (the last gain).
- :class:`KnobCurves`: a knob map's tables, evaluated inside the module exactly as
  :meth:`dsp.knobs.knobmap.KnobMap.at` does (threshold and make-up linear, ratio linear in
  log, attack and release by the monotone cubic (PCHIP) pieces in log-time, whose
  coefficients are computed by scipy at export time; the setting clipped to the fitted
  range).
- :class:`NearestSettings`: a knob table's fitted settings (a device with arbitrary
  knobs), answered as :meth:`dsp.knobs.knobtable.KnobTable.at` does: the nearest fitted
  setting in knob space scaled by each knob's fitted range; a setting far outside that
  range is refused.
- :class:`FixedCompressor`: a one-pair fit, ``forward(x)``.
- :class:`KnobMapCompressor`: a chain's knob map, ``forward(x, peak_reduction, mode)``.
- :class:`KnobTableCompressor`: a knob table, ``forward(x, knobs)`` with the knob
  values in the device's (the manifest's) knob order.

Shape (all ``forward``): x :math:`(T,)` or :math:`(C, T)`; returns the same shape and dtype.
Streaming: consecutive calls continue the signal; ``reset()`` returns to silence.
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types

import math
from typing import Dict, List, Union

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from torch import Tensor, nn

__all__ = ["PARAM_ORDER", "MODE_NAMES", "PeakCompressor", "KnobCurves", "NearestSettings", "FixedCompressor",
           "KnobMapCompressor", "KnobTableCompressor", "mode_index"]

PARAM_ORDER = ("threshold_db", "ratio", "attack_ms", "release_ms", "make_up_db")
MODE_NAMES = ("compress", "limit")   # mode input 0 and 1


def mode_index(mode: str) -> int:
    return MODE_NAMES.index(mode)


class PeakCompressor(nn.Module):
    """The gain computer and smoother with its state, at one sample rate.

    Args:
        sample_rate: Hz; the time constants in ms become coefficients at this rate.
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.state = 1.0  # the smoothed gain after the last sample (unity: silence before)

    @torch.jit.export
    def reset(self) -> None:
        self.state = 1.0

    def coefficient(self, ms: float) -> float:
        return 1.0 - math.exp(-2200.0 / (ms * float(self.sample_rate)))

    def gain(self, x: Tensor, params: List[float]) -> Tensor:
        """Smoothed linear gain before make-up for one block (advances the state).

        Args:
            x: the block, :math:`(C, T)` (linked detection: the louder channel drives the gain).
            params: threshold_db, ratio, attack_ms, release_ms, make_up_db.

        Returns:
            :math:`(T,)` float64.
        """
        level = x.abs().amax(0).to(torch.float64).clamp_min(1e-8)  # dsp.models.ff5.PEAK_FLOOR
        slope = 1.0 - 1.0 / params[1]
        static = torch.pow(10.0, torch.clamp(slope * (params[0] - 20.0 * torch.log10(level)), max=0.0) / 20.0)
        at = self.coefficient(params[2])
        rt = self.coefficient(params[3])
        target: List[float] = static.tolist()
        out: List[float] = []
        g = self.state
        for f in target:
            c = at if f < g else rt
            g = g * (1.0 - c)
            g = g + c * f
            out.append(g)
        self.state = g
        return torch.tensor(out, dtype=torch.float64)

    def compress(self, x: Tensor, params: List[float]) -> Tensor:
        """Compressed block, make-up included. Shape :math:`(C, T)` -> :math:`(C, T)`, dtype of x."""
        make_up = math.pow(10.0, params[4] / 20.0)
        g = self.gain(x, params) * make_up
        return (x.to(torch.float64) * g.unsqueeze(0)).to(x.dtype)


def _as_2d(x: Tensor) -> Tensor:
    if x.dim() == 1:
        return x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError("x must be (samples,) or (channels, samples)")
    return x


class _StreamingDSP(nn.Module):
    """What every exported DSP module shares: one :class:`PeakCompressor` whose state and
    rate ``reset`` and ``set_sample_rate`` manage."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.comp = PeakCompressor(sample_rate)

    @torch.jit.export
    def reset(self) -> None:
        self.comp.reset()

    @torch.jit.export
    def set_sample_rate(self, sample_rate: int) -> None:
        self.comp.sample_rate = sample_rate


class FixedCompressor(_StreamingDSP):
    """A one-pair fit: five fixed parameters. ``forward(x)``; ``reset()``.

    Args:
        params: physical parameters (threshold_db, ratio, attack_ms, release_ms, make_up_db).
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    params: List[float]

    def __init__(self, params: Dict[str, float], sample_rate: int):
        super().__init__(sample_rate)
        self.params = [float(params[k]) for k in PARAM_ORDER]

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.params

    def forward(self, x: Tensor) -> Tensor:
        y = self.comp.compress(_as_2d(x), self.params)
        return y.reshape(x.shape)


def _setting(value: Union[float, int, Tensor]) -> float:
    """A knob value given as a float, an int or a tensor (its first element)."""
    if isinstance(value, Tensor):
        return float(value.reshape(-1)[0].item())
    if isinstance(value, int):
        return float(value)
    return value


def _mode_slot(value: float) -> int:
    return 1 if value >= 0.5 else 0


class KnobCurves(nn.Module):
    """A knob map's tables for the modes it has, evaluated at any peak reduction.

    Args:
        table: ``{mode: {pr: {param: value}}}`` (:attr:`dsp.knobs.knobmap.KnobMap.table`).
    """

    has_mode: List[bool]
    levels: List[List[float]]
    linear: List[List[List[float]]]
    cubic: List[List[List[List[float]]]]

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]]):
        super().__init__()
        self.has_mode: List[bool] = [m in table for m in MODE_NAMES]
        # per mode slot: knob positions, linear columns, and the PCHIP pieces of log attack/release
        self.levels: List[List[float]] = []
        self.linear: List[List[List[float]]] = []     # threshold_db, log ratio, make_up_db
        self.cubic: List[List[List[List[float]]]] = []  # [param][interval] -> 4 coefficients
        for mode in MODE_NAMES:
            levels = dict(sorted(table.get(mode, {}).items()))
            pr = [float(p) for p in levels]
            rows = list(levels.values())
            self.levels.append(pr)
            self.linear.append([[r["threshold_db"] for r in rows], [math.log(r["ratio"]) for r in rows],
                                [r["make_up_db"] for r in rows]])
            pieces: List[List[List[float]]] = []
            for name in ("attack_ms", "release_ms"):
                logs = np.log([r[name] for r in rows])
                if len(pr) >= 2:
                    coef = PchipInterpolator(np.asarray(pr), logs).c  # (4, intervals), highest power first
                    pieces.append([[float(v) for v in coef[:, i]] for i in range(coef.shape[1])])
                else:
                    pieces.append([[0.0, 0.0, 0.0, float(v)] for v in logs])
            self.cubic.append(pieces)

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        """threshold_db, ratio, attack_ms, release_ms, make_up_db at a setting.

        The setting is clipped to the fitted range of the mode (end values held).
        """
        if mode < 0 or mode > 1 or not self.has_mode[mode]:
            raise RuntimeError("the knob map has no such mode (0 compress, 1 limit)")
        pr = self.levels[mode]
        n = len(pr)
        if n == 1:
            lin = self.linear[mode]
            cub = self.cubic[mode]
            return [lin[0][0], math.exp(lin[1][0]), math.exp(cub[0][0][3]), math.exp(cub[1][0][3]), lin[2][0]]
        q = min(max(peak_reduction, pr[0]), pr[n - 1])
        i = 0
        while i < n - 2 and q > pr[i + 1]:
            i += 1
        width = pr[i + 1] - pr[i]
        dx = q - pr[i]
        values: List[float] = []
        for col in self.linear[mode]:
            values.append((col[i + 1] - col[i]) / width * dx + col[i])
        timing: List[float] = []
        for pieces in self.cubic[mode]:
            c = pieces[i]
            timing.append(math.exp(((c[0] * dx + c[1]) * dx + c[2]) * dx + c[3]))
        return [values[0], math.exp(values[1]), timing[0], timing[1], values[2]]


class KnobMapCompressor(_StreamingDSP):
    """A chain's knob map: ``forward(x, peak_reduction, mode)`` with mode 0 compress, 1 limit.

    The knobs may be floats, ints or one-element tensors; ``mode`` at or above 0.5 is limit. The gain state
    carries over a change of setting, as turning the knob of a running unit would.

    Args:
        table: ``{mode: {pr: {param: value}}}``.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]], sample_rate: int):
        super().__init__(sample_rate)
        self.curves = KnobCurves(table)

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.curves.parameters_at(peak_reduction, mode)

    def forward(self, x: Tensor, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> Tensor:
        params = self.curves.parameters_at(_setting(peak_reduction), _mode_slot(_setting(mode)))
        y = self.comp.compress(_as_2d(x), params)
        return y.reshape(x.shape)


class NearestSettings(nn.Module):
    """A knob table's fitted settings and parameters, answered at the nearest fitted setting.

    Distances are Euclidean over the knobs, each scaled by its range over the fitted
    settings (``KnobTable.scale``); a knob more than ``far`` scaled units outside its
    fitted range is an error, as in :meth:`dsp.knobs.knobtable.KnobTable.check`.

    Args:
        knobs: the knob names, in the device's order.
        points: the fitted settings' knob values, in that order.
        params: each fitted setting's parameters ``{param: value}``.
        scale: per knob, the distance unit.
        far: the scaled distance outside the fitted range beyond which a setting is refused.
    """

    knobs: List[str]
    points: List[List[float]]
    params: List[List[float]]
    lo: List[float]
    hi: List[float]
    scale: List[float]

    def __init__(self, knobs: List[str], points: List[List[float]], params: List[Dict[str, float]],
                 scale: List[float], far: float):
        super().__init__()
        self.knobs = [str(k) for k in knobs]
        self.points = [[float(v) for v in p] for p in points]
        self.params = [[float(p[k]) for k in PARAM_ORDER] for p in params]
        self.lo = [min(p[i] for p in self.points) for i in range(len(self.knobs))]
        self.hi = [max(p[i] for p in self.points) for i in range(len(self.knobs))]
        self.scale = [float(v) for v in scale]
        self.far = float(far)

    @torch.jit.export
    def knob_names(self) -> List[str]:
        return self.knobs

    @torch.jit.export
    def parameters_at(self, knobs: List[float]) -> List[float]:
        """threshold_db, ratio, attack_ms, release_ms, make_up_db of the nearest fitted setting."""
        if len(knobs) != len(self.knobs):
            raise RuntimeError("expected one value per knob, in the order of knob_names()")
        for i in range(len(self.knobs)):
            excess = max(max(self.lo[i] - knobs[i], knobs[i] - self.hi[i]), 0.0) / self.scale[i]
            if excess > self.far:
                raise RuntimeError("knob " + self.knobs[i] + " lies far outside the fitted range "
                                   "(no fitted setting near it)")
        best = 0
        best_d = math.inf
        for j in range(len(self.points)):
            p = self.points[j]
            total = 0.0
            for i in range(len(self.knobs)):
                d = (p[i] - knobs[i]) / self.scale[i]
                total += d * d
            dist = math.sqrt(total)
            if dist < best_d:  # the first of equal distances, as numpy's argmin
                best_d = dist
                best = j
        return self.params[best]


def _knob_values(knobs: Union[List[float], Tensor]) -> List[float]:
    if isinstance(knobs, Tensor):
        return knobs.reshape(-1).to(torch.float64).tolist()
    return knobs


class KnobTableCompressor(_StreamingDSP):
    """A knob table of a device with arbitrary knobs: ``forward(x, knobs)``.

    ``knobs``: the knob values in the order of ``knob_names()`` (a list of floats or a
    1-D tensor). The parameters are the nearest fitted setting's; the gain state carries
    over a change of setting.

    Args:
        table: a :class:`dsp.knobs.knobtable.KnobTable`.
        far: :data:`dsp.knobs.knobtable.FAR`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    def __init__(self, knobs: List[str], points: List[List[float]], params: List[Dict[str, float]],
                 scale: List[float], far: float, sample_rate: int):
        super().__init__(sample_rate)
        self.curves = NearestSettings(knobs, points, params, scale, far)

    @torch.jit.export
    def knob_names(self) -> List[str]:
        return self.curves.knob_names()

    @torch.jit.export
    def parameters_at(self, knobs: List[float]) -> List[float]:
        return self.curves.parameters_at(knobs)

    def forward(self, x: Tensor, knobs: Union[List[float], Tensor]) -> Tensor:
        params = self.curves.parameters_at(_knob_values(knobs))
        y = self.comp.compress(_as_2d(x), params)
        return y.reshape(x.shape)
