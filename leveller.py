"""The Python API: fit a pair, open any fit, render at any setting, run a neural model.
Arrays in, arrays out; physical units everywhere.

    import leveller
    fit = leveller.fit_pair("dry.wav", "wet.wav")                # dict: params, esr, alignment, ...
    y = leveller.render(x, 44100, fit["params"])                 # x: (samples,) or (channels, samples)
    chain = leveller.open_fit("checkpoints/standin")             # any fit folder or file
    y = chain.render(x, 44100, {"mode": "compress", "peak_reduction": 65})
    model = leveller.load_neural("runs/lru_hybrid/best.pt")
    y = model.render(x, 44100, {"mode": "compress", "peak_reduction": 65})

Bad input (a missing file, a setting outside what was fitted, parameters out of range,
NaN audio) raises :class:`UserError` with a one-line message. The command-line tools
(``train_comp.py`` and the rest) run the same library code with a config; this module is
for notebooks and other programs.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from common.errors import UserError

__all__ = ["UserError", "fit_pair", "open_fit", "render", "load_neural"]


def fit_pair(input_path: str | Path, target_path: str | Path, *, compressor: str = "opto", frame_s: float = 12.0,
             overlap_s: float = 1.0, init: dict | None = None, align: str = "auto") -> dict:
    """Fit a model class (``compressor``: ``opto``, the optical cell in the unit's blocks, as
    ``train_comp.py`` does by default; a pair's mode is not known, so it fits no limit-mode
    input tap; ``graybox``, the five-parameter compressor in those blocks; ``ff5``; each fits
    a multichannel pair with its channels linked, as it renders it) to one (dry, device output) pair.

    Args:
        input_path, target_path: audio files of the same rate.
        compressor: the model class (:mod:`dsp.models.classes`).
        frame_s, overlap_s: frame length and its unscored warm-up, seconds.
        init: physical start (None: the published default, level-matched).
        align: ``"auto"`` corrects the target's latency and polarity (:mod:`audio.pairs`);
            ``"off"`` takes the pair as it is (lengths must then match).

    Returns:
        ``{"params", "compressor", "esr", "iterations", "converged", "seconds",
        "sample_rate", "alignment", "warnings"}``: ``params`` render with :func:`render`;
        the ESR is the fit's, on the fitted audio; ``alignment`` is what was corrected
        (``latency_samples``, ``polarity``); ``warnings`` lists what the fit noted (e.g. it
        did not converge).
    """
    from audio.framing import frame_pair
    from audio.pairs import read_aligned_pair
    from dsp.fitting.by_class import fit_any
    from dsp.fitting.ff5 import FitOptions
    from dsp.fitting.graybox import GrayboxFitOptions
    from dsp.fitting.opto import OptoFitOptions
    from dsp.models.classes import model_class

    try:
        cls = model_class(compressor)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    options = {"ff5": FitOptions, "graybox": GrayboxFitOptions, "opto": OptoFitOptions}[cls.name]()
    x, y, sr, aligned = read_aligned_pair(Path(input_path), Path(target_path), align)
    frames = frame_pair(x, y, sr, frame_s, overlap_s, target_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = fit_any(frames, init, options, level_match=True)
    return {"params": cls.check(res.params, str(target_path)), "compressor": cls.name, "esr": res.esr,
            "iterations": res.iterations, "converged": res.converged, "seconds": res.seconds, "sample_rate": sr,
            "alignment": {"latency_samples": float(aligned.latency_samples), "polarity": int(aligned.polarity)},
            "warnings": [str(w.message) for w in caught]}


def open_fit(path: str | Path):
    """Any fit a fit job wrote: a one-pair fit (``ckpt.yaml`` or its folder), a chain or joint
    fit folder, a manifest fit folder, or one of their files.

    Returns:
        a :class:`dsp.storage.open_fit.FittedModel`: ``.at(setting)`` (the parameters),
        ``.render(x, sample_rate, setting=None)``, ``.processor(sample_rate, setting)``
        (block by block), ``.check(setting)``, ``.describe()``.
    """
    from dsp.storage.open_fit import open_fit as open_any
    return open_any(path)


def render(x: np.ndarray, sample_rate: int, params: Mapping, compressor: str | None = None) -> np.ndarray:
    """Compress ``x`` (``(samples,)`` or ``(channels, samples)``) with physical parameters.

    ``params`` from :func:`fit_pair` or a fit's ``.at(setting)`` know their model class; a
    plain dict is read as the class whose parameters it holds exactly, or as ``compressor``.
    """
    from dsp.models.classes import class_of
    x = np.asarray(x)
    if x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.number):
        raise UserError(f"audio must be a numeric (samples,) or (channels, samples) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise UserError("audio holds NaN or infinite samples")
    try:
        cls = class_of(params, compressor)
        return cls.render(x.astype(np.float64), sample_rate, params)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def load_neural(path: str | Path):
    """A trained neural model (``best.pt``); ``.render(x, sample_rate, setting)``."""
    from neural.inference import NeuralRenderer
    return NeuralRenderer.load(Path(path))
