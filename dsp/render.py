"""Rendering audio through the fitted compressor, block by block.

Same semantics as :func:`dsp.compressor.compress` (torchcomp's ``compexp_gain``
on the peak level, gain smoothing coefficient ``1 - exp(-2200 / (ms * sr))``),
with the gain state carried between blocks so a long file is processed in
chunks with bounded memory, and with linked detection for several channels
(the louder channel drives one gain for all).
"""
from __future__ import annotations

import numpy as np
import torch
from torchcomp import amp2db, db2amp
from torchcomp.core import compressor_core

from dsp.compressor import PEAK_FLOOR
from dsp.params import ms_to_coef

__all__ = ["BlockCompressor", "render"]


class BlockCompressor:
    """Stateful compressor for consecutive blocks of ``(channels, samples)`` audio.

    Args:
        params: physical parameters (threshold_db, ratio, attack_ms, release_ms, make_up_db).
        sample_rate: Hz; time constants are converted here.
    """

    def __init__(self, params: dict[str, float], sample_rate: int):
        self.slope = 1.0 - 1.0 / float(params["ratio"])
        self.threshold = float(params["threshold_db"])
        self.at = torch.tensor([ms_to_coef(float(params["attack_ms"]), sample_rate)], dtype=torch.float64)
        self.rt = torch.tensor([ms_to_coef(float(params["release_ms"]), sample_rate)], dtype=torch.float64)
        self.make_up = float(db2amp(torch.tensor(float(params["make_up_db"]), dtype=torch.float64)))
        self.state = torch.ones(1, dtype=torch.float64)

    def gain(self, block: np.ndarray) -> np.ndarray:
        """Smoothed linear gain (before make-up) for one block; advances the state."""
        level = np.max(np.abs(np.atleast_2d(block)), axis=0).astype(np.float64)
        level_db = amp2db(torch.from_numpy(level).clamp_min(PEAK_FLOOR))
        static = db2amp(torch.clamp(self.slope * (self.threshold - level_db), max=0.0))
        g = compressor_core(static[None, :], self.state, self.at, self.rt)[0]
        self.state = g[-1:].clone()
        return g.numpy()

    def process(self, block: np.ndarray) -> np.ndarray:
        """Compress one ``(channels, samples)`` block."""
        block = np.atleast_2d(block)
        return (block * (self.gain(block) * self.make_up)[None, :]).astype(block.dtype, copy=False)


def render(x: np.ndarray, sample_rate: int, params: dict[str, float], block: int = 1 << 18) -> np.ndarray:
    """Compress a whole ``(channels, samples)`` (or 1-D) signal in blocks."""
    one_d = np.ndim(x) == 1
    x2 = np.atleast_2d(x)
    comp = BlockCompressor(params, sample_rate)
    out = np.concatenate([comp.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)], axis=1)
    return out[0] if one_d else out
