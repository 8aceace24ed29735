"""Fitting and scoring any model class behind one function each (``compressor=ff5|graybox|opto``)."""
from __future__ import annotations

from typing import Callable

from audio.framing import Frames
from dsp.fitting.ff5 import FitOptions, FitResult, evaluate_esr, fit_frames
from dsp.fitting.graybox import GrayboxFitOptions, evaluate_graybox_esr, fit_graybox_frames
from dsp.fitting.opto import OptoFitOptions, evaluate_opto_esr, fit_opto_frames
from dsp.models.classes import kind_of

__all__ = ["options_kind", "fit_any", "evaluate_any"]


def options_kind(options: FitOptions) -> str:
    """The model class a set of fit options fits."""
    if isinstance(options, OptoFitOptions):
        return "opto"
    return "graybox" if isinstance(options, GrayboxFitOptions) else "ff5"


def fit_any(frames: Frames, init: dict | None, options: FitOptions,
            progress: Callable[[int, float, float], None] | None = None,
            level_match: bool | None = None) -> FitResult:
    """:func:`dsp.fitting.ff5.fit_frames`, :func:`dsp.fitting.graybox.fit_graybox_frames` or
    :func:`dsp.fitting.opto.fit_opto_frames`, by ``options``."""
    fit = {"opto": fit_opto_frames, "graybox": fit_graybox_frames}.get(options_kind(options), fit_frames)
    return fit(frames, init, options, progress, level_match)


def evaluate_any(frames: Frames, params: dict, options: FitOptions | None = None) -> float:
    """Pre-emphasised ESR of fixed ``params`` (either class) on ``frames``."""
    ranges = options.ranges if options is not None else None
    if kind_of(params) == "opto":
        return evaluate_opto_esr(frames, params)
    if kind_of(params) == "graybox":
        blocks = getattr(options, "blocks", None)
        return evaluate_graybox_esr(frames, params, ranges, *(() if blocks is None else (blocks,)))
    return evaluate_esr(frames, params, *(() if ranges is None else (ranges,)))
