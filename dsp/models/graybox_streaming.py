"""The gray-box model rendered block by block: stateful filters and compressor, any channel count.

Same model as :func:`dsp.models.graybox.graybox` (from rest at the first call); the
compressor's gain is :class:`dsp.models.ff5_streaming.StreamingCompressor`'s on the input
(linked detection over channels), applied to the filtered input. The filters, the gain
and the shaper of a block are one compiled call (:func:`dsp.models.streaming_kernels.graybox_block`,
``scipy.signal.lfilter``'s order of operations on the cascaded sections).
"""
from __future__ import annotations

import numpy as np

from dsp.models.blocks import cascade, highpass_coefficients, shelf_coefficients
from dsp.models.ff5_streaming import StreamingCompressor
from dsp.models.graybox import FREQUENCY_NAMES, GRAYBOX_NAMES
from dsp.models.streaming_kernels import graybox_block

__all__ = ["StreamingGraybox", "render"]


class _Filter:
    """A cascade of first-order sections: its ``(b, a)`` (``a[0] = 1``) and per-channel state."""

    def __init__(self, sections):
        b, a = cascade(*sections)
        self.b, self.a = b / a[0], a / a[0]
        self.state = None

    def state_for(self, channels: int) -> np.ndarray:
        if self.state is None:
            self.state = np.zeros((channels, len(self.a) - 1))
        elif self.state.shape[0] != channels:
            raise ValueError(f"block has {channels} channels, the stream had {self.state.shape[0]}")
        return self.state


class StreamingGraybox:
    """Stateful gray-box for consecutive blocks of ``(channels, samples)`` audio.

    Same model as :func:`graybox` (from rest at the first block); the compressor's gain
    is :class:`dsp.models.ff5_streaming.StreamingCompressor`'s on the input (linked detection), applied to
    the filtered input.

    Args:
        params: physical parameters, all of :data:`GRAYBOX_NAMES`.
        sample_rate: Hz.
    """

    def __init__(self, params: dict[str, float], sample_rate: int):
        missing = [k for k in GRAYBOX_NAMES if k not in params]
        if missing:
            raise ValueError(f"gray-box parameters missing: {', '.join(missing)}")
        p = {k: float(params[k]) for k in GRAYBOX_NAMES}
        for k in FREQUENCY_NAMES:
            if not 0.0 < p[k] < 0.5 * sample_rate:
                raise ValueError(f"{k} = {p[k]:g} Hz must be between 0 and half the sample rate "
                                 f"({0.5 * sample_rate:g} Hz)")
        self.input_filter = _Filter((highpass_coefficients(p["input_highpass_hz"], sample_rate),
                                     shelf_coefficients(p["input_shelf_hz"], p["input_shelf_db"], sample_rate)))
        self.output_filter = _Filter((highpass_coefficients(p["output_highpass_hz"], sample_rate),))
        self.compressor = StreamingCompressor(p, sample_rate)
        self.drive, self.asymmetry = p["tube_drive"], p["tube_asymmetry"]

    def process(self, block: np.ndarray) -> np.ndarray:
        """Process one ``(channels, samples)`` block (float64 inside, input dtype out)."""
        return self.process_and_gain(block)[0]

    def process_and_gain(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`process`, and the compressor's smoothed gain before make-up ``(samples,)`` (a hybrid's feature)."""
        block = np.atleast_2d(block)
        x = np.ascontiguousarray(block, dtype=np.float64)
        g = self.compressor.gain(x)  # detector on the input
        gain = g * self.compressor.make_up
        y = np.empty_like(x)
        graybox_block(x, gain, self.input_filter.b, self.input_filter.a, self.input_filter.state_for(x.shape[0]),
                      self.drive, self.asymmetry, self.output_filter.b, self.output_filter.a,
                      self.output_filter.state_for(x.shape[0]), y)
        return y.astype(block.dtype, copy=False), g


def render(x: np.ndarray, sample_rate: int, params: dict[str, float], block: int = 1 << 18) -> np.ndarray:
    """Process a whole ``(channels, samples)`` (or 1-D) signal through the gray-box in blocks."""
    one_d = np.ndim(x) == 1
    x2 = np.atleast_2d(x)
    model = StreamingGraybox(params, sample_rate)
    out = np.concatenate([model.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)], axis=1)
    return out[0] if one_d else out
