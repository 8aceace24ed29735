"""An independent reference for the digital compressor, written from its documented
semantics only (no project code, no torchcomp): a plain loop over samples.

- level: the peak ``|x|`` (the largest over the channels: linked detection), floored at 1e-8;
- static curve: target gain ``min(0, (1 - 1/ratio) (threshold - 20 log10 level))`` dB;
- smoothing of the linear gain from 1: coefficient ``1 - exp(-2200 / (ms * sr))``, the
  attack one while the target gain is below the current gain, else the release one;
- make-up gain in dB on top.
"""
from __future__ import annotations

import math

import numpy as np


def reference_compress(x, sample_rate: int, threshold_db: float, ratio: float, attack_ms: float,
                       release_ms: float, make_up_db: float) -> np.ndarray:
    """Compress ``x`` (``(samples,)`` or ``(channels, samples)``); float64, same shape."""
    x = np.asarray(x, dtype=np.float64)
    frames = np.atleast_2d(x)
    at = 1.0 - math.exp(-2200.0 / (attack_ms * sample_rate))
    rt = 1.0 - math.exp(-2200.0 / (release_ms * sample_rate))
    slope = 1.0 - 1.0 / ratio
    level = np.maximum(np.max(np.abs(frames), axis=0), 1e-8)
    gains = np.empty(frames.shape[1])
    g = 1.0
    for n, lv in enumerate(level.tolist()):
        target = 10.0 ** (min(0.0, slope * (threshold_db - 20.0 * math.log10(lv))) / 20.0)
        coef = at if target < g else rt
        g = (1.0 - coef) * g + coef * target
        gains[n] = g
    out = frames * gains[None, :] * 10.0 ** (make_up_db / 20.0)
    return out.reshape(x.shape)


def reference_render(x, sample_rate: int, params: dict) -> np.ndarray:
    """:func:`reference_compress` with a parameter dict (threshold_db, ratio, attack_ms, ...)."""
    return reference_compress(x, sample_rate, params["threshold_db"], params["ratio"], params["attack_ms"],
                              params["release_ms"], params["make_up_db"])
