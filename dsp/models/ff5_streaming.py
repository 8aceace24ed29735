"""Rendering audio through the fitted compressor, block by block.

Same semantics as :func:`dsp.models.ff5.compress` (torchcomp's ``compexp_gain``
on the peak level, gain smoothing coefficient ``1 - exp(-2200 / (ms * sr))``),
with the gain state carried between blocks so a long file is processed in
chunks with bounded memory. Several channels are linked by default, as on a
stereo leveller: the detector sees the loudest channel and one gain is applied to
all, so the stereo image stays put; ``linked=False`` gives every channel its own
detector and gain (dual mono).

A block is one compiled call (:func:`dsp.models.streaming_kernels.compressor_gain`,
torchcomp's arithmetic; its ``compressor_core`` starts a thread pool per call, which
costs more than a host-sized block), so short blocks stream as fast as long ones.
"""
from __future__ import annotations

import numpy as np
import torch
from torchcomp import db2amp

from dsp.models.ff5 import PEAK_FLOOR
from dsp.models.parameters import ms_to_coef
from dsp.models.streaming_kernels import compressor_gain

__all__ = ["StreamingCompressor", "render"]


class StreamingCompressor:
    """Stateful compressor for consecutive blocks of ``(channels, samples)`` audio.

    Args:
        params: physical parameters (threshold_db, ratio, attack_ms, release_ms, make_up_db).
        sample_rate: Hz; time constants are converted here.
        linked: one detector (the maximum over channels) and one gain for all
            channels; False: each channel on its own.
    """

    def __init__(self, params: dict[str, float], sample_rate: int, linked: bool = True):
        self.linked = bool(linked)
        self.slope = 1.0 - 1.0 / float(params["ratio"])
        self.threshold = float(params["threshold_db"])
        self.at = torch.tensor([ms_to_coef(float(params["attack_ms"]), sample_rate)], dtype=torch.float64)
        self.rt = torch.tensor([ms_to_coef(float(params["release_ms"]), sample_rate)], dtype=torch.float64)
        self.make_up = float(db2amp(torch.tensor(float(params["make_up_db"]), dtype=torch.float64)))
        self.state: torch.Tensor | None = None  # one gain per detector, set by the first block

    def gain(self, block: np.ndarray) -> np.ndarray:
        """Smoothed linear gain (before make-up) for one block; advances the state.

        Shape: ``(channels, samples)`` in; ``(samples,)`` out when linked,
        ``(channels, samples)`` when not.
        """
        x = np.ascontiguousarray(np.atleast_2d(block), dtype=np.float64)
        detectors = 1 if self.linked else x.shape[0]
        if self.state is None:
            self.state = torch.ones(detectors, dtype=torch.float64)
        elif self.state.shape[0] != detectors:
            raise ValueError(f"block has {detectors} detector channels, the stream had {self.state.shape[0]}")
        g = np.empty((detectors, x.shape[1]))
        compressor_gain(x, self.linked, self.threshold, self.slope, float(self.at), float(self.rt), PEAK_FLOOR,
                        self.state.numpy(), g)
        return g[0] if self.linked else g

    def process(self, block: np.ndarray) -> np.ndarray:
        """Compress one ``(channels, samples)`` block."""
        block = np.atleast_2d(block)
        gain = np.atleast_2d(self.gain(block)) * self.make_up  # (1 or channels, samples)
        return (block * gain).astype(block.dtype, copy=False)


def render(x: np.ndarray, sample_rate: int, params: dict[str, float], block: int = 1 << 18,
           linked: bool = True) -> np.ndarray:
    """Compress a whole ``(channels, samples)`` (or 1-D) signal in blocks.

    ``linked``: one gain for all channels, driven by the loudest (the default);
    False: each channel compressed on its own.
    """
    one_d = np.ndim(x) == 1
    x2 = np.atleast_2d(x)
    comp = StreamingCompressor(params, sample_rate, linked)
    out = np.concatenate([comp.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)], axis=1)
    return out[0] if one_d else out
