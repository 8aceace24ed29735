"""Damped Newton-Raphson with a backtracking Armijo line search.

Works on any objective offering ``loss(z)`` and ``loss_grad_hess(z)`` (see
:mod:`dsp.derivatives.autograd`). Each iteration:

1. exact gradient ``g`` and Hessian ``H``;
2. Cholesky solve of ``(H + lam I) p = -g``: ``lam = 0`` when ``H`` is positive
   definite, else the smallest Levenberg-Marquardt damping (grown tenfold from a
   scale of ``H``'s diagonal) that makes it so, never a random step;
3. Armijo backtracking on ``loss(z + t p)``; a NaN/Inf or non-decreasing loss
   halves the step; if no step length helps, the damping grows and the search is
   retried (this turns the step towards steepest descent);
4. stop when converged: half the squared Newton decrement ``-g.p/2`` (the
   predicted remaining decrease) is below ``rtol * loss + atol``; or an accepted
   full Newton step lowered the loss by less than ``ftol * loss`` (the objective is only
   piecewise smooth: where the attack/release branch pattern flips, Newton can
   creep with tiny steps for ever); or an accepted step left the loss unchanged in
   floating point; or the gradient norm is below ``gtol``; or (``stall_rtol`` > 0) the
   last ``stall_steps`` accepted steps together lowered the loss by less than
   ``stall_rtol * loss``, whatever their kind (where a piecewise smooth objective has a flat
   direction, the line search can halve every step and creep to the cap).
   Otherwise it stops at the iteration cap or when no step decreases the loss,
   and then ``converged`` is False.

The best point seen is returned.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

__all__ = ["NewtonOptions", "NewtonResult", "newton"]


class Objective(Protocol):
    def loss(self, z: torch.Tensor) -> float: ...
    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]: ...


@dataclass
class NewtonOptions:
    max_iterations: int = 100
    rtol: float = 1e-9          # predicted decrease relative to the loss
    ftol: float = 1e-8          # actual decrease of an accepted step, relative to the loss
    atol: float = 0.0           # absolute predicted decrease (set from the target energy)
    gtol: float = 0.0           # gradient norm
    armijo: float = 1e-4
    max_halvings: int = 20
    max_damping_tries: int = 6
    max_step: tuple[float, ...] | None = None  # per-coordinate cap on one step (trust region)
    stall_rtol: float = 0.0     # decrease over the last stall_steps steps, relative to the loss (0: off)
    stall_steps: int = 5


@dataclass
class NewtonResult:
    z: torch.Tensor
    loss: float
    iterations: int
    converged: bool
    reason: str
    seconds: float
    history: list[float] = field(default_factory=list)


def _damped_step(g: torch.Tensor, h: torch.Tensor, lam: float) -> tuple[torch.Tensor, float] | None:
    """Newton step with damping ``lam``; None if ``H + lam I`` is not positive definite."""
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    chol, info = torch.linalg.cholesky_ex(h + lam * eye)
    if int(info) != 0 or not torch.all(torch.isfinite(chol)):
        return None
    p = -torch.cholesky_solve(g.unsqueeze(1), chol).squeeze(1)
    return p, float(-(g @ p))


def _positive_definite_step(g, h, lam_start: float, scale: float):
    """Smallest damping (0, then lam_start * 10^k) giving a positive definite system."""
    lam = 0.0
    for _ in range(40):
        out = _damped_step(g, h, lam)
        if out is not None and out[1] > 0:
            return out[0], out[1], lam
        lam = max(lam * 10.0, lam_start * scale)
    raise FloatingPointError("Hessian could not be made positive definite")


def newton(objective: Objective, z0: torch.Tensor, options: NewtonOptions = NewtonOptions(),
           progress: Callable[[int, float, float], None] | None = None) -> NewtonResult:
    """Minimise ``objective`` from ``z0``.

    Args:
        objective: provides ``loss`` and ``loss_grad_hess`` in float64.
        z0: start, ``(5,)``.
        options: tolerances and caps.
        progress: called as ``progress(iteration, loss, decrement)`` after each step.
    """
    start = time.perf_counter()
    z = z0.detach().clone().to(torch.float64)
    best_z, best_f = z.clone(), math.inf
    history: list[float] = []
    converged, reason, it = False, "iteration cap reached", 0
    f = objective.loss(z)
    if not math.isfinite(f):
        raise FloatingPointError("the loss at the starting point is not finite")
    for it in range(1, options.max_iterations + 1):
        f, g, h = objective.loss_grad_hess(z)
        best_z, best_f = (z.clone(), f) if f < best_f else (best_z, best_f)
        history.append(f)
        if not torch.all(torch.isfinite(g)) or not torch.all(torch.isfinite(h)):
            reason = "non-finite derivatives"
            break
        if float(g.norm()) <= options.gtol:
            converged, reason = True, "gradient norm below tolerance"
            break
        scale = max(float(h.diagonal().abs().max()), 1e-300)
        stepped = False
        p, dec2, lam = _positive_definite_step(g, h, 1e-9, scale)
        # the predicted decrease of the (least damped) Newton model is the test
        if dec2 / 2 <= options.rtol * f + options.atol:
            converged, reason = True, "Newton decrement below tolerance"
            break
        for attempt in range(options.max_damping_tries):
            if attempt > 0:
                p, dec2, lam = _forced_damping(g, h, lam)
            p = _capped(p, options.max_step)
            t, slope = 1.0, float(g @ p)
            for _ in range(options.max_halvings):
                z_new = z + t * p
                f_new = objective.loss(z_new)
                if math.isfinite(f_new) and f_new <= f + options.armijo * t * slope:
                    z, stepped = z_new, True
                    full_step = attempt == 0 and t == 1.0
                    break
                t *= 0.5
            if stepped:
                break
            lam = max(lam * 100.0, 1e-6 * scale)  # line search failed: damp harder
        if not stepped:
            reason = "no step decreases the loss"
            break
        if progress is not None:
            progress(it, f_new, dec2)
        # only a plain Newton step (undamped by the line search) counts: a heavily
        # damped gradient step is small for reasons other than being at the minimum
        if full_step and f - f_new <= options.ftol * f:
            converged, reason = True, "relative loss change below tolerance"
            break
        # Armijo accepts f_new == f once the predicted gain is below float resolution;
        # such steps change nothing, and repeating them would only run to the cap
        if f_new >= f:
            converged, reason = True, "loss unchanged in floating point"
            break
        if (options.stall_rtol > 0 and len(history) >= options.stall_steps
                and history[-options.stall_steps] - f_new <= options.stall_rtol * f_new):
            converged = True
            reason = f"the last {options.stall_steps} steps lowered the loss by less than {options.stall_rtol:g} of it"
            break
    # the last accepted point may be the best one
    f_last = objective.loss(z)
    if f_last < best_f:
        best_z, best_f = z.clone(), f_last
    return NewtonResult(best_z, best_f, it, converged, reason, time.perf_counter() - start, history)


def _capped(p: torch.Tensor, cap) -> torch.Tensor:
    """Shrink the step uniformly so no coordinate moves further than its cap.

    A full Newton step far from the optimum can jump into a flat region (for a
    compressor: a threshold above every peak, where nothing else matters) and
    stall there; bounded steps let the line search see the way down first.
    """
    if cap is None:
        return p
    over = float(torch.max(p.abs() / p.new_tensor(cap)))
    return p / over if over > 1.0 else p


def _forced_damping(g, h, lam):
    out = _damped_step(g, h, lam)
    while out is None or out[1] <= 0:
        lam *= 10.0
        out = _damped_step(g, h, lam)
    return out[0], out[1], lam
