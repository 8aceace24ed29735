"""The Python API: fit a pair, render with a fit, render at any setting of a knob map,
run a neural model. Arrays in, arrays out; physical units everywhere.

    import leveller
    fit = leveller.fit_pair("dry.wav", "wet.wav")               # dict: params, esr, ...
    y = leveller.render(x, 44100, fit["params"])                # x: (samples,) or (channels, samples)
    fits = leveller.load_param_map("checkpoints/standin")       # a chain folder or knobmap.yaml
    y = leveller.render(x, 44100, fits.at({"mode": "compress", "peak_reduction": 65}))
    model = leveller.load_neural("runs/s6_hybrid/best.pt")
    y = model.render(x, 44100, {"mode": "compress", "peak_reduction": 65})

The command-line tools (``train_comp.py`` and the rest) run the same library code with
a config; this module is for notebooks and other programs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["fit_pair", "render", "load_fit", "load_param_map", "load_neural"]


def fit_pair(input_path: str | Path, target_path: str | Path, *, frame_s: float = 12.0,
             overlap_s: float = 1.0, init: dict | None = None, align: str = "auto") -> dict:
    """Fit the 5-parameter compressor to one (dry, device output) pair.

    Args:
        input_path, target_path: audio files of the same rate.
        frame_s, overlap_s: frame length and its unscored warm-up, seconds.
        init: physical start (None: the published default, level-matched).
        align: ``"auto"`` corrects the target's latency and polarity (:mod:`audio.pairs`);
            ``"off"`` takes the pair as it is (lengths must then match).

    Returns:
        ``{"params": {threshold_db, ratio, attack_ms, release_ms, make_up_db}, "esr",
        "iterations", "converged", "seconds", "sample_rate"}``; the ESR is on the
        fitted audio.
    """
    from audio.pairs import read_aligned_pair
    from audio.framing import frame_pair
    from dsp.fitting.ff5 import fit_frames

    x, y, sr, _ = read_aligned_pair(Path(input_path), Path(target_path), align)
    res = fit_frames(frame_pair(x, y, sr, frame_s, overlap_s, target_path), init)
    return {"params": res.params, "esr": res.esr, "iterations": res.iterations,
            "converged": res.converged, "seconds": res.seconds, "sample_rate": sr}


def render(x: np.ndarray, sample_rate: int, params: dict) -> np.ndarray:
    """Compress ``x`` (``(samples,)`` or ``(channels, samples)``) with fitted parameters."""
    from dsp.models.ff5_streaming import render as render_params
    return render_params(np.asarray(x, dtype=np.float64), int(sample_rate), params)


def load_fit(path: str | Path) -> dict:
    """The record of a one-pair fit: its ``ckpt.yaml`` or the folder holding it."""
    from dsp.storage.records import load_checkpoint
    p = Path(path)
    return load_checkpoint(p / "ckpt.yaml" if p.is_dir() else p)


def load_param_map(path: str | Path):
    """The knob map of a chain or joint fit (its folder, ``knobmap.yaml`` or a manifest
    joint fit's ``knobcurves.yaml``); ``.at(setting)`` gives the parameters at any setting."""
    from dsp.knobs.parammap import load_param_map as load
    p = Path(path)
    if p.is_dir():
        p = p / "knobcurves.yaml" if (p / "knobcurves.yaml").is_file() and not (p / "knobmap.yaml").is_file() \
            else p / "knobmap.yaml"
    return load(p)


def load_neural(path: str | Path):
    """A trained neural model (``best.pt``); ``.render(x, sample_rate, setting)``."""
    from neural.inference import NeuralRenderer
    return NeuralRenderer.load(Path(path))
