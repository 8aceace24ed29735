"""The fitted compressor as TorchScript modules: streaming, self-contained, no project imports at run time.

Everything here is written for ``torch.jit.script``: the saved file holds the code and
the fitted numbers, so a host with nothing but torch runs it. Semantics are those of
:class:`dsp.models.ff5_streaming.StreamingCompressor` (torchcomp's ``compexp_gain`` on the peak level
``|x|``, linked over channels, gain smoothing coefficient ``1 - exp(-2200 / (ms * sr))``,
attack while the gain falls, make-up after), computed in float64 like the renderer.

- :class:`PeakCompressor`: the gain computer and smoother, solved over a whole buffer in a
  few operations (:mod:`deploy.kernels`), and its state (the last gain).
- :class:`KnobMapCurves`: a knob map's tables (any model class), evaluated inside the module
  exactly as :meth:`dsp.knobs.knobmap.KnobMap.at` does, every parameter by its rule as a
  piecewise cubic in PR (threshold and make-up linear, ratio linear in log, attack and
  release by the monotone cubic (PCHIP) pieces in log-time, whose coefficients are computed
  by scipy at export time; the setting clipped to the fitted range).
- :class:`NearestSettings`: a knob table's fitted settings (a device with arbitrary
  knobs), answered as :meth:`dsp.knobs.knobtable.KnobTable.at` does: the nearest fitted
  setting in knob space scaled by each knob's fitted range; a setting far outside that
  range is refused.
- :class:`FixedCompressor`: a one-pair fit, ``forward(x)``.
- :class:`KnobMapCompressor`: a chain's knob map, ``forward(x, peak_reduction, mode)``.
- :class:`KnobTableCompressor`: a knob table, ``forward(x, knobs)`` with the knob
  values in the device's (the manifest's) knob order.

Shape (all ``forward``): x :math:`(T,)` or :math:`(C, T)`; returns the same shape and dtype.
Streaming: consecutive calls continue the signal; ``reset()`` returns to silence;
``latency()`` is 0 (no delay to compensate). The setting's constants are computed when the
knobs move, not per buffer.
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types

import math
from typing import Dict, Final, List, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import PchipInterpolator
from torch import Tensor, nn

from deploy.kernels import PIECE, ROUNDS, exact_tensor, smooth_gain_loop, smooth_log_gain

__all__ = ["PARAM_ORDER", "MODE_NAMES", "RELEASE_BLOCK", "PeakCompressor", "KnobMapCurves", "checked_setting",
           "NearestSettings", "FixedCompressor", "KnobMapCompressor", "KnobTableCompressor", "mode_index"]

PARAM_ORDER = ("threshold_db", "ratio", "attack_ms", "release_ms", "make_up_db")
MODE_NAMES = ("compress", "limit")   # mode input 0 and 1
RELEASE_BLOCK = 256   # blocks up to this long try the release pattern first (one matrix product)


def mode_index(mode: str) -> int:
    return MODE_NAMES.index(mode)


class PeakCompressor(nn.Module):
    """The gain computer and smoother with its state, at one sample rate.

    Per block a fixed handful of tensor operations: the static curve, then the smoother
    over the block. Blocks of up to :data:`RELEASE_BLOCK` samples first try the release
    pattern throughout (most blocks of program material: the gain only recovers), which
    is one cached matrix product ``[g0, f] @ R``; when some sample attacks, the block is
    solved by :func:`deploy.kernels.smooth_log_gain`. The recursion is homogeneous, so it
    runs on the gain times a fixed scale (the make-up, or for the gray-box the make-up
    times the tube drive) and the caller gets the scaled gain directly.

    :meth:`prepare` sets the parameters and the scale (the callers call it when the
    setting changes, not per block).

    Args:
        sample_rate: Hz; the time constants in ms become coefficients at this rate.
    """

    sample_rate: int
    params: List[float]
    scale: float
    loop: bool
    release: Dict[int, Tensor]
    quiet: Dict[int, Tensor]
    rounds: Final[int]
    piece: Final[int]
    release_block: Final[int]

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.rounds = ROUNDS
        self.piece = PIECE
        self.release_block = RELEASE_BLOCK
        self.params = []
        self.scale = 1.0
        self.state = torch.ones(1, 1, dtype=torch.float64)   # the gain after the last sample (silence: 1)
        self.at = 0.0
        self.rt = 0.0
        self.slope = 0.0
        self.knee = 1.0      # scale * 10^(slope threshold_db / 20)
        self.log_scale = 0.0
        self.loop = True
        self.lr = torch.zeros((), dtype=torch.float64)
        self.lrt = torch.zeros((), dtype=torch.float64)
        self.dla = 0.0
        self.dlc = 0.0
        self.release = {}    # block length -> the release pattern's matrix
        self.quiet = {}      # block length -> all False (no sample attacks)

    @torch.jit.export
    def reset(self) -> None:
        self.state = torch.ones(1, 1, dtype=torch.float64)

    @torch.jit.export
    def set_sample_rate(self, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        if len(self.params) > 0:
            params = self.params
            empty: List[float] = []
            self.params = empty
            self.prepare(params, self.scale)

    def coefficient(self, ms: float) -> float:
        return 1.0 - math.exp(-2200.0 / (ms * float(self.sample_rate)))

    @torch.jit.export
    def prepare(self, params: List[float], scale: float) -> None:
        """Use ``params`` (threshold_db, ratio, attack_ms, release_ms; more are ignored) and
        the output scale from the next block on."""
        params = params[:4]
        if params == self.params and scale == self.scale:
            return
        self.params = params
        self.scale = scale
        self.log_scale = math.log(scale)
        self.slope = 1.0 - 1.0 / params[1]
        # static gain = min(1, 10^(slope threshold_db / 20) level^-slope): the peak floor 1e-8
        # changes nothing above a -160 dB threshold (a silent sample's gain is 1 either way)
        self.knee = scale * math.pow(10.0, self.slope * params[0] / 20.0)
        self.at = self.coefficient(params[2])
        self.rt = self.coefficient(params[3])
        self.loop = not (0.0 < self.at < 1.0 and 0.0 < self.rt < 1.0 and self.slope > 0.0 and params[0] > -160.0)
        self.release.clear()
        if not self.loop:
            self.lr = torch.full([], math.log(1.0 - self.rt), dtype=torch.float64)
            self.lrt = torch.full([], math.log(self.rt), dtype=torch.float64)
            self.dla = math.log(1.0 - self.at) - math.log(1.0 - self.rt)
            self.dlc = math.log(self.at) - math.log(self.rt)

    def release_matrix(self, n: int) -> Tensor:
        """``[g0, m f] @ R = [m g, g_last]`` for a block released throughout. Shape :math:`(n + 1, n + 1)`."""
        r = self.release.get(n)
        if r is None:
            log_d = math.log(1.0 - self.rt)
            t = torch.arange(n, dtype=torch.float64)
            lag = t.reshape(1, n) - t.reshape(n, 1)                                  # (k, t): t - k
            decay = torch.where(lag >= 0, torch.exp(lag.clamp_min(0.0) * log_d), torch.zeros(1, dtype=torch.float64))
            r = torch.zeros(n + 1, n + 1, dtype=torch.float64)
            # the gain columns are lowered by a tie's width (1e-12, deploy.kernels.TIE): a sample where
            # f and g agree to rounding passes the check either way (the output moves by 1e-12)
            out = self.scale * (1.0 - 1e-12)
            r[0, :n] = torch.exp((t + 1.0) * log_d) * out                            # m d^(t+1) g0
            r[0, n].fill_(math.exp(float(n) * log_d))   # fill_: an assigned float would pass through float32
            r[1:, :n] = decay * (self.rt * (1.0 - 1e-12))                            # rt d^(t-k) m f_k
            r[1:, n] = decay[:, n - 1] * (self.rt / self.scale)
            r = F.hardshrink(r, 1e-200)   # deploy.kernels.FLUSH
            self.release[n] = r
        return r

    def no_attack(self, n: int) -> Tensor:
        q = self.quiet.get(n)
        if q is None:
            q = torch.zeros(1, n, dtype=torch.bool)
            self.quiet[n] = q
        return q

    def scaled_gain(self, x: Tensor) -> Tensor:
        """The smoothed gain times the scale for one block (advances the state).

        Args:
            x: the block, :math:`(C, T)`, ``T >= 1`` (linked detection: the louder channel drives
                the gain).

        Returns:
            :math:`(1, T)` float64.
        """
        level = x.abs()
        if level.shape[0] > 1:
            level = level.amax(0, keepdim=True)
        level = level.to(torch.float64)
        if self.loop:
            return self._scaled_gain_loop(level)
        fm = torch.pow(level, -self.slope).mul_(self.knee).clamp_max_(self.scale)   # scale * static gain
        n = fm.shape[1]
        if n <= self.release_block:
            z = torch.mm(torch.cat([self.state, fm], 1), self.release_matrix(n))
            gm, last = z.split([n, 1], 1)
            if torch.equal(fm < gm, self.no_attack(n)):   # released throughout (module doc)
                self.state = last
                return gm
        lgm = smooth_log_gain(fm.log(), self.state.log() + self.log_scale, self.lr, self.lrt, self.dla, self.dlc,
                              self.at, self.rt, self.rounds, self.piece)
        self.state = torch.exp(lgm.narrow(1, n - 1, 1) - self.log_scale)
        return lgm.exp()

    def _scaled_gain_loop(self, level: Tensor) -> Tensor:
        """The same, sample by sample (coefficients of 0 or 1, no slope, a threshold at -160 dB or below)."""
        db = 20.0 * level.clamp_min(1e-8).log10()      # dsp.models.ff5.PEAK_FLOOR
        static = torch.pow(10.0, (self.slope * (self.params[0] - db)).clamp_max(0.0) / 20.0)
        values: List[float] = static.reshape(-1).tolist()
        g = exact_tensor(smooth_gain_loop(values, float(self.state), self.at, self.rt)).reshape(1, -1)
        self.state = g.narrow(1, g.shape[1] - 1, 1)
        return g * self.scale

    def gain(self, x: Tensor, params: List[float]) -> Tensor:
        """Smoothed linear gain before make-up for one block (advances the state).

        Args:
            x: the block, :math:`(C, T)` (linked detection: the louder channel drives the gain).
            params: threshold_db, ratio, attack_ms, release_ms, make_up_db.

        Returns:
            :math:`(T,)` float64.
        """
        self.prepare(params, 1.0)
        if x.shape[1] == 0:
            return torch.zeros(0, dtype=torch.float64)
        return self.scaled_gain(x).reshape(-1)

    def compress(self, x: Tensor) -> Tensor:
        """Compressed block with the prepared parameters, the scale the make-up.
        Shape :math:`(C, T)` -> :math:`(C, T)`, dtype of x."""
        if x.shape[1] == 0:
            return x.clone()
        return torch.mul(x, self.scaled_gain(x)).to(x.dtype)   # a float64 product, as the renderer's


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
        self.comp.set_sample_rate(sample_rate)

    @torch.jit.export
    def latency(self) -> int:
        """Samples of delay the module adds: none (a host has nothing to compensate)."""
        return 0

    def _new_setting(self, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> bool:
        """Whether ``(peak_reduction, mode)`` differs from the setting the module is prepared
        for; a new one is checked (:func:`checked_setting`) and kept in ``self.peak_reduction``
        and ``self.mode`` (attributes of the knob-map modules that call this)."""
        pr = _setting(peak_reduction)
        mode_value = _setting(mode)
        slot = _mode_slot(mode_value)
        if pr == self.peak_reduction and slot == self.mode:
            return False
        self.peak_reduction, self.mode = checked_setting(pr, mode_value)
        return True

    def configure(self, params: List[float]) -> None:
        """Use the five values (:data:`PARAM_ORDER`) from the next block on: the gain comes
        scaled by the make-up. (The gray-box and opto modules add their blocks.)"""
        self.comp.prepare(params, _make_up(params))

    def scaled_gain(self, x: Tensor) -> Tensor:
        """The gain of one ``(C, T)`` block times its scale (the make-up; a gray-box's also the tube
        drive), :math:`(1, T)` float64 (advances the state). The opto module's is the cell's."""
        return self.comp.scaled_gain(x)

    def process(self, x: Tensor) -> Tensor:
        """The configured compressor on one ``(C, T)`` block, in the dtype of x."""
        return self.comp.compress(x)

    def _any_shape(self, x: Tensor) -> Tensor:
        """:meth:`process` (one ``(C, T)`` block) on ``(C, T)`` or any shape of one channel."""
        if x.dim() == 2:
            return self.process(x)
        return self.process(_as_2d(x)).reshape(x.shape)

    def _at_setting(self, x: Tensor, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> Tensor:
        """A knob map's call: :meth:`configure` with the subclass's ``curves`` once per change of
        setting (the state carries over), then :meth:`_any_shape`."""
        if self._new_setting(peak_reduction, mode):
            self.configure(self.curves.parameters_at(self.peak_reduction, self.mode))
        return self._any_shape(x)


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
        self.configure(self.params)

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.params

    def forward(self, x: Tensor) -> Tensor:
        return self._any_shape(x)


def _make_up(params: List[float]) -> float:
    return math.pow(10.0, params[4] / 20.0)


def _setting(value: Union[float, int, Tensor]) -> float:
    """A knob value given as a float, an int or a tensor (its first element)."""
    if isinstance(value, Tensor):
        return float(value.reshape(-1)[0].item())
    if isinstance(value, int):
        return float(value)
    return value


def _mode_slot(value: float) -> int:
    return 1 if value >= 0.5 else 0


def checked_setting(peak_reduction: float, mode: float) -> Tuple[float, int]:
    """An LA-2A setting as the command line takes it: peak reduction a finite number in
    0..100, mode in 0..1 (at or above 0.5 limit, a host's switch); RuntimeError otherwise.
    Called only when the setting changes, so it costs nothing per buffer."""
    if not (math.isfinite(peak_reduction) and 0.0 <= peak_reduction <= 100.0):
        raise RuntimeError("peak_reduction must be a finite number in 0..100")
    if not (math.isfinite(mode) and 0.0 <= mode <= 1.0):
        raise RuntimeError("mode must be 0 (compress) or 1 (limit)")
    return peak_reduction, _mode_slot(mode)


class KnobMapCurves(nn.Module):
    """A knob map's tables for the modes it has, every parameter a piecewise cubic in PR.

    Any model class: each parameter by its rule of :data:`dsp.knobs.knobmap.INTERPOLATION`
    (linear, linear in log, monotone cubic in log: PCHIP coefficients computed by scipy at
    export time), the setting clipped to the fitted range, as
    :meth:`dsp.knobs.knobmap.KnobMap.at` evaluates it.

    Args:
        table: ``{mode: {pr: {param: value}}}`` with all of ``names``.
        names: the parameters, in the order :meth:`parameters_at` returns them.
    """

    has_mode: List[bool]
    levels: List[List[float]]
    pieces: List[List[List[List[float]]]]   # [mode][param][interval] -> 4 coefficients, highest power first
    logs: List[bool]

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]], names=PARAM_ORDER):
        super().__init__()
        from dsp.knobs.knobmap import INTERPOLATION as rules   # at export time only: not in the scripted file
        unknown = [rules[k] for k in names if rules[k] not in ("linear", "linear in log", "monotone cubic in log")]
        if unknown:
            raise ValueError(f"unknown interpolation {unknown[0]!r}")
        self.logs = [rules[k] != "linear" for k in names]
        self.has_mode = [m in table for m in MODE_NAMES]
        self.levels = []
        self.pieces = []
        for mode in MODE_NAMES:
            levels = dict(sorted(table.get(mode, {}).items()))
            pr = np.asarray([float(p) for p in levels])
            self.levels.append([float(p) for p in pr])
            columns: List[List[List[float]]] = []
            for name, log in zip(names, self.logs):
                col = np.asarray([float(r[name]) for r in levels.values()])
                y = np.log(col) if log else col
                if len(pr) < 2:
                    columns.append([[0.0, 0.0, 0.0, float(v)] for v in y])
                elif rules[name] == "monotone cubic in log":
                    coef = PchipInterpolator(pr, y).c
                    columns.append([[float(v) for v in coef[:, i]] for i in range(coef.shape[1])])
                else:
                    slope = np.diff(y) / np.diff(pr)
                    columns.append([[0.0, 0.0, float(slope[i]), float(y[i])] for i in range(len(slope))])
            self.pieces.append(columns)

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        """Every parameter at a setting (PR in 0..100: :func:`deploy.compressor.checked_setting`);
        outside the mode's fitted levels the end level's values are held."""
        checked_setting(peak_reduction, float(mode))
        if mode < 0 or mode > 1 or not self.has_mode[mode]:
            raise RuntimeError("the knob map has no such mode (0 compress, 1 limit)")
        pr = self.levels[mode]
        n = len(pr)
        i = 0
        dx = 0.0
        if n > 1:
            q = min(max(peak_reduction, pr[0]), pr[n - 1])
            while i < n - 2 and q > pr[i + 1]:
                i += 1
            dx = q - pr[i]
        values: List[float] = []
        for j in range(len(self.logs)):
            c = self.pieces[mode][j][i]
            v = ((c[0] * dx + c[1]) * dx + c[2]) * dx + c[3]
            values.append(math.exp(v) if self.logs[j] else v)
        return values


class KnobMapCompressor(_StreamingDSP):
    """A chain's knob map: ``forward(x, peak_reduction, mode)`` with mode 0 compress, 1 limit.

    The knobs may be floats, ints or one-element tensors; ``mode`` at or above 0.5 is limit. The gain state
    carries over a change of setting, as turning the knob of a running unit would.

    Args:
        table: ``{mode: {pr: {param: value}}}``.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    peak_reduction: float
    mode: int

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]], sample_rate: int):
        super().__init__(sample_rate)
        self.curves = KnobMapCurves(table)
        self.peak_reduction = math.nan   # the setting the compressor is prepared for
        self.mode = -1

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.curves.parameters_at(peak_reduction, mode)

    def forward(self, x: Tensor, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> Tensor:
        return self._at_setting(x, peak_reduction, mode)   # coefficients once per change of setting


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

    setting: List[float]

    def __init__(self, knobs: List[str], points: List[List[float]], params: List[Dict[str, float]],
                 scale: List[float], far: float, sample_rate: int):
        super().__init__(sample_rate)
        self.curves = NearestSettings(knobs, points, params, scale, far)
        self.setting = torch.jit.annotate(List[float], [])    # the knob values the compressor is prepared for

    @torch.jit.export
    def knob_names(self) -> List[str]:
        return self.curves.knob_names()

    @torch.jit.export
    def parameters_at(self, knobs: List[float]) -> List[float]:
        return self.curves.parameters_at(knobs)

    def forward(self, x: Tensor, knobs: Union[List[float], Tensor]) -> Tensor:
        values = _knob_values(knobs)
        if values != self.setting:   # coefficients once per change of setting
            self.configure(self.curves.parameters_at(values))
            self.setting = values
        return self._any_shape(x)
