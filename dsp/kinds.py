"""The two DSP model classes (``compressor=ff5|graybox``) behind one set of functions.

Everything downstream of a fit (checkpoints, knob maps, rendering, streaming, neural
hybrids, comparison) takes a parameter dict; its keys say which model it is: the
five compressor parameters alone (``ff5``), or those plus the gray-box blocks'
(``graybox``, :data:`dsp.graybox.BLOCK_NAMES`). Fitting dispatches on the options'
type (:class:`dsp.graybox.GrayboxFitOptions` fits the gray-box).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from audio.framing import Frames
from dsp.fit import FitOptions, FitResult, evaluate_esr, fit_frames
from dsp.graybox import (BLOCK_NAMES, GRAYBOX_NAMES, BlockGraybox, GrayboxFitOptions, evaluate_graybox_esr,
                         fit_graybox_frames)
from dsp.graybox import render as render_graybox
from dsp.params import PARAM_NAMES
from dsp.render import BlockCompressor
from dsp.render import render as render_ff5

__all__ = ["KINDS", "kind_of", "param_names", "options_kind", "fit_any", "evaluate_any", "renderer_for",
           "render_any"]

KINDS = ("ff5", "graybox")
_NAMES = {"ff5": PARAM_NAMES, "graybox": GRAYBOX_NAMES}


def kind_of(params: dict) -> str:
    """``graybox`` when ``params`` holds every block parameter, else ``ff5``."""
    return "graybox" if all(k in params for k in BLOCK_NAMES) else "ff5"


def param_names(kind: str) -> tuple[str, ...]:
    """The parameter names of a model class, in their stored order."""
    if kind not in _NAMES:
        raise ValueError(f"compressor must be one of {', '.join(KINDS)}, got {kind!r}")
    return _NAMES[kind]


def options_kind(options: FitOptions) -> str:
    """The model class a set of fit options fits."""
    return "graybox" if isinstance(options, GrayboxFitOptions) else "ff5"


def fit_any(frames: Frames, init: dict | None, options: FitOptions,
            progress: Callable[[int, float, float], None] | None = None,
            level_match: bool | None = None) -> FitResult:
    """:func:`dsp.fit.fit_frames` or :func:`dsp.graybox.fit_graybox_frames`, by ``options``."""
    fit = fit_graybox_frames if options_kind(options) == "graybox" else fit_frames
    return fit(frames, init, options, progress, level_match)


def evaluate_any(frames: Frames, params: dict, options: FitOptions | None = None) -> float:
    """Pre-emphasised ESR of fixed ``params`` (either class) on ``frames``."""
    ranges = options.ranges if options is not None else None
    if kind_of(params) == "graybox":
        blocks = getattr(options, "blocks", None)
        return evaluate_graybox_esr(frames, params, ranges, *(() if blocks is None else (blocks,)))
    return evaluate_esr(frames, params, *(() if ranges is None else (ranges,)))


def renderer_for(params: dict, sample_rate: int):
    """A stateful block processor (``.process((channels, n)) -> (channels, n)``) for ``params``."""
    if kind_of(params) == "graybox":
        return BlockGraybox(params, sample_rate)
    return BlockCompressor(params, sample_rate)


def render_any(x: np.ndarray, sample_rate: int, params: dict, block: int = 1 << 18) -> np.ndarray:
    """Render a whole ``(channels, samples)`` or 1-D signal with either model class."""
    render = render_graybox if kind_of(params) == "graybox" else render_ff5
    return render(x, sample_rate, params, block=block)
