"""The gray-box compressor (``compressor=graybox``) as TorchScript modules: streaming, self-contained.

Same computation as :class:`dsp.models.graybox_streaming.StreamingGraybox` (float64 inside)::

    y = Hout(S(m g(x) Hin(x)))

- ``g``: the five-parameter compressor's gain on the input itself (linked detection),
  :class:`deploy.compressor.PeakCompressor`; ``m`` its make-up;
- ``Hin``: a first-order high-pass then a first-order high shelf, ``Hout`` a first-order
  high-pass, with the coefficient formulas of :mod:`dsp.models.blocks` (bilinear transform
  pre-warped at the corner), run as plain float loops per channel (transposed direct
  form II, one state per section and channel);
- ``S``: the tube shaper ``T(u) + a T(u)^2``, ``T(u) = tanh(k u) / k``.

- :class:`SectionFilter`: first-order sections in series, with their state.
- :class:`GrayboxStage`: the blocks around the gain (``Hin``, ``S``, ``Hout``).
- :class:`GrayboxCurves`: a gray-box knob map evaluated as :meth:`dsp.knobs.knobmap.KnobMap.at`
  does: the compressor's five by :class:`deploy.compressor.KnobCurves`, the block
  parameters linearly (frequencies linearly in log-frequency) on the same interval.
- :class:`FixedGraybox`: a one-pair gray-box fit, ``forward(x)``.
- :class:`KnobMapGraybox`: a gray-box knob map, ``forward(x, peak_reduction, mode)``.

Shape (all ``forward``): x :math:`(T,)` or :math:`(C, T)`; returns the same shape and dtype.
Streaming: consecutive calls continue the signal; ``reset()`` returns to silence; a block
with another channel count restarts the filters (the linked gain carries on).
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types

import math
from typing import Dict, List, Union

import torch
from torch import Tensor, nn

from deploy.compressor import MODE_NAMES, PARAM_ORDER, KnobCurves, PeakCompressor, _as_2d, _mode_slot, _setting, \
    _StreamingDSP

__all__ = ["BLOCK_ORDER", "GRAYBOX_ORDER", "LOG_BLOCKS", "highpass_section", "shelf_section", "SectionFilter",
           "GrayboxStage", "GrayboxCurves", "FixedGraybox", "KnobMapGraybox"]

# dsp.models.graybox.BLOCK_NAMES, repeated here: the exported file must not import the project
BLOCK_ORDER = ("input_highpass_hz", "input_shelf_hz", "input_shelf_db",
               "tube_drive", "tube_asymmetry", "output_highpass_hz")
GRAYBOX_ORDER = PARAM_ORDER + BLOCK_ORDER
LOG_BLOCKS = ("input_highpass_hz", "input_shelf_hz", "output_highpass_hz")   # interpolated in log (KnobMap)


def highpass_section(freq_hz: float, sample_rate: int) -> List[float]:
    """``[b0, b1, a1]`` of ``s / (s + wc)`` (:func:`dsp.models.blocks.highpass_coefficients`)."""
    k = math.tan(math.pi * freq_hz / float(sample_rate))
    norm = 1.0 / (1.0 + k)
    return [norm, -norm, (k - 1.0) * norm]


def shelf_section(freq_hz: float, gain_db: float, sample_rate: int) -> List[float]:
    """``[b0, b1, a1]`` of ``(G s + wc) / (s + wc)`` (:func:`dsp.models.blocks.shelf_coefficients`)."""
    k = math.tan(math.pi * freq_hz / float(sample_rate))
    g = math.pow(10.0, gain_db / 20.0)
    norm = 1.0 / (1.0 + k)
    return [(g + k) * norm, (k - g) * norm, (k - 1.0) * norm]


class SectionFilter(nn.Module):
    """First-order sections in series, each ``(b0 + b1 z^-1) / (1 + a1 z^-1)``, per channel.

    The coefficients come with every block (a knob may move them); the state (one value
    per section and channel) carries over. A block with another channel count, or
    another number of sections, starts from rest.
    """

    state: List[List[float]]

    def __init__(self):
        super().__init__()
        self.state = []

    @torch.jit.export
    def reset(self) -> None:
        empty: List[List[float]] = []
        self.state = empty

    def forward(self, x: Tensor, sections: List[List[float]]) -> Tensor:
        """Filter one block. Shape :math:`(C, T)` float64 -> :math:`(C, T)` float64."""
        channels = x.shape[0]
        if len(self.state) != channels or (channels > 0 and len(self.state[0]) != len(sections)):
            self.state = [[0.0] * len(sections) for c in range(channels)]
        rows: List[List[float]] = x.tolist()
        out: List[List[float]] = []
        for c in range(channels):
            row = rows[c]
            states = self.state[c]
            for i in range(len(sections)):
                b0, b1, a1 = sections[i][0], sections[i][1], sections[i][2]
                s = states[i]
                filtered: List[float] = []
                for v in row:
                    y = b0 * v + s        # transposed direct form II
                    s = b1 * v - a1 * y
                    filtered.append(y)
                states[i] = s
                row = filtered
            out.append(row)
        return torch.tensor(out, dtype=torch.float64).reshape(x.shape)


class GrayboxStage(nn.Module):
    """The blocks after the gain: ``Hout(S(gain * Hin(x)))``, with the filters' state."""

    def __init__(self):
        super().__init__()
        self.input_filter = SectionFilter()
        self.output_filter = SectionFilter()

    @torch.jit.export
    def reset(self) -> None:
        self.input_filter.reset()
        self.output_filter.reset()

    def forward(self, x: Tensor, gain: Tensor, blocks: List[float], sample_rate: int) -> Tensor:
        """One block.

        Args:
            x: the input, :math:`(C, T)` float64.
            gain: the compressor's linear gain, make-up included, :math:`(T,)` float64.
            blocks: the six block values in the order of :data:`BLOCK_ORDER`.
            sample_rate: Hz.

        Returns:
            :math:`(C, T)` float64.
        """
        nyquist = 0.5 * float(sample_rate)
        for f in (blocks[0], blocks[1], blocks[5]):
            if not (0.0 < f < nyquist):
                raise RuntimeError("a gray-box filter corner lies outside 0..half the sample rate; "
                                   "choose a higher sample rate")
        u = self.input_filter(x, [highpass_section(blocks[0], sample_rate),
                                  shelf_section(blocks[1], blocks[2], sample_rate)])
        drive, asymmetry = blocks[3], blocks[4]
        t = torch.tanh(drive * (u * gain.unsqueeze(0))) / drive
        return self.output_filter(t + asymmetry * t * t, [highpass_section(blocks[5], sample_rate)])


class GrayboxCurves(nn.Module):
    """A gray-box knob map's tables for the modes it has, evaluated at any peak reduction.

    Args:
        table: ``{mode: {pr: {param: value}}}`` with all of :data:`GRAYBOX_ORDER`.
    """

    levels: List[List[float]]
    blocks: List[List[List[float]]]
    logs: List[bool]

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]]):
        super().__init__()
        self.five = KnobCurves(table)
        self.logs = [name in LOG_BLOCKS for name in BLOCK_ORDER]
        self.levels = []
        self.blocks = []   # per mode slot: per block parameter, its column over the levels (log for frequencies)
        for mode in MODE_NAMES:
            levels = dict(sorted(table.get(mode, {}).items()))
            self.levels.append([float(p) for p in levels])
            self.blocks.append([[math.log(r[name]) if log else float(r[name]) for r in levels.values()]
                                for name, log in zip(BLOCK_ORDER, self.logs)])

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        """The eleven values (:data:`GRAYBOX_ORDER`) at a setting, the setting clipped to the fitted range."""
        values = self.five.parameters_at(peak_reduction, mode)   # raises for a mode the map lacks
        pr = self.levels[mode]
        n = len(pr)
        i = 0
        dx = 0.0
        width = 1.0
        if n > 1:
            q = min(max(peak_reduction, pr[0]), pr[n - 1])
            while i < n - 2 and q > pr[i + 1]:
                i += 1
            width = pr[i + 1] - pr[i]
            dx = q - pr[i]
        for j in range(len(self.logs)):
            col = self.blocks[mode][j]
            v = col[0] if n == 1 else (col[i + 1] - col[i]) / width * dx + col[i]
            values.append(math.exp(v) if self.logs[j] else v)
        return values


class _StreamingGraybox(_StreamingDSP):
    """A :class:`deploy.compressor._StreamingDSP` with the gray-box stage beside its compressor."""

    def __init__(self, sample_rate: int):
        super().__init__(sample_rate)
        self.stage = GrayboxStage()

    @torch.jit.export
    def reset(self) -> None:
        self.comp.reset()
        self.stage.reset()

    def process(self, x: Tensor, params: List[float]) -> Tensor:
        """The gray-box on one block: the gain of the five (on x), then the stage.

        Args:
            x: :math:`(C, T)`.
            params: the eleven values in the order of :data:`GRAYBOX_ORDER`.

        Returns:
            :math:`(C, T)` in the dtype of x.
        """
        x64 = x.to(torch.float64)
        gain = self.comp.gain(x64, params) * math.pow(10.0, params[4] / 20.0)
        return self.stage(x64, gain, params[5:], self.comp.sample_rate).to(x.dtype)


class FixedGraybox(_StreamingGraybox):
    """A one-pair gray-box fit: eleven fixed parameters. ``forward(x)``; ``reset()``.

    Args:
        params: physical parameters, all of :data:`GRAYBOX_ORDER`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    params: List[float]

    def __init__(self, params: Dict[str, float], sample_rate: int):
        super().__init__(sample_rate)
        self.params = [float(params[k]) for k in GRAYBOX_ORDER]

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.params

    def forward(self, x: Tensor) -> Tensor:
        return self.process(_as_2d(x), self.params).reshape(x.shape)


class KnobMapGraybox(_StreamingGraybox):
    """A gray-box chain's knob map: ``forward(x, peak_reduction, mode)`` with mode 0 compress, 1 limit.

    The knobs may be floats, ints or one-element tensors; ``mode`` at or above 0.5 is limit.
    State (the gain, the filters) carries over a change of setting.

    Args:
        table: ``{mode: {pr: params}}`` with all of :data:`GRAYBOX_ORDER`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]], sample_rate: int):
        super().__init__(sample_rate)
        self.curves = GrayboxCurves(table)

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.curves.parameters_at(peak_reduction, mode)

    def forward(self, x: Tensor, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> Tensor:
        params = self.curves.parameters_at(_setting(peak_reduction), _mode_slot(_setting(mode)))
        return self.process(_as_2d(x), params).reshape(x.shape)
