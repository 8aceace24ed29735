"""Fitting the optical-cell model (:mod:`dsp.models.opto`) to one framed pair, by Newton with exact derivatives.

Two kinds of stage, each a Newton run with its exact gradient and Hessian:

- **cell**: the cell's parameters and the make-up, the blocks held inside the fused kernel
  (:class:`dsp.derivatives.opto_kernel.OptoObjective`; without blocks yet: the core alone);
- **blocks**: the make-up and the six block parameters, the cell's gain signal held (the
  sidechain sees the input before the input transformer, so the gain does not depend on
  the blocks): the gray-box's second stage (:class:`dsp.derivatives.graybox_objectives.BlockObjective`)
  on this model's gain.

A fit whose start has no blocks (a cold start, a chain's first level) picks the start's
threshold and make-up on the cell alone, then runs blocks, cell (``rounds`` times): the
blocks are first fitted on the start's gain, and the cell is only ever fitted *through*
the blocks, so it does not bend to make up for the transformers' phase and the tube
(a cell fitted alone first moved its attack and memory to do so, and the blocks fitted on
its gain inherited that). With ``blocks_fixed`` and the
blocks in ``init`` (a chain's later levels) only the cell stage runs. ``fit_unit`` fits one
set of blocks for the first levels of both modes (one unit, both modes).
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from audio.framing import Frames
from common.memory import release_freed_memory
from dsp.derivatives.graybox_objectives import BlockObjective, HeldGainFrames
from audio.metrics import preemphasis_np
from dsp.derivatives.opto_kernel import OptoObjective, gain_frames, loss_natural, prepare
from dsp.fitting.ff5 import FitOptions, FitResult, _ThresholdFloor
from dsp.fitting.newton import NewtonOptions, NewtonResult, newton
from dsp.models.graybox import BLOCK_NAMES, TRANSPARENT, BlockRanges, GrayboxParameterisation
from dsp.models.opto import CORE_NAMES, OPTO_NAMES, OPTO_START, OptoParameterisation, OptoRanges, natural_from_physical

__all__ = ["OptoFitOptions", "fit_opto_frames", "fit_cell", "fit_opto_blocks", "fit_unit", "evaluate_opto_esr",
           "cell_steps", "cell_of", "pick_threshold"]

# the start's threshold is searched on this grid (dB, the sidechain's mean-square level) before
# Newton: far above the material the loss is flat in every cell parameter
THRESHOLD_GRID = tuple(float(t) for t in range(-60, 1, 4))


@dataclass
class OptoFitOptions(FitOptions):
    """:class:`dsp.fitting.ff5.FitOptions` (solver tolerances, device) plus the cell's and the blocks'.

    Attributes:
        cell: the cell's ranges.
        blocks: block ranges (the gray-box's).
        start: the cell's start (physical; a cold start level-matches its make-up and picks
            its threshold on :data:`THRESHOLD_GRID`).
        block_start: the blocks' start (transparent).
        cell_max_step: largest Newton move of a cell logit (dB coordinates: ``max_step``'s 6 dB).
        block_max_step: largest Newton move of a block logit.
        blocks_fixed: a fit whose ``init`` holds the blocks keeps them (a chain's later levels).
        rounds: block-then-cell stages where the blocks are fitted.
        fit_mix: fit limit mode's input tap; None: by the mode (:meth:`for_mode`), False
            for a fit whose mode is not known.
        mix_modes: the modes whose sidechain taps the input.
        one_unit: a chain fits one set of blocks for both modes at their first levels.
    """
    cell: OptoRanges = field(default_factory=OptoRanges)
    blocks: BlockRanges = field(default_factory=BlockRanges)
    start: dict = field(default_factory=lambda: dict(OPTO_START))
    block_start: dict = field(default_factory=lambda: dict(TRANSPARENT))
    cell_max_step: float = 2.0
    block_max_step: float = 2.0
    blocks_fixed: bool = True
    rounds: int = 1
    fit_mix: bool | None = None
    mix_modes: tuple = ("limit",)
    one_unit: bool = False

    def for_mode(self, mode: str) -> "OptoFitOptions":
        """These options for a fit of ``mode`` (the input tap is fitted in :attr:`mix_modes` only)."""
        return dataclasses.replace(self, fit_mix=str(mode) in self.mix_modes)


def _newton_options(options: FitOptions, energy: float, max_step) -> NewtonOptions:
    return NewtonOptions(**{**options.newton.__dict__, "atol": options.atol_esr * energy,
                            "max_step": tuple(max_step)})


def cell_steps(param: OptoParameterisation, options: OptoFitOptions) -> tuple:
    """The largest Newton move of each cell coordinate: ``max_step``'s dB for the threshold and
    make-up, ``cell_max_step`` for a logit."""
    db = float(options.max_step[0])
    return tuple(db if n in ("threshold_db", "make_up_db") else float(options.cell_max_step) for n in param.names)


def _blocks_of(params: dict | None) -> dict | None:
    if params is None or not all(k in params for k in BLOCK_NAMES):
        return None
    return {k: float(params[k]) for k in BLOCK_NAMES}


def cell_of(params: dict | None, options: OptoFitOptions) -> dict:
    """The cell's parameters of ``params`` (physical), or the options' start where it lacks one."""
    if params is None or not all(k in params for k in CORE_NAMES):
        return dict(options.start)
    return {k: float(params[k]) for k in CORE_NAMES}


def fit_cell(frames: Frames, cell: dict, blocks: dict | None, options: OptoFitOptions,
             progress: Callable[[int, float, float], None] | None = None, cold: bool = False) -> tuple[dict, NewtonResult, float]:
    """The cell stage: Newton on the cell's free parameters and the make-up, ``blocks`` held
    (None: no blocks).

    Args:
        cell: the cell's start (physical, :data:`dsp.models.opto.CORE_NAMES`).
        cold: first pick the threshold on :data:`THRESHOLD_GRID`, each with its level-matched make-up.

    Returns:
        ``(cell parameters, the Newton result, the target energy)``.
    """
    param = OptoParameterisation(frames.sample_rate, options.cell, bool(options.fit_mix))
    objective = OptoObjective(frames, param, blocks)
    if objective.energy <= 0:
        raise ValueError("the target is silent after the warm-up; nothing to fit")
    z0 = param.from_physical(cell)
    if cold:
        z0 = pick_threshold(objective, param, z0)
    solved = objective
    floor = getattr(options, "threshold_floor", None)
    if floor is not None:   # a chain's shape prior (jobs.chain.ChainSpec.monotone_threshold); z[0] is the threshold, dB
        z0[0] = max(float(z0[0]), float(floor))
        solved = _ThresholdFloor(objective, float(floor))
    result = newton(solved, z0, _newton_options(options, objective.energy, cell_steps(param, options)), progress)
    if solved is not objective:   # the fit's figures are the model's, without the prior's term
        result.loss = objective.loss(result.z)
    return param.to_physical(result.z), result, objective.energy


def _cold_cell(frames: Frames, cell: dict, options: OptoFitOptions) -> dict:
    """The cell's start with its threshold picked on :data:`THRESHOLD_GRID` and its make-up
    level-matched, on the cell alone (no Newton step)."""
    param = OptoParameterisation(frames.sample_rate, options.cell, bool(options.fit_mix))
    objective = OptoObjective(frames, param, None)
    return param.to_physical(pick_threshold(objective, param, param.from_physical(cell)))


def _level_match(objective: OptoObjective, param: OptoParameterisation, z: torch.Tensor) -> torch.Tensor:
    z = z.clone()
    at = param.names.index("make_up_db")
    z[at] = 0.0
    e_out = objective.output_energy(z)
    if e_out > 0 and objective.energy > 0:
        z[at] = 10.0 * math.log10(objective.energy / e_out)
    return z


def pick_threshold(objective: OptoObjective, param: OptoParameterisation, z: torch.Tensor) -> torch.Tensor:
    """The threshold of :data:`THRESHOLD_GRID` with the lowest loss, each level-matched."""
    best, best_loss = z, math.inf
    at = param.names.index("threshold_db")
    for t in THRESHOLD_GRID:
        trial = z.clone()
        trial[at] = t
        trial = _level_match(objective, param, trial)
        f = objective.loss(trial)
        if f < best_loss:
            best, best_loss = trial, f
    return best


class _OptoGainFrames(HeldGainFrames):
    """:class:`dsp.derivatives.graybox_objectives.HeldGainFrames` whose held gain is the cell's
    (before make-up, ``(B, T)``) instead of the five-parameter compressor's, made per group
    of frames as the rest (a long pair's gains for every frame at once would be its size in
    float64 again)."""

    def __init__(self, frames: Frames, cell_natural, n_fft: int, device, dtype):
        self._data, self._cell = prepare(frames), cell_natural
        super().__init__(frames, torch.zeros(5, dtype=torch.float64), n_fft, device, dtype)

    def _make(self, part: slice):
        release_freed_memory()   # the previous group's signals (the caller dropped them), before the next
        x, y, _ = self.frames.rows(part)
        kw = {"dtype": self.dtype, "device": self.device}
        x = torch.as_tensor(x, **kw)
        mask = torch.as_tensor(self.frames.mask_rows(part), device=self.device)
        gain = torch.as_tensor(gain_frames(self._data, self._cell, part), **kw)
        target = torch.as_tensor(preemphasis_np(y) * mask.cpu().numpy(), **kw)
        return torch.fft.rfft(x, n=self.n_fft), gain, mask, target


def _block_param(frames: Frames, options: OptoFitOptions) -> GrayboxParameterisation:
    return GrayboxParameterisation(frames.sample_rate, None, options.blocks)


def _block_objective(frames: Frames, cell: dict, options: OptoFitOptions):
    natural = natural_from_physical(cell, frames.sample_rate)
    # the gray-box's block stage (make-up and six block logits, exact derivatives) on the cell's gain
    return BlockObjective(frames, _block_param(frames, options), None,
                          held=lambda n_fft: _OptoGainFrames(frames, natural, n_fft, torch.device("cpu"), torch.float64))


def _block_vector(objective: BlockObjective, cell: dict, blocks: dict) -> torch.Tensor:
    # the gray-box map reads the five shared names; only the make-up and the blocks are used
    return objective.stage_vector({**cell, **blocks})


def _block_values(objective: BlockObjective, z: torch.Tensor) -> tuple[float, dict]:
    values = objective.param.block_values(z[1:].detach()).tolist()
    return float(z[0]), dict(zip(BLOCK_NAMES, values))


def fit_opto_blocks(frames: Frames, cell: dict, blocks: dict, options: OptoFitOptions,
                    progress: Callable[[int, float, float], None] | None = None) -> tuple[float, dict, NewtonResult, float]:
    """The blocks stage: Newton on the make-up and the six block parameters, the cell's gain held.

    Returns:
        ``(make-up dB, blocks, the Newton result, the target energy)``.
    """
    objective = _block_objective(frames, cell, options)
    z0 = _block_vector(objective, cell, blocks)
    steps = (options.max_step[4],) + (float(options.block_max_step),) * len(BLOCK_NAMES)
    result = newton(objective, z0, _newton_options(options, objective.energy, steps), progress)
    make_up, values = _block_values(objective, result.z)
    return make_up, values, result, objective.energy


def fit_opto_frames(frames: Frames, init: dict | None = None, options: FitOptions | None = None,
                    progress: Callable[[int, float, float], None] | None = None,
                    level_match: bool | None = None) -> FitResult:
    """Fit the optical-cell model to ``frames``.

    Args:
        frames: the framed input/target pair.
        init: physical start (every name of :data:`OPTO_NAMES`, or the cell's only, or None:
            :attr:`OptoFitOptions.start`, a cold start).
        options: :class:`OptoFitOptions` (``fit_mix`` None fits no input tap: a pair's mode is
            not known).
        progress: per-iteration callback ``(iteration, loss, decrement)`` (every stage).
        level_match: pick the start's threshold and level-match its make-up; by default for a
            start without the cell's parameters.

    Returns:
        :class:`dsp.fitting.ff5.FitResult` with every name of :data:`OPTO_NAMES`; iterations,
        seconds and history cover every stage.
    """
    options = options if isinstance(options, OptoFitOptions) else OptoFitOptions()
    t0 = time.perf_counter()
    cell = cell_of(init, options)
    blocks = _blocks_of(init)
    cold = level_match if level_match is not None else (init is None or not all(k in init for k in CORE_NAMES))
    initial = {**cell, **(blocks or options.block_start)}
    stages: list[NewtonResult] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if blocks is not None and options.blocks_fixed:
            cell, res, energy = fit_cell(frames, cell, blocks, options, progress, cold)
            stages.append(res)
        else:
            if cold:   # the start's threshold and make-up, on the cell alone (loss values only)
                cell = _cold_cell(frames, cell, options)
            blocks = dict(blocks or options.block_start)
            for _ in range(max(int(options.rounds), 1)):
                make_up, blocks, res_b, _ = fit_opto_blocks(frames, cell, blocks, options, progress)
                stages.append(res_b)
                cell, res, energy = fit_cell(frames, {**cell, "make_up_db": make_up}, blocks, options, progress)
                stages.append(res)
    last = stages[-1]
    if not last.converged:
        warnings.warn(f"opto fit did not converge: {last.reason}", RuntimeWarning, stacklevel=2)
    params = {**cell, **blocks}
    return FitResult(params={k: params[k] for k in OPTO_NAMES}, esr=last.loss / energy, loss=last.loss,
                     iterations=sum(r.iterations for r in stages), converged=last.converged, reason=last.reason,
                     seconds=time.perf_counter() - t0, initial_params=initial,
                     history=[f for r in stages for f in r.history])


def fit_unit(levels: list[tuple[Frames, dict | None, OptoFitOptions]],
             progress: Callable[[int, float, float], None] | None = None) -> list[FitResult]:
    """One unit, both modes: one set of blocks for several pairs (the first level of each mode).

    From each pair's start cell (a cold one: threshold and make-up picked as in
    :func:`fit_opto_frames`), the blocks by Newton on the sum of the pairs' block-stage losses
    (each pair's own make-up, one set of block parameters; exact gradient and Hessian
    assembled from each pair's), then each cell through those blocks; ``rounds`` times.

    Args:
        levels: per pair, ``(frames, init, options)`` (options already for its mode).

    Returns:
        one :class:`dsp.fitting.ff5.FitResult` per pair, all with the same blocks.
    """
    t0 = time.perf_counter()
    cells, energies, stages = [], [0.0] * len(levels), [[] for _ in levels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for frames, init, options in levels:
            cold = init is None or not all(k in init for k in CORE_NAMES)
            cell = cell_of(init, options)
            cells.append(_cold_cell(frames, cell, options) if cold else cell)
        blocks = dict(levels[0][2].block_start)
        for _ in range(max(int(levels[0][2].rounds), 1)):
            make_ups, blocks, res_b = _shared_blocks(levels, cells, blocks, progress)
            for i, (frames, _, options) in enumerate(levels):
                stages[i].append(res_b)
                cell, res, energies[i] = fit_cell(frames, {**cells[i], "make_up_db": make_ups[i]}, blocks, options,
                                                  progress)
                cells[i] = cell
                stages[i].append(res)
    out = []
    for i, (frames, init, _) in enumerate(levels):
        last = stages[i][-1]
        params = {**cells[i], **blocks}
        out.append(FitResult(params={k: params[k] for k in OPTO_NAMES}, esr=last.loss / energies[i], loss=last.loss,
                             iterations=sum(r.iterations for r in stages[i]), converged=last.converged,
                             reason=last.reason, seconds=time.perf_counter() - t0,
                             initial_params=dict(init or {}), history=[f for r in stages[i] for f in r.history]))
    return out


class _SharedBlocks:
    """Sum of several pairs' block-stage losses: ``z = (make-up of each pair, six block logits)``."""

    def __init__(self, objectives: list[BlockObjective]):
        self.objectives = objectives
        self.count = len(objectives)
        self.energy = sum(o.energy for o in objectives)

    def _split(self, z: torch.Tensor, i: int) -> torch.Tensor:
        return torch.cat([z[i:i + 1], z[self.count:]])

    def loss(self, z) -> float:
        z = torch.as_tensor(z, dtype=torch.float64)
        return float(sum(o.loss(self._split(z, i)) for i, o in enumerate(self.objectives)))

    def loss_grad_hess(self, z):
        z = torch.as_tensor(z, dtype=torch.float64)
        n = z.shape[0]
        f, g, h = 0.0, torch.zeros(n, dtype=torch.float64), torch.zeros((n, n), dtype=torch.float64)
        for i, o in enumerate(self.objectives):
            fi, gi, hi = o.loss_grad_hess(self._split(z, i))
            idx = torch.tensor([i] + list(range(self.count, n)))
            f += fi
            g[idx] += gi
            h[idx[:, None], idx[None, :]] += hi
        return f, g, h


def _shared_blocks(levels, cells, blocks, progress):
    objectives = [_block_objective(frames, cell, options) for (frames, _, options), cell in zip(levels, cells)]
    starts = [_block_vector(o, cell, blocks) for o, cell in zip(objectives, cells)]
    z0 = torch.cat([torch.stack([s[0] for s in starts]), starts[0][1:]])
    shared = _SharedBlocks(objectives)
    options = levels[0][2]
    steps = (options.max_step[4],) * len(levels) + (float(options.block_max_step),) * len(BLOCK_NAMES)
    result = newton(shared, z0, _newton_options(options, shared.energy, steps), progress)
    _, values = _block_values(objectives[0], torch.cat([result.z[:1], result.z[len(levels):]]))
    return [float(v) for v in result.z[:len(levels)]], values, result


def evaluate_opto_esr(frames: Frames, params: dict, options=None) -> float:
    """Pre-emphasised ESR of fixed physical ``params`` (every name of :data:`OPTO_NAMES`) on
    ``frames`` (no fitting; no range check: a stored fit may have other ranges)."""
    from dsp.derivatives.ff5_kernel import prepare as prepare_ff5, target_energy
    data = prepare(frames)
    natural = natural_from_physical(params, frames.sample_rate)
    loss = loss_natural(data, natural, [float(params[k]) for k in BLOCK_NAMES])
    return loss / target_energy(prepare_ff5(frames))
