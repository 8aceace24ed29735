"""The gray-box compressor (``compressor=graybox``) as TorchScript modules: streaming, self-contained.

Same computation as :class:`dsp.models.graybox_streaming.StreamingGraybox` (float64 inside)::

    y = Hout(S(m g(x) Hin(x)))

- ``g``: the five-parameter compressor's gain on the input itself (linked detection),
  :class:`deploy.compressor.PeakCompressor`; ``m`` its make-up;
- ``Hin``: a first-order high-pass then a first-order high shelf, ``Hout`` a first-order
  high-pass, with the coefficient formulas of :mod:`dsp.models.blocks` (bilinear transform
  pre-warped at the corner), each one matrix product per block with its state
  (:class:`deploy.kernels.BlockLTI`);
- ``S``: the tube shaper ``T(u) + a T(u)^2``, ``T(u) = tanh(k u) / k``, computed as
  ``(w + (a / k) w^2) / k`` with ``w = tanh(k m g Hin(x))``: the make-up and drive ``m k``
  are folded into ``Hin``'s output and ``1 / k`` into ``Hout``'s input, so a block costs a
  few operations (both gains move with the knob; the filters' states keep their meaning).

- :class:`GrayboxStage`: the blocks around the gain (``Hin``, ``S``, ``Hout``).
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

from deploy.compressor import PARAM_ORDER, KnobMapCurves, _StreamingDSP
from deploy.kernels import BlockLTI

__all__ = ["BLOCK_ORDER", "GRAYBOX_ORDER", "highpass_section", "shelf_section", "GrayboxStage", "FixedGraybox", "KnobMapGraybox"]

# dsp.models.graybox.BLOCK_NAMES, repeated here: the exported file must not import the project
BLOCK_ORDER = ("input_highpass_hz", "input_shelf_hz", "input_shelf_db",
               "tube_drive", "tube_asymmetry", "output_highpass_hz")
GRAYBOX_ORDER = PARAM_ORDER + BLOCK_ORDER


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


class GrayboxStage(nn.Module):
    """The blocks around the gain: ``Hout(S(m g Hin(x)))``, with the filters' state.

    :meth:`prepare` sets the blocks, the make-up and the rate (when the setting changes);
    ``forward`` runs one block.
    """

    key: List[float]

    def __init__(self):
        super().__init__()
        self.input_filter = BlockLTI()
        self.output_filter = BlockLTI()
        self.key = []
        self.square = 0.0   # a / k

    @torch.jit.export
    def reset(self) -> None:
        self.input_filter.reset()
        self.output_filter.reset()

    @torch.jit.export
    def prepare(self, blocks: List[float], sample_rate: int) -> None:
        """The six block values (:data:`BLOCK_ORDER`) and the rate (Hz)."""
        key = blocks + [float(sample_rate)]
        if key == self.key:
            return
        nyquist = 0.5 * float(sample_rate)
        for f in (blocks[0], blocks[1], blocks[5]):
            if not (0.0 < f < nyquist):
                raise RuntimeError("a gray-box filter corner lies outside 0..half the sample rate; "
                                   "choose a higher sample rate")
        drive = blocks[3]
        self.input_filter.set_sections([highpass_section(blocks[0], sample_rate),
                                        shelf_section(blocks[1], blocks[2], sample_rate)])
        self.output_filter.set_sections([highpass_section(blocks[5], sample_rate)])
        self.output_filter.set_gains(1.0 / drive, 1.0)
        self.square = blocks[4] / drive
        self.key = key

    def forward(self, x: Tensor, gain: Tensor) -> Tensor:
        """One block.

        Args:
            x: the input, :math:`(C, T)` float32 or float64.
            gain: the compressor's linear gain times its make-up and the tube drive ``k``,
                :math:`(1, T)` float64.

        Returns:
            :math:`(C, T)` float64.
        """
        w = torch.mul(self.input_filter(x), gain).tanh_()           # tanh(k m g Hin(x))
        return self.output_filter(torch.addcmul(w, w, w, value=self.square))


class _StreamingGraybox(_StreamingDSP):
    """A :class:`deploy.compressor._StreamingDSP` with the gray-box stage beside its compressor
    (the optical cell's module replaces the compressor's gain, :class:`deploy.opto.KnobMapOpto`)."""

    params: List[float]

    def __init__(self, sample_rate: int):
        super().__init__(sample_rate)
        self.stage = GrayboxStage()
        self.params = []
        self.stale = False   # the rate changed: configure before the next block

    @torch.jit.export
    def reset(self) -> None:
        self.comp.reset()
        self.stage.reset()

    @torch.jit.export
    def set_sample_rate(self, sample_rate: int) -> None:
        self.comp.set_sample_rate(sample_rate)
        self.stale = len(self.params) > 0   # the stage checks its corners against the rate at the next block

    def configure(self, params: List[float]) -> None:
        """Use the eleven values (:data:`GRAYBOX_ORDER`) from the next block on: the gain comes
        scaled by the make-up and the drive (:class:`GrayboxStage`)."""
        self.comp.prepare(params, math.pow(10.0, params[4] / 20.0) * params[8])
        self.stage.prepare(params[5:], self.comp.sample_rate)
        self.params = params
        self.stale = False

    def process(self, x: Tensor) -> Tensor:
        """The gray-box on one block with the configured values: the gain of the five (on x),
        then the stage. Shape :math:`(C, T)` -> :math:`(C, T)` in the dtype of x."""
        if self.stale:
            self.configure(self.params)
        if x.shape[1] == 0:
            return x.clone()
        return self.stage(x, self.scaled_gain(x)).to(x.dtype)


class FixedGraybox(_StreamingGraybox):
    """A one-pair gray-box fit: eleven fixed parameters. ``forward(x)``; ``reset()``.

    Args:
        params: physical parameters, all of :data:`GRAYBOX_ORDER`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    def __init__(self, params: Dict[str, float], sample_rate: int):
        super().__init__(sample_rate)
        self.configure([float(params[k]) for k in GRAYBOX_ORDER])

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.params

    def forward(self, x: Tensor) -> Tensor:
        return self._any_shape(x)


class KnobMapGraybox(_StreamingGraybox):
    """A gray-box chain's knob map: ``forward(x, peak_reduction, mode)`` with mode 0 compress, 1 limit.

    The knobs may be floats, ints or one-element tensors; ``mode`` at or above 0.5 is limit.
    State (the gain, the filters) carries over a change of setting.

    Args:
        table: ``{mode: {pr: params}}`` with all of :data:`GRAYBOX_ORDER`.
        sample_rate: the rate of the audio it will be given (``set_sample_rate`` changes it).
    """

    # (no class annotations here: they would hide the base class's to TorchScript)

    def __init__(self, table: Dict[str, Dict[int, Dict[str, float]]], sample_rate: int):
        super().__init__(sample_rate)
        self.curves = KnobMapCurves(table, GRAYBOX_ORDER)
        self.peak_reduction = math.nan   # the setting it is configured for
        self.mode = -1

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.curves.parameters_at(peak_reduction, mode)

    def forward(self, x: Tensor, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> Tensor:
        return self._at_setting(x, peak_reduction, mode)   # coefficients once per change of setting
