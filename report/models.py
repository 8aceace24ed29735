"""Everything ``compare.py`` evaluates, behind one interface.

A :class:`Candidate` renders a whole signal (``render(x, sr, *setting)``) and
offers a stateful block processor (``block_processor(sr, *setting)``) for the
real-time factor; the comparison loops over candidates without special cases.
The setting is ``(mode, pr)`` on the LA-2A, ``(knobs,)`` (a dict) on a manifest
corpus (a device with arbitrary knobs; :func:`manifest_dsp_candidates`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.errors import UserError
from dsp.knobmap import KnobMap
from dsp.knobtable import KnobTable
from dsp.render import BlockCompressor, render

__all__ = ["Candidate", "dsp_candidates", "manifest_dsp_candidates", "neural_candidate", "real_time_factor"]


@dataclass
class Candidate:
    name: str            # dsp, s6, lstm, ...
    kind: str            # dsp | dsp-interp | hybrid | blackbox
    params: int
    render: Callable[..., np.ndarray]                            # (x, sr, *setting)
    block_processor: Callable[..., Callable[[np.ndarray], np.ndarray]]   # (sr, *setting)


def dsp_candidates(kmap: KnobMap) -> list[Candidate]:
    """The fitted DSP model, and the same from the knob map without the level itself."""
    def fitted(mode, pr):
        return kmap.at(mode, pr)

    def leave_one_out(mode, pr):
        others = kmap.subset(lambda level: level != pr)
        return others.at(mode, pr) if mode in others.table else kmap.at(mode, pr)

    out = []
    for kind, params_of in (("dsp", fitted), ("dsp-interp", leave_one_out)):
        out.append(Candidate(
            "dsp", kind, 5,
            render=lambda x, sr, mode, pr, f=params_of: render(x, sr, f(mode, pr)),
            block_processor=lambda sr, mode, pr, f=params_of: BlockCompressor(f(mode, pr), sr).process))
    return out


def manifest_dsp_candidates(table: KnobTable) -> list[Candidate]:
    """On a manifest corpus: ``dsp``, the fit at the setting (the nearest fitted setting's
    where it was never fitted), and ``dsp-nearest``, the fit of the nearest *other*
    fitted setting (leave-one-out: what a setting never fitted costs the DSP model)."""
    out = []
    for kind, exclude in (("dsp", False), ("dsp-nearest", True)):
        out.append(Candidate(
            "dsp", kind, 5,
            render=lambda x, sr, knobs, e=exclude: render(x, sr, table.at(knobs, e)),
            block_processor=lambda sr, knobs, e=exclude: BlockCompressor(table.at(knobs, e), sr).process))
    return out


def neural_candidate(checkpoint: Path, knobs: list[str] | None = None) -> Candidate:
    """A trained model; ``knobs``: the manifest's knob names (None on the LA-2A), which
    the model must have been trained with.

    Raises:
        UserError: a model of another device (LA-2A vs manifest, or other knobs).
    """
    from neural.inference import NeuralRenderer
    r = NeuralRenderer.load(checkpoint)
    if knobs is None and r.knobs is not None:
        raise UserError(f"{checkpoint}: a model of a device with the knobs {', '.join(r.knobs)}, "
                        "not of the LA-2A corpus compared here")
    if knobs is not None and r.knobs != list(knobs):
        have = "LA-2A settings (mode, peak reduction)" if r.knobs is None else f"the knobs {', '.join(r.knobs)}"
        raise UserError(f"{checkpoint}: trained on {have}; the manifest has the knobs {', '.join(knobs)} "
                        "(train it again on this manifest, or point runs_dir elsewhere)")
    # a hybrid also carries the five DSP parameters it corrects
    params = int(r.num_parameters) + (5 if r.uses_dsp else 0)
    if knobs is not None:
        return Candidate(r.backbone, r.variant, params, render=r.render_knobs, block_processor=r.knob_block_processor)
    return Candidate(r.backbone, r.variant, params, render=r.render, block_processor=r.block_processor)


def real_time_factor(candidate: Candidate, sample_rate: int, *setting, seconds: float = 2.0,
                     block: int = 256) -> float:
    """Audio seconds per compute second, 256-sample blocks, one thread (best of 3).

    ``setting``: ``(mode, pr)`` on the LA-2A, ``(knobs,)`` on a manifest corpus.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((1, int(seconds * sample_rate))) * 0.1).astype(np.float32)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(3):
                proc = candidate.block_processor(sample_rate, *setting)
                proc(x[:, :block])  # warm-up (compilation, caches)
                t0 = time.perf_counter()
                for i in range(0, x.shape[1], block):
                    proc(x[:, i:i + block])
                best = min(best, time.perf_counter() - t0)
        return seconds / best
    finally:
        torch.set_num_threads(threads)
