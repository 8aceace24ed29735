"""The damped Newton solver on small synthetic objectives (torch float64)."""
from __future__ import annotations

import math

import pytest
import torch

import dsp.fitting.newton as newton_mod
from dsp.fitting.newton import NewtonOptions, newton

F64 = torch.float64


class Counting:
    """Counts calls of ``loss`` and ``loss_grad_hess`` (the solver's only entry points)."""

    def __init__(self):
        self.n_loss = 0
        self.n_hess = 0
        self.non_finite_losses = 0

    def loss(self, z):
        self.n_loss += 1
        f = self.f(z)
        if not math.isfinite(f):
            self.non_finite_losses += 1
        return f

    def loss_grad_hess(self, z):
        self.n_hess += 1
        return self.fgh(z)


class Quadratic(Counting):
    """``f0 + (z - c)^T A (z - c) / 2`` with ``A`` symmetric positive definite."""

    def __init__(self, f0: float = 1.0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        m = torch.randn(5, 5, generator=gen, dtype=F64)
        self.a = m @ m.T + 0.5 * torch.eye(5, dtype=F64)
        self.c = torch.randn(5, generator=gen, dtype=F64)
        self.f0 = f0

    def f(self, z):
        d = z - self.c
        return float(self.f0 + 0.5 * d @ self.a @ d)

    def fgh(self, z):
        d = z - self.c
        return self.f(z), self.a @ d, self.a.clone()


class Rosenbrock(Counting):
    """Chained Rosenbrock in 5-D: ``sum 100 (z[i+1] - z[i]^2)^2 + (1 - z[i])^2``; minimum 0 at ones."""

    @staticmethod
    def _t(z):
        return (100.0 * (z[1:] - z[:-1] ** 2) ** 2 + (1.0 - z[:-1]) ** 2).sum()

    def f(self, z):
        return float(self._t(z.to(F64)))

    def fgh(self, z):
        z = z.detach().to(F64)
        g = torch.autograd.functional.jacobian(self._t, z)
        h = torch.autograd.functional.hessian(self._t, z)
        return self.f(z), g, h


class PseudoHuberWithWall(Counting):
    """``sum sqrt(1 + (z - c)^2)``: far from ``c`` the curvature is tiny, so the Newton step
    ``-d (1 + d^2)`` overshoots badly; the loss is NaN (or inf) beyond ``|z - c| > wall``."""

    def __init__(self, bad: float = math.nan, wall: float = 5.0):
        super().__init__()
        self.c = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5], dtype=F64)
        self.bad = bad
        self.wall = wall

    def _inside(self, z):
        return bool(torch.all((z - self.c).abs() <= self.wall))

    def f(self, z):
        if not self._inside(z):
            return self.bad
        return float(torch.sqrt(1.0 + (z - self.c) ** 2).sum())

    def fgh(self, z):
        d = z - self.c
        r = torch.sqrt(1.0 + d ** 2)
        return self.f(z), d / r, torch.diag(r ** -3)


class FlatLoss(Counting):
    """Derivatives of ``|z|^2 / 2`` but a loss that never moves: no step can decrease it."""

    def f(self, z):
        return 3.0

    def fgh(self, z):
        return 3.0, z.clone(), torch.eye(5, dtype=F64)


class WrongSign(Counting):
    """The loss ``1 + |z|^2`` with a gradient of the wrong sign (every model step is uphill)."""

    def f(self, z):
        return float(1.0 + z @ z)

    def fgh(self, z):
        return self.f(z), -2.0 * z, 2.0 * torch.eye(5, dtype=F64)


class BrokenDerivatives(Quadratic):
    """A quadratic whose derivatives overflow once ``z[0]`` has moved past ``limit``."""

    def __init__(self, limit: float):
        super().__init__(seed=3)
        self.limit = limit

    def fgh(self, z):
        f, g, h = super().fgh(z)
        if float(z[0]) > self.limit:
            g = g.clone()
            g[0] = math.inf
        return f, g, h


def test_quadratic_one_step():
    obj = Quadratic()
    z0 = torch.tensor([3.0, -2.0, 1.0, 4.0, -5.0], dtype=F64)
    calls = []
    res = newton(obj, z0, NewtonOptions(), progress=lambda *a: calls.append(a))
    assert res.converged, res.reason
    assert len(calls) == 1                            # one Newton step lands on the minimum
    assert res.iterations == 2                       # ... and the next derivative call confirms it
    assert obj.n_hess == 2
    assert torch.allclose(res.z, obj.c, rtol=0, atol=1e-10)
    assert res.loss == pytest.approx(obj.f0, rel=1e-14)
    assert res.history[0] == pytest.approx(obj.f(z0)) and len(res.history) == res.iterations
    assert res.z.dtype == F64 and res.seconds >= 0


def test_quadratic_with_zero_minimum_converges():
    """Minimum 0 and no absolute tolerance: the relative test alone can never fire, the
    gradient (or decrement) reaching zero must."""
    obj = Quadratic(f0=0.0, seed=1)
    res = newton(obj, torch.zeros(5, dtype=F64), NewtonOptions(max_iterations=20))
    assert torch.allclose(res.z, obj.c, rtol=0, atol=1e-10)
    assert res.loss < 1e-20
    assert res.converged, res.reason
    assert res.iterations <= 4


def test_rosenbrock_indefinite_start_uses_damping(monkeypatch):
    obj = Rosenbrock()
    z0 = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0], dtype=F64)   # H[0, 0] = 2 - 400 z1 < 0
    _, _, h0 = obj.fgh(z0)
    assert float(torch.linalg.eigvalsh(h0).min()) < 0           # the premise: indefinite start

    damping = []
    original = newton_mod._positive_definite_step

    def spy(g, h, lam_start, scale):
        p, dec2, lam = original(g, h, lam_start, scale)
        damping.append(lam)
        return p, dec2, lam

    monkeypatch.setattr(newton_mod, "_positive_definite_step", spy)
    res = newton(obj, z0, NewtonOptions(max_iterations=200, atol=1e-24))
    assert damping[0] > 0                               # Levenberg-Marquardt at the start
    assert damping[-1] == 0                             # plain Newton near the minimum
    assert all(math.isfinite(f) for f in res.history)
    assert all(b <= a for a, b in zip(res.history, res.history[1:]))   # monotone descent
    assert res.converged, res.reason
    assert torch.allclose(res.z, torch.ones(5, dtype=F64), rtol=0, atol=1e-6)
    assert res.loss < 1e-12


@pytest.mark.parametrize("z0", [[-1.2, 1.0, 1.0, 1.0, 1.0], [2.0, -1.0, 0.5, -2.0, 3.0]])
def test_rosenbrock_other_starts_reach_a_local_minimum(z0):
    # the 5-D chained Rosenbrock has a second local minimum (f ~ 3.93, z[0] ~ -0.96)
    obj = Rosenbrock()
    res = newton(obj, torch.tensor(z0, dtype=F64), NewtonOptions(max_iterations=200))
    assert res.converged, res.reason
    assert all(math.isfinite(f) for f in res.history)
    _, g, h = obj.fgh(res.z)
    assert float(g.norm()) < 1e-5
    assert float(torch.linalg.eigvalsh(h).min()) > 0
    assert res.loss < 1e-12 or res.loss == pytest.approx(3.9308, abs=1e-3)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_for_long_steps_is_rejected(bad):
    obj = PseudoHuberWithWall(bad=bad)
    z0 = obj.c + torch.tensor([3.0, -3.0, 2.5, 3.0, -2.0], dtype=F64)
    # the premise: the full Newton step leaves the region where the loss is finite
    _, g, h = obj.fgh(z0)
    assert not math.isfinite(obj.f(z0 - torch.linalg.solve(h, g)))
    res = newton(obj, z0, NewtonOptions(max_iterations=50))
    assert obj.non_finite_losses > 0                    # long steps were tried, and refused
    assert res.converged, res.reason
    assert math.isfinite(res.loss) and torch.all(torch.isfinite(res.z))
    assert all(math.isfinite(f) for f in res.history)
    assert torch.allclose(res.z, obj.c, rtol=0, atol=1e-6)
    assert res.loss == pytest.approx(5.0, rel=1e-12)


def test_non_finite_start_raises():
    obj = PseudoHuberWithWall()
    with pytest.raises(FloatingPointError):
        newton(obj, obj.c + 10.0, NewtonOptions())


@pytest.mark.parametrize("cls", [FlatLoss, WrongSign])
def test_no_decreasing_step_is_not_convergence(cls):
    obj = cls()
    z0 = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=F64)
    opts = NewtonOptions(max_iterations=10, max_halvings=8, max_damping_tries=4)
    res = newton(obj, z0, opts)
    assert not res.converged
    assert res.reason == "no step decreases the loss"
    assert res.iterations == 1
    assert torch.equal(res.z, z0)                       # nothing better was seen: the start
    assert res.loss == obj.f(z0)
    # every step length of every damping was tried, and no more (bounded work)
    tries = opts.max_halvings * opts.max_damping_tries
    assert tries <= obj.n_loss <= tries + 2


def test_non_finite_derivatives_stop_with_best_point():
    obj = BrokenDerivatives(limit=-math.inf)            # derivatives already broken at the start
    z0 = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0], dtype=F64)
    res = newton(obj, z0, NewtonOptions())
    assert not res.converged and res.reason == "non-finite derivatives"
    assert torch.equal(res.z, z0) and res.loss == obj.f(z0)


def test_best_point_is_returned_when_derivatives_break():
    """The first step lands on the minimum, where the derivatives overflow: the solver
    stops there (not converged) and returns that point, the best it has seen."""
    obj = BrokenDerivatives(limit=0.0)
    obj.c[0] = 1.0                                      # minimum beyond the limit ...
    z0 = obj.c - 3.0                                    # ... the start before it
    seen = []
    res = newton(obj, z0, NewtonOptions(max_iterations=20), progress=lambda it, f, d: seen.append(f))
    assert not res.converged and res.reason == "non-finite derivatives"
    assert res.iterations == 2 and len(seen) == 1
    assert torch.allclose(res.z, obj.c, rtol=0, atol=1e-10)
    assert res.loss == obj.f(res.z) == pytest.approx(obj.f0, rel=1e-14)
    assert res.loss <= min(res.history + seen)


def test_iteration_cap():
    obj = Rosenbrock()
    z0 = torch.tensor([-1.2, 1.0, 1.0, 1.0, 1.0], dtype=F64)
    seen = []
    res = newton(obj, z0, NewtonOptions(max_iterations=3), progress=lambda it, f, d: seen.append((it, f)))
    assert res.iterations == 3 and obj.n_hess == 3 and len(res.history) == 3
    assert not res.converged and res.reason == "iteration cap reached"
    assert [it for it, _ in seen] == [1, 2, 3]
    # the point after the third step is the best seen, and is what comes back
    assert res.loss == pytest.approx(seen[-1][1], rel=0, abs=0)
    assert res.loss == obj.f(res.z)
    assert res.loss < min(res.history)


def test_zero_iterations_returns_start():
    obj = Quadratic()
    z0 = torch.ones(5, dtype=F64)
    res = newton(obj, z0, NewtonOptions(max_iterations=0))
    assert res.iterations == 0 and not res.converged
    assert torch.equal(res.z, z0) and res.loss == obj.f(z0)


def test_tolerances_stop_early():
    obj = Rosenbrock()
    z0 = torch.tensor([-1.2, 1.0, 1.0, 1.0, 1.0], dtype=F64)
    tight = newton(Rosenbrock(), z0, NewtonOptions(max_iterations=200))
    loose = newton(obj, z0, NewtonOptions(max_iterations=200, rtol=0.0, atol=1e-2))
    assert loose.converged and loose.reason == "Newton decrement below tolerance"
    assert loose.iterations < tight.iterations
    by_gradient = newton(Rosenbrock(), z0, NewtonOptions(max_iterations=200, rtol=0.0, gtol=1e-3))
    assert by_gradient.converged and by_gradient.reason == "gradient norm below tolerance"


class RecordingQuadratic(Quadratic):
    """A quadratic that remembers where its derivatives were taken (the accepted points)."""

    def __init__(self):
        super().__init__(seed=5)
        self.points = []

    def fgh(self, z):
        self.points.append(z.clone())
        return super().fgh(z)


def test_max_step_caps_every_coordinate():
    obj = RecordingQuadratic()
    z0 = obj.c + torch.tensor([30.0, -20.0, 10.0, 5.0, -40.0], dtype=F64)
    cap = (1.0, 2.0, 0.5, 0.5, 3.0)
    res = newton(obj, z0, NewtonOptions(max_iterations=200, max_step=cap))
    assert res.converged, res.reason
    assert torch.allclose(res.z, obj.c, rtol=0, atol=1e-9)
    moves = torch.diff(torch.stack(obj.points), dim=0).abs()
    assert torch.all(moves <= torch.tensor(cap, dtype=F64) * (1 + 1e-12))
    # 30 units of the first coordinate at 1 a step: at least 30 steps
    assert len(obj.points) >= 31


def test_small_relative_loss_change_stops():
    """A loss change tiny against the loss itself ends the fit as converged, after the step."""
    obj = Quadratic(f0=1e12, seed=2)
    z0 = obj.c + 3.0
    res = newton(obj, z0, NewtonOptions(rtol=0.0, ftol=1e-8))
    assert res.converged and res.reason == "relative loss change below tolerance"
    assert res.iterations == 1
    assert torch.allclose(res.z, obj.c, rtol=0, atol=1e-6)
    # without it, the next iteration's derivatives decide
    res0 = newton(Quadratic(f0=1e12, seed=2), z0, NewtonOptions(rtol=0.0, ftol=0.0))
    assert res0.converged and res0.iterations == 2


def test_start_is_not_modified():
    obj = Quadratic()
    z0 = torch.tensor([3.0, -2.0, 1.0, 4.0, -5.0], dtype=F64)
    keep = z0.clone()
    newton(obj, z0, NewtonOptions())
    assert torch.equal(z0, keep)


class Overshooting(Counting):
    """``1 + z^2`` with a Hessian reported five times too small: every Newton step overshoots
    and only a quarter of it is accepted, so the loss keeps falling by small, shrinking steps
    that are never full ones (as on a piecewise smooth objective with a flat direction)."""

    def f(self, z):
        return 1.0 + float(z @ z)

    def fgh(self, z):
        return self.f(z), 2.0 * z, 0.4 * torch.eye(z.shape[0], dtype=F64)


def test_stall_rule_stops_a_creeping_solve():
    z0 = torch.tensor([1.0, -0.5], dtype=F64)
    # the predicted decrease stays large against the achieved one: only the decrease itself can stop it
    creeping = newton(Overshooting(), z0, NewtonOptions(max_iterations=100, rtol=0.0))
    stalled = newton(Overshooting(), z0, NewtonOptions(max_iterations=100, rtol=0.0, stall_rtol=1e-3))
    # without the rule only float resolution ends it; with it, once five steps gain < 1e-3 of the loss
    assert creeping.reason == "loss unchanged in floating point" and creeping.iterations >= 12
    assert stalled.converged and "steps lowered the loss" in stalled.reason
    assert 5 <= stalled.iterations < creeping.iterations - 3
    decrease = stalled.history[-5] - stalled.loss
    assert 0.0 < decrease <= 1e-3 * stalled.loss
    assert stalled.history[-6] - stalled.history[-1] > 1e-3 * stalled.loss   # it did not stop earlier
