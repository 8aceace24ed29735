"""The optical-cell model rendered block by block: stateful cell and blocks, any channel count.

Same model as :func:`dsp.models.opto.opto` (from rest at the first block). Several channels
are linked by default, as on a stereo leveller: one cell, lit by the mean over channels of
their squared sidechain drives (each channel has its own sidechain shelf), and one gain for
all; ``linked=False`` gives every channel its own cell (dual mono). The transformer filters
and the tube shaper are the gray-box's (:mod:`dsp.models.graybox_streaming`).
"""
from __future__ import annotations

import numpy as np

from dsp.derivatives.opto_kernel import STATE_SIZE, constants, stream_gain
from dsp.models.blocks import highpass_coefficients, shelf_coefficients
from dsp.models.graybox import FREQUENCY_NAMES
from dsp.models.graybox_streaming import _Filter
from dsp.models.opto import OPTO_NAMES, natural_from_physical
from dsp.models.streaming_kernels import graybox_block

__all__ = ["StreamingOpto", "render"]


class _Cell:
    """The cell's state for one detector (one or several channels)."""

    def __init__(self, prm: np.ndarray, channels: int):
        self.prm = prm
        self.state = np.zeros(STATE_SIZE)
        self.state[0] = 1.0                  # from rest: no conductance, unity gain
        self.shelf = np.zeros(channels)

    def gain(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] != self.shelf.shape[0]:
            raise ValueError(f"block has {x.shape[0]} channels, the stream had {self.shelf.shape[0]}")
        out = np.empty(x.shape[1])
        stream_gain(np.ascontiguousarray(x), self.state, self.shelf, self.prm, out)
        return out


class StreamingOpto:
    """Stateful optical-cell model for consecutive blocks of ``(channels, samples)`` audio.

    Args:
        params: physical parameters, all of :data:`dsp.models.opto.OPTO_NAMES`.
        sample_rate: Hz; time constants and filters are converted here.
        linked: one cell for all channels (the default); False: one per channel.
    """

    def __init__(self, params: dict[str, float], sample_rate: int, linked: bool = True):
        missing = [k for k in OPTO_NAMES if k not in params]
        if missing:
            raise ValueError(f"opto parameters missing: {', '.join(missing)}")
        p = {k: float(params[k]) for k in OPTO_NAMES}
        for k in tuple(FREQUENCY_NAMES) + ("sidechain_shelf_hz",):
            if not 0.0 < p[k] < 0.5 * sample_rate:
                raise ValueError(f"{k} = {p[k]:g} Hz must be between 0 and half the sample rate "
                                 f"({0.5 * sample_rate:g} Hz)")
        self.linked = bool(linked)
        self.prm = constants(natural_from_physical(p, sample_rate), None, sample_rate)
        self.make_up = 10.0 ** (p["make_up_db"] / 20.0)
        self.input_filter = _Filter((highpass_coefficients(p["input_highpass_hz"], sample_rate),
                                     shelf_coefficients(p["input_shelf_hz"], p["input_shelf_db"], sample_rate)))
        self.output_filter = _Filter((highpass_coefficients(p["output_highpass_hz"], sample_rate),))
        self.drive, self.asymmetry = p["tube_drive"], p["tube_asymmetry"]
        self.cells: list[_Cell] | None = None

    def gain(self, block: np.ndarray) -> np.ndarray:
        """The cell's gain (before make-up) for one block; advances the state.

        Shape: ``(channels, samples)`` in; ``(samples,)`` out when linked,
        ``(channels, samples)`` when not.
        """
        x = np.atleast_2d(block).astype(np.float64)
        if self.cells is None:
            self.cells = [_Cell(self.prm, x.shape[0])] if self.linked else \
                [_Cell(self.prm, 1) for _ in range(x.shape[0])]
        if self.linked:
            return self.cells[0].gain(x)
        if len(self.cells) != x.shape[0]:
            raise ValueError(f"block has {x.shape[0]} channels, the stream had {len(self.cells)}")
        return np.stack([cell.gain(x[c:c + 1]) for c, cell in enumerate(self.cells)])

    def process(self, block: np.ndarray) -> np.ndarray:
        """Process one ``(channels, samples)`` block (float64 inside, input dtype out)."""
        return self.process_and_gain(block)[0]

    def process_and_gain(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`process`, and the cell's gain before make-up (:meth:`gain`'s shape).

        The filters, the gain and the shaper run as the gray-box's one compiled call
        (:func:`dsp.models.streaming_kernels.graybox_block`)."""
        block = np.atleast_2d(block)
        x = np.ascontiguousarray(block, dtype=np.float64)
        g = self.gain(x)
        y = np.empty_like(x)
        z_in = self.input_filter.state_for(x.shape[0])
        z_out = self.output_filter.state_for(x.shape[0])
        gains = [g * self.make_up] * x.shape[0] if self.linked else list(np.atleast_2d(g) * self.make_up)
        for c in range(x.shape[0]) if not self.linked else (None,):
            rows = slice(None) if c is None else slice(c, c + 1)
            gain = np.ascontiguousarray(gains[0 if c is None else c])
            graybox_block(x[rows], gain, self.input_filter.b, self.input_filter.a, z_in[rows], self.drive,
                          self.asymmetry, self.output_filter.b, self.output_filter.a, z_out[rows], y[rows])
        return y.astype(block.dtype, copy=False), g


def render(x: np.ndarray, sample_rate: int, params: dict[str, float], block: int = 1 << 18,
           linked: bool = True) -> np.ndarray:
    """Process a whole ``(channels, samples)`` (or 1-D) signal through the model in blocks."""
    one_d = np.ndim(x) == 1
    x2 = np.atleast_2d(x)
    model = StreamingOpto(params, sample_rate, linked)
    out = np.concatenate([model.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)] or [x2[:, :0]],
                         axis=1)
    return out[0] if one_d else out
