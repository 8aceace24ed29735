"""How close an exported module is to the project's Python renderer.

:func:`max_difference` streams a test signal (:func:`check_signal`) through the module
in odd-sized blocks at every setting of an :class:`deploy.build.Exportable` and
compares it with the Python renderer run in long blocks: the largest absolute
difference, which the export job holds under :data:`TOLERANCE`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = ["TOLERANCE", "CHECK_BLOCKS", "CHECK_SECONDS", "check_signal", "stream", "max_difference"]

TOLERANCE = 1e-4        # largest difference allowed from the Python renderer
CHECK_BLOCKS = (257, 1000, 4096)
CHECK_SECONDS = 0.3


def check_signal(seconds: float, sample_rate: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Test signal: noise bursts with loud and quiet passages, ``(channels, n)`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    env = 0.02 + 0.8 * (np.sin(2 * np.pi * 4 * t) > 0.3) + 0.2 * (np.sin(2 * np.pi * 0.7 * t) > 0)
    return (env * rng.standard_normal((channels, n)) * 0.4).astype(np.float32)


def stream(call: Callable[[np.ndarray], np.ndarray], x: np.ndarray, block: int) -> np.ndarray:
    """Run ``call`` over ``x`` ``(C, T)`` in blocks of ``block`` samples and join the outputs."""
    return np.concatenate([np.asarray(call(x[:, i:i + block])) for i in range(0, x.shape[1], block)], axis=1)


def scripted_call(module, args: tuple) -> Callable[[np.ndarray], np.ndarray]:
    """A block callable of a (scripted) module with its knob arguments."""
    return lambda b: module(torch.from_numpy(np.ascontiguousarray(b)), *args).numpy()


def max_difference(module, exportable, seconds: float = CHECK_SECONDS) -> float:
    """Largest ``|module - Python renderer|`` over the exportable's settings, each in
    another of :data:`CHECK_BLOCKS`; the module is reset before and after."""
    x = check_signal(seconds, exportable.sample_rate)
    worst = 0.0
    with torch.no_grad():
        for i, setting in enumerate(exportable.settings):
            module.reset()
            y = stream(scripted_call(module, exportable.knob_args(setting)), x, CHECK_BLOCKS[i % len(CHECK_BLOCKS)])
            ref = stream(exportable.reference(setting), x, 4096)
            diff = float(np.max(np.abs(y - ref)))
            if diff != diff:   # NaN: as far off as it gets
                diff = float("inf")
            worst = max(worst, diff)
    module.reset()
    return worst
