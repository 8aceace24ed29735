"""Everything ``compare.py`` evaluates, behind one interface.

A :class:`Candidate` renders a whole signal (``render(x, sr, setting)``) and offers a
stateful block processor (``block_processor(sr, setting)``) for the real-time factor;
the setting is a knob dict of the compared device (:mod:`audio.devices`). The
comparison loops over candidates without special cases.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from audio.devices import LA2A, Device
from common.errors import UserError
from dsp.knobs.parammap import ParamMap
from dsp.models.classes import processor, render

__all__ = ["Candidate", "dsp_candidates", "neural_candidate", "real_time_factor", "is_dsp", "series_label"]


def is_dsp(model: str, kind: str) -> bool:
    """A DSP row (model ``ff5`` or ``graybox``; ``dsp`` in older reports)."""
    return kind.startswith("dsp")


def series_label(model: str, kind: str) -> str:
    """Label of a (model, kind) series: the ff5 DSP keeps its plain kind (``dsp``,
    ``dsp-interp``), the gray-box DSP and neural models are ``model kind``."""
    return kind if is_dsp(model, kind) and model in ("dsp", "ff5") else f"{model} {kind}"


@dataclass
class Candidate:
    name: str            # ff5, graybox (DSP model classes), s6, lstm, ...
    kind: str            # dsp | dsp-interp | dsp-nearest | hybrid | blackbox
    params: int
    render: Callable[[np.ndarray, int, dict], np.ndarray]                         # (x, sr, setting)
    block_processor: Callable[[int, dict], Callable[[np.ndarray], np.ndarray]]   # (sr, setting)
    steps: int | None = None        # a neural model: training steps taken, and the step of the
    best_step: int | None = None    # weights kept (best validation); None for the DSP model


def dsp_candidates(param_map: ParamMap) -> list[Candidate]:
    """``dsp``: the parameters fitted at the setting (the map's answer where it was never
    fitted); ``dsp-interp`` / ``dsp-nearest``: the map's answer without the setting
    itself (leave-one-out: what a setting never fitted costs the DSP model)."""
    model = param_map.model_class
    out = []
    for kind, params_of in (("dsp", param_map.at), (f"dsp-{param_map.between}", param_map.at_without)):
        out.append(Candidate(
            model.name, kind, len(model.param_names),
            render=lambda x, sr, setting, f=params_of: render(x, sr, f(setting)),
            block_processor=lambda sr, setting, f=params_of: processor(f(setting), sr).process))
    return out


def _describe(device: Device) -> str:
    return "LA-2A settings (mode, peak reduction)" if device == LA2A else f"the knobs {', '.join(device.knobs)}"


def neural_candidate(checkpoint: Path, device: Device = LA2A) -> Candidate:
    """A trained model, which must have been trained on settings of ``device``.

    Raises:
        UserError: a model of another device (LA-2A vs another, or other knobs).
    """
    from neural.inference import NeuralRenderer
    r = NeuralRenderer.load(checkpoint)
    if r.device != device:
        raise UserError(f"{checkpoint}: trained on {_describe(r.device)}; the corpus compared here has "
                        f"{_describe(device)} (train it again on this corpus, or point runs_dir elsewhere)")
    # a hybrid also carries the five DSP parameters it corrects
    params = int(r.num_parameters) + (5 if r.uses_dsp else 0)
    steps, best_step = _training_steps(Path(checkpoint), r.record)
    return Candidate(r.backbone, r.variant, params, render=r.render, block_processor=r.block_processor,
                     steps=steps, best_step=best_step)


def _training_steps(checkpoint: Path, record: dict) -> tuple[int | None, int | None]:
    """(steps trained, step of the kept weights): the last step of ``log.csv`` beside the
    checkpoint, and the checkpoint's own step (best.pt is written at the best step)."""
    metrics = record.get("metrics") or {}
    best = metrics.get("best_step", metrics.get("step"))
    steps = metrics.get("step")
    log = checkpoint.parent / "log.csv"
    if log.is_file():
        import csv
        with open(log, newline="") as fh:
            last = None
            for last in csv.DictReader(fh):
                pass
        if last and last.get("step"):
            steps = int(float(last["step"]))
    return (None if steps is None else int(steps)), (None if best is None else int(best))


def real_time_factor(candidate: Candidate, sample_rate: int, setting: dict, seconds: float = 2.0,
                     block: int = 256) -> float:
    """Audio seconds per compute second, 256-sample blocks, one thread (best of 3)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((1, int(seconds * sample_rate))) * 0.1).astype(np.float32)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(3):
                proc = candidate.block_processor(sample_rate, setting)
                proc(x[:, :block])  # warm-up (compilation, caches)
                t0 = time.perf_counter()
                for i in range(0, x.shape[1], block):
                    proc(x[:, i:i + block])
                best = min(best, time.perf_counter() - t0)
        return seconds / best
    finally:
        torch.set_num_threads(threads)
