"""Fitting and scoring any model class behind one function each (``compressor=ff5|graybox|opto``).

The class a run fits is its options' (:func:`options_class`); the class of parameters to
score is theirs (:class:`dsp.models.classes.ModelParams`) or the one named.
"""
from __future__ import annotations

from typing import Callable, Mapping

from audio.framing import Frames
from dsp.fitting.ff5 import FitOptions, FitResult, evaluate_esr, fit_frames
from dsp.fitting.graybox import GrayboxFitOptions, evaluate_graybox_esr, fit_graybox_frames
from dsp.fitting.opto import OptoFitOptions, evaluate_opto_esr, fit_opto_frames
from dsp.models.classes import model_class

__all__ = ["options_class", "fit_any", "evaluate_any"]

_FITS = {"ff5": fit_frames, "graybox": fit_graybox_frames, "opto": fit_opto_frames}


def options_class(options: FitOptions) -> str:
    """The model class a set of fit options fits."""
    if isinstance(options, OptoFitOptions):
        return "opto"
    return "graybox" if isinstance(options, GrayboxFitOptions) else "ff5"


def fit_any(frames: Frames, init: dict | None, options: FitOptions,
            progress: Callable[[int, float, float], None] | None = None,
            level_match: bool | None = None) -> FitResult:
    """The fit of ``options``' class (:func:`dsp.fitting.ff5.fit_frames`,
    :func:`dsp.fitting.graybox.fit_graybox_frames`, :func:`dsp.fitting.opto.fit_opto_frames`)."""
    return _FITS[options_class(options)](frames, init, options, progress, level_match)


def evaluate_any(frames: Frames, params: Mapping, options: FitOptions | None = None,
                 compressor: str | None = None) -> float:
    """The fit's ESR estimator (:mod:`audio.metrics`) of fixed ``params`` on ``frames``.

    The class: ``compressor``, else the parameters' own, else the options'. ``params`` may
    hold other keys (a summary row); only the class's parameters are read.
    """
    name = compressor or getattr(params, "model_class", None) or (options_class(options) if options else None)
    if name is None:
        raise ValueError("evaluate_any: the model class is not known (pass compressor=)")
    values = {k: float(params[k]) for k in model_class(name).param_names}
    ranges = options.ranges if options is not None else None
    if name == "opto":
        return evaluate_opto_esr(frames, values)
    if name == "graybox":
        blocks = getattr(options, "blocks", None)
        return evaluate_graybox_esr(frames, values, ranges, *(() if blocks is None else (blocks,)))
    return evaluate_esr(frames, values, *(() if ranges is None else (ranges,)))
