"""The optical-cell model (``compressor=opto``) as TorchScript modules: streaming, self-contained.

Same computation as :class:`dsp.models.opto_streaming.StreamingOpto` (float64 inside)::

    y = Hout(S(m g Hin(x))),   g the cell's gain, driven from the attenuated input (feedback)

- the cell (:class:`OptoCell`): the sidechain ``(g[n-1] + mix) x[n]`` through its shelf,
  squared (the mean over channels: one cell for all, linked), lights the panel (attack /
  fast release), the conductance is a power law of the light, split into a fast part and a
  slow part whose release slows with the reduction's history, ``g = 1 / (1 + conductance)``
  (:func:`dsp.derivatives.opto_kernel._cell`'s arithmetic). The gain of a sample depends on
  the previous sample's output, so there is no block form: it runs sample by sample on
  Python floats inside TorchScript (a few tens of scalar steps per sample, no tensor
  operation; a mono block takes a branch with fewer steps), and the block's gains become one tensor exactly (as integers in units of
  ``2^-52``: TorchScript makes a float list float32); its decaying states are set to zero
  below ``deploy.kernels.FLUSH`` at the end of a block, as the Python renderer's
  (:func:`dsp.derivatives.opto_kernel.stream_gain`), so a long silence never reaches the
  subnormal range;
- the blocks around it (``Hin``, ``S``, ``Hout``) are the gray-box's :class:`deploy.graybox.GrayboxStage`.

- :class:`FixedOpto`: a one-pair opto fit, ``forward(x)``.
- :class:`KnobMapOpto`: an opto knob map, ``forward(x, peak_reduction, mode)``.

Shape (all ``forward``): x :math:`(T,)` or :math:`(C, T)`; returns the same shape and dtype.
Streaming: consecutive calls continue the signal; ``reset()`` returns to silence; a block
with another channel count restarts the filters and the sidechain shelves (the cell carries on).
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types

import math
from typing import Dict, List, Union

import torch
from torch import Tensor, nn

from deploy.compressor import KnobMapCurves
from deploy.graybox import BLOCK_ORDER, _StreamingGraybox, shelf_section
from deploy.kernels import FLUSH

__all__ = ["CORE_ORDER", "OPTO_ORDER", "OptoCell", "FixedOpto", "KnobMapOpto"]

# dsp.models.opto.CORE_NAMES and OPTO_NAMES, repeated here: the exported file must not import the project
CORE_ORDER = ("threshold_db", "ratio", "attack_ms", "release_ms", "make_up_db",
              "release_slow_ms", "slow_fraction", "memory_ms", "memory_depth",
              "sidechain_shelf_hz", "sidechain_shelf_db", "input_mix")
OPTO_ORDER = CORE_ORDER + BLOCK_ORDER
K_DB = math.log(10.0) / 20.0   # dsp.derivatives.opto_kernel.K_DB
POWER_FLOOR = 1e-30            # dsp.models.opto.POWER_FLOOR
GAIN_UNIT = 4503599627370496.0  # 2^52: a gain in (0, 1] as an integer, exact to 2^-53


def _time_coefficient(ms: float, sample_rate: int) -> float:
    """``1 - exp(-1 / (tau sr))`` (:func:`dsp.models.opto.time_coefficient`)."""
    return -math.expm1(-1000.0 / (ms * float(sample_rate)))


class OptoCell(nn.Module):
    """The cell's gain before make-up, sample by sample, with its state."""

    state: List[float]   # g, light, slow conductance, memory
    shelf: List[float]   # each channel's sidechain shelf state
    prm: List[float]

    def __init__(self):
        super().__init__()
        self.state = [1.0, 0.0, 0.0, 0.0]
        self.shelf = torch.jit.annotate(List[float], [])
        self.prm = torch.jit.annotate(List[float], [])
        self.k_db = K_DB           # module constants as attributes: TorchScript reads no float globals
        self.floor = POWER_FLOOR
        self.unit = GAIN_UNIT
        self.flush = FLUSH

    @torch.jit.export
    def reset(self) -> None:
        self.state = [1.0, 0.0, 0.0, 0.0]   # from rest: no light, unity gain
        self.shelf = torch.jit.annotate(List[float], [])

    @torch.jit.export
    def prepare(self, core: List[float], sample_rate: int) -> None:
        """The twelve cell values (:data:`CORE_ORDER`) at a rate (Hz)."""
        if not (0.0 < core[9] < 0.5 * float(sample_rate)):
            raise RuntimeError("the sidechain shelf's corner lies outside 0..half the sample rate; "
                               "choose a higher sample rate")
        shelf = shelf_section(core[9], core[10], sample_rate)
        # threshold, gamma, attack, fast release, slow release rate, slow fraction, memory,
        # log depth, mix, shelf b0 b1 a1
        self.prm = [core[0], core[1] - 1.0, _time_coefficient(core[2], sample_rate),
                    _time_coefficient(core[3], sample_rate), 1000.0 / (core[5] * float(sample_rate)), core[6],
                    _time_coefficient(core[7], sample_rate), math.log(core[8]), core[11],
                    shelf[0], shelf[1], shelf[2]]

    def forward(self, x: Tensor) -> Tensor:
        """The gain of each sample of one ``(C, T)`` block, :math:`(1, T)` float64 (advances the state)."""
        rows: List[List[float]] = x.to(torch.float64).tolist()
        if len(self.shelf) != len(rows):
            self.shelf = [0.0 for _ in range(len(rows))]
        out = self._loop(rows, x.shape[1])
        return (torch.tensor(out, dtype=torch.int64).to(torch.float64) * (1.0 / self.unit)).reshape(1, -1)

    def _loop(self, rows: List[List[float]], n: int) -> List[int]:
        """The cell sample by sample; one channel takes a branch without the channel loop (the
        interpreter's cost is per scalar step). Several channels, one cell: the light is the
        mean of their squared drives."""
        p = self.prm
        gkt = p[1] * self.k_db * p[0]     # gamma * ln(10)/20 * threshold
        half_gamma = 0.5 * p[1]
        attack = p[2]
        fast = p[3]
        slow = p[4] * math.exp(0.5 * p[7])   # the slow rate at zero memory, exp(-depth (mem - 0.5)) split
        fraction = p[5]
        memory_rate = p[6]
        depth = p[7]
        mix = p[8]
        b0 = p[9]
        b1 = p[10]
        a1 = p[11]
        floor = self.floor
        unit = self.unit
        channels = len(rows)
        mono = channels == 1
        row = rows[0]
        z = self.shelf
        z0 = z[0]
        g = self.state[0]
        light = self.state[1]
        cs = self.state[2]
        mem = self.state[3]
        out: List[int] = []
        for i in range(n):
            out.append(int(g * unit + 0.5))
            drive = g + mix   # the sidechain's share of each channel: the attenuated signal and the input tap
            if mono:
                s = drive * row[i]
                e = b0 * s + z0
                z0 = b1 * s - a1 * e
                q = e * e
            else:
                q = 0.0
                for c in range(channels):
                    s = drive * rows[c][i]
                    e = b0 * s + z[c]
                    z[c] = b1 * s - a1 * e
                    q += e * e
                q = q / channels
            if q > light:
                light += attack * (q - light)
            else:
                light += fast * (q - light)
            conductance = 0.0
            if light > floor:
                conductance = math.exp(half_gamma * math.log(light) - gkt)
            ts = fraction * conductance
            if ts >= cs:
                cs += memory_rate * (ts - cs)
            else:
                cs += slow * math.exp(-depth * mem) * (ts - cs)
            g = 1.0 / (1.0 + (conductance - ts) + cs)
            mem += memory_rate * ((1.0 - g) - mem)
        if mono:
            z[0] = z0
        # decaying states below FLUSH become 0 before a long silence takes them to the subnormal range
        flush = self.flush
        for c in range(channels):
            if abs(z[c]) < flush:
                z[c] = 0.0
        self.state = [g, 0.0 if light < flush else light, 0.0 if abs(cs) < flush else cs,
                      0.0 if abs(mem) < flush else mem]
        return out


class _StreamingOpto(_StreamingGraybox):
    """The gray-box's streaming module with the cell's gain in place of the compressor's; the
    rate is kept by the base class's compressor."""

    def __init__(self, sample_rate: int):
        super().__init__(sample_rate)
        self.cell = OptoCell()
        self.gain_scale = 1.0   # make-up times tube drive (the stage's input scaling)

    @torch.jit.export
    def reset(self) -> None:
        self.cell.reset()
        self.stage.reset()

    def configure(self, params: List[float]) -> None:
        """Use the eighteen values (:data:`OPTO_ORDER`) from the next block on."""
        sr = self.comp.sample_rate
        self.cell.prepare(params[:12], sr)
        self.stage.prepare(params[12:], sr)
        self.gain_scale = math.pow(10.0, params[4] / 20.0) * params[15]
        self.params = params
        self.stale = False

    def scaled_gain(self, x: Tensor) -> Tensor:
        return self.cell(x) * self.gain_scale


class FixedOpto(_StreamingOpto):
    """A one-pair opto fit: eighteen fixed parameters. ``forward(x)``; ``reset()``.

    Args:
        params: physical parameters, all of :data:`OPTO_ORDER`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    def __init__(self, params: Dict[str, float], sample_rate: int):
        super().__init__(sample_rate)
        self.configure([float(params[k]) for k in OPTO_ORDER])

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.params

    def forward(self, x: Tensor) -> Tensor:
        return self._any_shape(x)


class KnobMapOpto(_StreamingOpto):
    """An opto chain's knob map: ``forward(x, peak_reduction, mode)`` with mode 0 compress, 1 limit.

    The knobs may be floats, ints or one-element tensors; ``mode`` at or above 0.5 is limit.
    State (the cell, the filters) carries over a change of setting.

    Args:
        table: ``{mode: {pr: params}}`` with all of :data:`OPTO_ORDER`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]], sample_rate: int):
        super().__init__(sample_rate)
        self.curves = KnobMapCurves(table, OPTO_ORDER)
        self.peak_reduction = math.nan   # the setting it is configured for
        self.mode = -1

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.curves.parameters_at(peak_reduction, mode)

    def forward(self, x: Tensor, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> Tensor:
        return self._at_setting(x, peak_reduction, mode)   # coefficients once per change of setting
