"""Fitting the compressor to one framed pair: start point, level match, Newton, result.

Tensors and arrays stay inside; what comes out (:class:`FitResult`) is in
physical units, ready to be written as a checkpoint.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from audio.framing import Frames
from dsp.fitting.newton import NewtonOptions, newton
from dsp.derivatives.autograd import AutogradObjective
from dsp.models.parameters import DEFAULT_INIT, Parameterisation, Ranges

__all__ = ["FitOptions", "FitResult", "fit_frames", "make_objective", "HESSIAN_METHODS"]


@dataclass
class FitOptions:
    ranges: Ranges = field(default_factory=Ranges)
    hessian: str = "kernel"           # kernel | autograd
    newton: NewtonOptions = field(default_factory=NewtonOptions)
    atol_esr: float = 1e-13           # stop when the predicted ESR gain is below this
    # largest move of one Newton step: threshold dB, ratio/attack/release logits, make-up dB
    max_step: tuple[float, ...] = (6.0, 2.0, 2.0, 2.0, 6.0)
    device: str = "cpu"
    # a chain's shape prior: the threshold (dB) held at or above this (a lower PR than the
    # previous level's, less sidechain gain: a threshold no lower); None: free
    threshold_floor: float | None = None


# Stiffness of the threshold floor, per squared dB below it, in units of the target's energy:
# 0.1 dB below costs an ESR of 0.1 (a stiff wall that Newton's exact Hessian handles).
FLOOR_WEIGHT = 10.0


class _ThresholdFloor:
    """``objective`` plus a one-sided quadratic on ``z[0]`` (the threshold, dB) below ``floor``;
    the same solver interface, exact derivatives."""

    def __init__(self, objective, floor: float):
        self.base, self.floor = objective, float(floor)
        self.energy = objective.energy
        self.weight = FLOOR_WEIGHT * objective.energy

    def _below(self, z) -> float:
        return max(self.floor - float(z[0]), 0.0)

    def loss(self, z) -> float:
        return self.base.loss(z) + self.weight * self._below(z) ** 2

    def loss_grad(self, z):
        f, g = self.base.loss_grad(z)
        d = self._below(z)
        g = g.clone()
        g[0] -= 2.0 * self.weight * d
        return f + self.weight * d * d, g

    def loss_grad_hess(self, z):
        f, g, h = self.base.loss_grad_hess(z)
        d = self._below(z)
        g, h = g.clone(), h.clone()
        g[0] -= 2.0 * self.weight * d
        if d > 0:
            h[0, 0] += 2.0 * self.weight
        return f + self.weight * d * d, g, h

    def output_energy(self, z) -> float:
        return self.base.output_energy(z)


@dataclass
class FitResult:
    params: dict[str, float]
    esr: float
    loss: float
    iterations: int
    converged: bool
    reason: str
    seconds: float
    initial_params: dict[str, float]
    history: list[float]

    @classmethod
    def from_newton(cls, result, energy: float, params: dict[str, float],
                    initial_params: dict[str, float]) -> "FitResult":
        """The result of a Newton run (:class:`dsp.fitting.newton.NewtonResult`) on an objective with
        target energy ``energy``, in physical units."""
        return cls(params=params, esr=result.loss / energy, loss=result.loss, iterations=result.iterations,
                   converged=result.converged, reason=result.reason, seconds=result.seconds,
                   initial_params=initial_params, history=result.history)


def _kernel_objective(frames: Frames, param: Parameterisation, device: str):
    from dsp.derivatives.ff5_kernel import KernelObjective
    return KernelObjective(frames, param)


def _autograd_objective(frames: Frames, param: Parameterisation, device: str):
    return AutogradObjective(frames, param, device=device)


HESSIAN_METHODS: dict[str, Callable] = {"kernel": _kernel_objective, "autograd": _autograd_objective}


def make_objective(frames: Frames, param: Parameterisation, hessian: str = "kernel", device: str = "cpu"):
    if hessian not in HESSIAN_METHODS:
        raise ValueError(f"optimiser.hessian must be one of {sorted(HESSIAN_METHODS)}, got {hessian!r}")
    if hessian == "kernel" and device != "cpu":
        hessian = "autograd"  # the fused kernel is CPU code; CUDA uses autograd
    return HESSIAN_METHODS[hessian](frames, param, device)


def level_matched_make_up(objective, frames: Frames, z: torch.Tensor) -> float:
    """Make-up gain (dB) that gives the output the target's pre-emphasised energy."""
    z0 = z.clone()
    z0[4] = 0.0
    e_out = objective.output_energy(z0)
    if e_out <= 0 or objective.energy <= 0:
        return 0.0
    return 10.0 * math.log10(objective.energy / e_out)


def fit_frames(frames: Frames, init: dict[str, float] | None = None, options: FitOptions = FitOptions(),
               progress: Callable[[int, float, float], None] | None = None,
               level_match: bool | None = None) -> FitResult:
    """Fit the five parameters to ``frames``.

    Args:
        frames: the framed input/target pair.
        init: physical start; None means the published default start.
        level_match: replace the start's make-up gain by one that matches the
            target's level; by default only for a cold start (``init`` None).
        options: ranges, derivative method and solver tolerances.
        progress: per-iteration callback ``(iteration, loss, decrement)``.
    """
    param = Parameterisation(frames.sample_rate, options.ranges)
    objective = make_objective(frames, param, options.hessian, options.device)
    if objective.energy <= 0:
        raise ValueError("the target is silent after the warm-up; nothing to fit")
    start = dict(DEFAULT_INIT if init is None else init)
    z0 = param.from_physical(start)
    if level_match if level_match is not None else init is None:
        z0[4] = level_matched_make_up(objective, frames, z0)
    if options.threshold_floor is not None:
        z0[0] = max(float(z0[0]), options.threshold_floor)
    initial = param.to_physical(z0)
    nopts = NewtonOptions(**{**options.newton.__dict__, "atol": options.atol_esr * objective.energy,
                             "max_step": options.max_step})
    solved = objective if options.threshold_floor is None else _ThresholdFloor(objective, options.threshold_floor)
    result = newton(solved, z0, nopts, progress)
    if not result.converged:
        warnings.warn(f"fit did not converge: {result.reason}", RuntimeWarning, stacklevel=2)
    if solved is not objective:   # the fit's figures are the model's, without the prior's term
        result.loss = objective.loss(result.z)
    return FitResult.from_newton(result, objective.energy, param.to_physical(result.z), initial)


def evaluate_esr(frames: Frames, params: dict[str, float], ranges: Ranges = Ranges()) -> float:
    """Pre-emphasised ESR of fixed physical ``params`` on ``frames`` (no fitting)."""
    param = Parameterisation(frames.sample_rate, ranges)
    objective = make_objective(frames, param)  # the kernel: no copy of the frames, no graph
    return objective.loss(param.from_physical(params)) / objective.energy
