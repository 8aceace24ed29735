"""The optical-cell model's side of the joint fit (``compressor=opto method=joint``).

The unit's blocks (transformers, tube stage) do not move with the knob, so they are not
curves. Per group they are fitted once (:func:`fit_group_blocks`: the per-level opto fit,
blocks then the cell through them) on the setting with the highest knob vector, where the
chain fits them too (the LA-2A: top PR, the most reduction); with ``one_unit`` one set for
both modes (:func:`dsp.fitting.opto.fit_unit` on each mode's top setting). The curves are
then the cell's coordinates (:class:`dsp.knobs.joint_curves.OptoCellSpace`), fitted at every
setting at once through those blocks (:func:`dsp.fitting.joint.fit_joint`, the opto kernel's
exact gradient and Hessian per setting).

The start at each setting is the top setting's fitted cell with the threshold picked on
:data:`dsp.fitting.opto.THRESHOLD_GRID` and the make-up level-matched there
(:meth:`CellFit.start_rows`): less peak reduction is less sidechain gain, a higher threshold, and the
cell's other coordinates start where one setting of the unit put them.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np

from audio.framing import Frames
from dsp.derivatives.opto_kernel import OptoObjective
from dsp.fitting.ff5 import FitResult
from dsp.fitting.opto import OptoFitOptions, cell_of, cell_steps, fit_opto_frames, fit_unit, pick_threshold
from dsp.knobs.joint_curves import OptoCellSpace
from dsp.models.graybox import BLOCK_NAMES
from dsp.models.opto import CORE_NAMES, OptoParameterisation

__all__ = ["CellFit", "fit_group_blocks", "cell_space", "group_options"]


class CellFit:
    """The fitting side of the cell's curves (:class:`dsp.knobs.joint_curves.OptoCellSpace`), as
    :class:`dsp.fitting.joint.FiveParameterFit` is the five-parameter curves'."""

    @staticmethod
    def objective(frames: Frames, space: OptoCellSpace, param: OptoParameterisation, fit):
        """The opto kernel's objective in the cell's ``z``, the space's blocks held."""
        return OptoObjective(frames, param, space.block_values)

    @staticmethod
    def scale(param: OptoParameterisation, fit: OptoFitOptions) -> tuple[float, ...]:
        """Each coordinate's step cap of a per-level fit."""
        return cell_steps(param, fit)

    @staticmethod
    def start(start: dict | None, fit: OptoFitOptions) -> dict[str, float]:
        """``start``'s cell parameters where it has them all, else the options'."""
        return cell_of(start, fit)

    @staticmethod
    def start_rows(objectives: Sequence, settings, param: OptoParameterisation, cell: dict) -> np.ndarray:
        """``cell`` at every setting, its threshold picked and make-up level-matched on that
        setting's objective (blocks held). ``(S, P)``."""
        z0 = param.from_physical(cell)
        return np.stack([pick_threshold(obj, param, z0).numpy() for obj in objectives])


def cell_space(options: OptoFitOptions, blocks: dict) -> OptoCellSpace:
    """The curves' space for a group fitted with ``options`` (already for its mode) and ``blocks``."""
    return OptoCellSpace(options.cell, bool(options.fit_mix), tuple((k, float(blocks[k])) for k in BLOCK_NAMES))


def fit_group_blocks(tops: dict[str, tuple], init: dict | None, options: OptoFitOptions) -> dict[str, FitResult]:
    """The blocks of each group, fitted on its top setting (a cold per-level opto fit).

    Args:
        tops: group (mode) -> ``(frames, knob vector)`` of its setting with the highest knob vector.
        init: the cell's start (physical; None: the options').
        options: fit options (each group's are ``options.for_mode(group)``); ``one_unit``
            with two or more groups: one set of blocks for all (:func:`dsp.fitting.opto.fit_unit`).

    Returns:
        group -> the top setting's :class:`dsp.fitting.ff5.FitResult` (every name of
        :data:`dsp.models.opto.OPTO_NAMES`; its blocks are the group's).
    """
    start = {k: float(init[k]) for k in CORE_NAMES} if init and all(k in init for k in CORE_NAMES) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if options.one_unit and len(tops) > 1:
            levels = [(frames, start, options.for_mode(group)) for group, (frames, _) in tops.items()]
            return dict(zip(tops, fit_unit(levels)))
        return {group: fit_opto_frames(frames, start, options.for_mode(group), level_match=True)
                for group, (frames, _) in tops.items()}


def group_options(shape, options: OptoFitOptions, group: str, top: FitResult):
    """``shape``, a :class:`dsp.fitting.joint.JointOptions` (basis, roughness, priors, stall; not
    imported here: that module imports this one), for the cell's curves of one group (mode):
    its fit options, the space through ``top``'s blocks, and ``top``'s cell as the start."""
    fit = options.for_mode(group)
    return dataclasses.replace(shape, fit=fit, space=cell_space(fit, top.params),
                               start={k: float(top.params[k]) for k in CORE_NAMES})
