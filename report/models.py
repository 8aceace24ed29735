"""Everything ``compare.py`` evaluates, behind one interface.

A :class:`Candidate` renders a whole signal (``render(x, sr, mode, pr)``) and
offers a stateful block processor for the real-time factor; the comparison
loops over candidates without special cases.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dsp.knobmap import KnobMap
from dsp.render import BlockCompressor, render

__all__ = ["Candidate", "dsp_candidates", "neural_candidate", "real_time_factor"]


@dataclass
class Candidate:
    name: str            # dsp, s6, lstm, ...
    kind: str            # dsp | dsp-interp | hybrid | blackbox
    params: int
    render: Callable[[np.ndarray, int, str, int], np.ndarray]
    block_processor: Callable[[int, str, int], Callable[[np.ndarray], np.ndarray]]


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


def neural_candidate(checkpoint: Path) -> Candidate:
    from neural.inference import NeuralRenderer
    r = NeuralRenderer.load(checkpoint)
    # a hybrid also carries the five DSP parameters it corrects
    params = int(r.num_parameters) + (5 if r.uses_dsp else 0)
    return Candidate(r.backbone, r.variant, params, render=r.render, block_processor=r.block_processor)


def real_time_factor(candidate: Candidate, sample_rate: int, mode: str, pr: int, seconds: float = 2.0,
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
                proc = candidate.block_processor(sample_rate, mode, pr)
                proc(x[:, :block])  # warm-up (compilation, caches)
                t0 = time.perf_counter()
                for i in range(0, x.shape[1], block):
                    proc(x[:, i:i + block])
                best = min(best, time.perf_counter() - t0)
        return seconds / best
    finally:
        torch.set_num_threads(threads)
