"""Fitting the gray-box model (:mod:`dsp.models.graybox`) to one framed pair, in two Newton stages.

1. The five compressor parameters by the fused ff5 kernel (:func:`dsp.fitting.ff5.fit_frames`).
2. The gain signal held, the make-up and the six block parameters
   (:class:`dsp.derivatives.graybox_objectives.BlockObjective`: FFT filters with the
   pre-emphasis folded into the output filter, a pointwise shaper; exact 7x7 gradient and
   Hessian from first-order signals and adjoints). With ``blocks_fixed`` and a previous
   level's blocks in ``init``, only the make-up (:func:`fit_make_up`).

``compressor.joint_autograd`` adds a Newton on all eleven by autograd through the
compressor; its cost is measured by ``benchmarks/graybox_fit.py`` (``docs/graybox.md``).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, fields
from typing import Callable

import torch

from audio.framing import Frames
from dsp.derivatives.graybox_objectives import BlockObjective, GrayboxObjective, MakeUpObjective, STAGE2_NAMES
from dsp.fitting.ff5 import FitOptions, FitResult, fit_frames
from dsp.fitting.newton import NewtonOptions, newton
from dsp.models.graybox import BLOCK_NAMES, GRAYBOX_NAMES, TRANSPARENT, BlockRanges, GrayboxParameterisation
from dsp.models.parameters import PARAM_NAMES

__all__ = ["GrayboxFitOptions", "fit_graybox_frames", "fit_blocks", "fit_make_up", "evaluate_graybox_esr"]


@dataclass
class GrayboxFitOptions(FitOptions):
    """:class:`dsp.fitting.ff5.FitOptions` (used as is by the five-parameter stage) plus the blocks'.

    Attributes:
        blocks: block ranges.
        start: the blocks' start (transparent by default).
        block_max_step: largest move of one Newton step of a block logit.
        joint_autograd: after the two stages, Newton on all eleven parameters with
            autograd through the compressor (slow: see :func:`fit_graybox_frames`).
        blocks_fixed: when ``init`` brings the six block values (a chain's previous
            level), hold them and refit only the make-up in stage 2 (:func:`fit_make_up`);
            without them the blocks are fitted as usual (the chain's first level).
    """
    blocks: BlockRanges = field(default_factory=BlockRanges)
    start: dict = field(default_factory=lambda: dict(TRANSPARENT))
    block_max_step: float = 2.0
    joint_autograd: bool = False
    blocks_fixed: bool = False


def _ff5_options(options: FitOptions) -> FitOptions:
    """The plain five-parameter options inside ``options``."""
    return FitOptions(**{f.name: getattr(options, f.name) for f in fields(FitOptions)})


def _newton_options(options: FitOptions, energy: float, max_step) -> NewtonOptions:
    return NewtonOptions(**{**options.newton.__dict__, "atol": options.atol_esr * energy,
                            "max_step": tuple(max_step)})


def fit_graybox_frames(frames: Frames, init: dict[str, float] | None = None,
                       options: FitOptions | None = None,
                       progress: Callable[[int, float, float], None] | None = None,
                       level_match: bool | None = None) -> FitResult:
    """Fit the eleven gray-box parameters to ``frames``, in two Newton stages.

    1. The five compressor parameters: :func:`dsp.fitting.ff5.fit_frames` (the fused exact
       kernel) from the five of ``init`` (``level_match`` as there).
    2. The make-up gain and the six block parameters, the compressor's gain signal held
       (:class:`BlockObjective`): Newton with the exact 7x7 gradient and Hessian
       (:mod:`dsp.derivatives.graybox_blocks`). With ``options.blocks_fixed`` and ``init``'s
       blocks, only the make-up is refitted, the blocks held (:func:`fit_make_up`). It starts from ``init``'s
       blocks when ``init`` has them (a chain's previous level), else from
       ``options.start``; its make-up starts from whichever of stage 1's and ``init``'s
       gives the lower loss.
    3. Only with ``options.joint_autograd``: Newton on all eleven with autograd through
       the compressor recursion (:class:`GrayboxObjective`, an 11-row Hessian of
       reverse over reverse through torchcomp): many times slower than the two stages
       (``docs/graybox.md``), so it is a check, not a default.

    The five compressor parameters are not refitted with the blocks held: the fused
    kernel has no post-processing stage, and the compressor detector sees the input, so
    the blocks change only what follows the gain.

    Args:
        frames: the framed input/target pair.
        init: physical start (five or eleven parameters) or None (the published start).
        options: :class:`GrayboxFitOptions` (a plain :class:`FitOptions` gets block defaults).
        progress: per-iteration callback ``(iteration, loss, decrement)`` (every stage).
        level_match: see :func:`dsp.fitting.ff5.fit_frames` (stage 1).

    Returns:
        :class:`dsp.fitting.ff5.FitResult` with ``params`` holding all of :data:`GRAYBOX_NAMES`;
        ``iterations``, ``seconds`` and ``history`` cover every stage, ``reason`` is the
        last stage's.
    """
    options = options if options is not None else GrayboxFitOptions()
    blocks = getattr(options, "blocks", BlockRanges())
    param = GrayboxParameterisation(frames.sample_rate, options.ranges, blocks)
    start_time = time.perf_counter()
    five = None if init is None else {k: float(init[k]) for k in PARAM_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the last stage decides convergence
        first = fit_frames(frames, five, _ff5_options(options), progress, level_match)
    warm = init is not None and all(k in init for k in BLOCK_NAMES)
    start = {**first.params, **({k: float(init[k]) for k in BLOCK_NAMES} if warm
                                else dict(getattr(options, "start", TRANSPARENT)))}
    make_up_starts = [first.params["make_up_db"]] + ([float(init["make_up_db"])] if warm else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if warm and getattr(options, "blocks_fixed", False):
            second = fit_make_up(frames, first.params, start, options, progress, make_up_starts)
        else:
            second = fit_blocks(frames, first.params, start, options, progress, make_up_starts)
    iterations = first.iterations + second.iterations
    history = first.history + second.history
    last = second
    if getattr(options, "joint_autograd", False):
        joint = GrayboxObjective(frames, param, options.device)
        max_step = tuple(options.max_step) + (_block_step(options),) * len(BLOCK_NAMES)
        z0 = param.from_physical(second.params)
        result = newton(joint, z0, _newton_options(options, joint.energy, max_step), progress)
        last = FitResult(param.to_physical(result.z), result.loss / joint.energy, result.loss, result.iterations,
                         result.converged, result.reason, result.seconds, second.params, result.history)
        iterations += last.iterations
        history += last.history
    if not last.converged:
        warnings.warn(f"gray-box fit did not converge: {last.reason}", RuntimeWarning, stacklevel=2)
    return FitResult(params=last.params, esr=last.esr, loss=last.loss, iterations=iterations,
                     converged=last.converged, reason=last.reason, seconds=time.perf_counter() - start_time,
                     initial_params=second.initial_params, history=history)


def _block_step(options) -> float:
    return float(getattr(options, "block_max_step", 2.0))


def fit_blocks(frames: Frames, compressor: dict[str, float], start: dict[str, float],
               options: FitOptions | None = None,
               progress: Callable[[int, float, float], None] | None = None,
               make_up_starts: list[float] | None = None) -> FitResult:
    """Stage 2: the make-up gain and the six block parameters, the compressor's gain held.

    Newton on :class:`BlockObjective` with its exact gradient and Hessian.

    Args:
        frames: the framed input/target pair.
        compressor: the five compressor parameters (physical), held; their make-up is
            only a start.
        start: physical start of the blocks (and ``make_up_db``, used if present).
        options: ranges, block ranges, solver tolerances (:class:`GrayboxFitOptions`).
        progress: per-iteration callback ``(iteration, loss, decrement)``.
        make_up_starts: candidate make-up starts (dB); the one with the lowest loss wins.

    Returns:
        :class:`dsp.fitting.ff5.FitResult` with all of :data:`GRAYBOX_NAMES` (the compressor's
        four held, make-up and blocks fitted); ``initial_params`` is the stage's start.
    """
    options = options if options is not None else GrayboxFitOptions()
    param = GrayboxParameterisation(frames.sample_rate, options.ranges, getattr(options, "blocks", BlockRanges()))
    objective = BlockObjective(frames, param, compressor, options.device)
    if objective.energy <= 0:
        raise ValueError("the target is silent after the warm-up; nothing to fit")
    base = {**compressor, **{k: v for k, v in start.items() if k in STAGE2_NAMES}}
    z0 = objective.stage_vector(base)
    for m in make_up_starts or []:
        other = z0.clone()
        other[0] = float(m)
        if objective.loss(other) < objective.loss(z0):
            z0 = other
    max_step = (options.max_step[4],) + (_block_step(options),) * len(BLOCK_NAMES)
    result = newton(objective, z0, _newton_options(options, objective.energy, max_step), progress)
    if not result.converged:
        warnings.warn(f"gray-box block fit did not converge: {result.reason}", RuntimeWarning, stacklevel=2)
    return FitResult.from_newton(result, objective.energy, param.to_physical(objective.full_vector(result.z, base)),
                                 param.to_physical(objective.full_vector(z0, base)))


def fit_make_up(frames: Frames, compressor: dict[str, float], blocks: dict[str, float],
                options: FitOptions | None = None,
                progress: Callable[[int, float, float], None] | None = None,
                make_up_starts: list[float] | None = None) -> FitResult:
    """Stage 2 with the blocks held: Newton on the make-up gain alone (:class:`MakeUpObjective`).

    Args:
        frames: the framed input/target pair.
        compressor: the five compressor parameters (physical), held; their make-up is a start.
        blocks: the six block values (physical), held (e.g. fitted at a chain's first level).
        options: as :func:`fit_blocks`.
        progress: per-iteration callback ``(iteration, loss, decrement)``.
        make_up_starts: candidate make-up starts (dB); the one with the lowest loss wins.

    Returns:
        :class:`dsp.fitting.ff5.FitResult` with all of :data:`GRAYBOX_NAMES` (only make-up fitted).
    """
    options = options if options is not None else GrayboxFitOptions()
    param = GrayboxParameterisation(frames.sample_rate, options.ranges, getattr(options, "blocks", BlockRanges()))
    param.blocks.check(blocks, where="held blocks")
    stage = BlockObjective(frames, param, compressor, options.device)
    if stage.energy <= 0:
        raise ValueError("the target is silent after the warm-up; nothing to fit")
    base = {**compressor, **{k: float(blocks[k]) for k in BLOCK_NAMES}}
    objective = MakeUpObjective(stage, torch.tensor([base[k] for k in BLOCK_NAMES], dtype=torch.float64))
    z0 = torch.tensor([float(compressor["make_up_db"])], dtype=torch.float64)
    for m in make_up_starts or []:
        other = torch.tensor([float(m)], dtype=torch.float64)
        if objective.loss(other) < objective.loss(z0):
            z0 = other
    result = newton(objective, z0, _newton_options(options, objective.energy, (options.max_step[4],)), progress)
    if not result.converged:
        warnings.warn(f"gray-box make-up fit did not converge: {result.reason}", RuntimeWarning, stacklevel=2)

    def physical(z):
        return {**base, "make_up_db": float(z[0])}
    return FitResult.from_newton(result, objective.energy, {k: physical(result.z)[k] for k in GRAYBOX_NAMES},
                                 {k: physical(z0)[k] for k in GRAYBOX_NAMES})


def evaluate_graybox_esr(frames: Frames, params: dict[str, float], ranges=None,
                         blocks: BlockRanges = BlockRanges()) -> float:
    """Pre-emphasised ESR of fixed physical gray-box ``params`` on ``frames`` (no fitting)."""
    param = GrayboxParameterisation(frames.sample_rate, ranges, blocks)
    # the held-gain stage at the compressor's own parameters is the whole model, a few frames at a time
    stage = BlockObjective(frames, param, params)
    return stage.loss(stage.stage_vector(params)) / stage.energy


