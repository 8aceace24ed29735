"""The joint knob fit: every compressor parameter a smooth curve over the knobs, fitted at once.

For one group of settings (an LA-2A mode; a manifest device) the solver's
unconstrained parameters are ``z(k) = B(k) C`` with ``B`` a :class:`dsp.knobs.basis.KnobBasis`
row and ``C`` ``(size, P)`` coefficients, ``P`` the coordinates of one setting's fit: the
five-parameter compressor's 5 (below), or the optical cell's 11-12 with the unit's blocks
held (:class:`dsp.knobs.joint_curves.OptoCellSpace`; its objective the opto kernel's,
:class:`dsp.derivatives.opto_kernel.OptoObjective`, and its blocks fitted once for the group
by :func:`dsp.fitting.joint_opto.fit_group_blocks`). The objective is the mean over the
group's Train settings of each setting's ESR, plus a roughness penalty::

    F(C) = 1/S sum_s f_s(B_s C) / E_s  +  lam sum_p (C[:, p]^T P C[:, p]) / a_p^2

with ``f_s`` a setting's squared pre-emphasised error (the fused kernel,
:class:`dsp.derivatives.ff5_kernel.KernelObjective`), ``E_s`` its target energy, ``P`` the basis's
second-difference penalty and ``a_p`` the solver's per-coordinate step cap
(:attr:`dsp.fitting.ff5.FitOptions.max_step`: 6 dB for threshold and make-up, 2 for the
logits) as each coordinate's natural scale. Weighting by ``1/E_s`` makes loud and
quiet settings count alike, as the reported mean ESR does.

Exact derivatives map through the basis (``vec(C)`` row-major, index ``j*5 + p``)::

    g_C = sum_s w_s B_s (x) g_s            H_C = sum_s w_s (B_s B_s^T) (x) H_s

with ``w_s = 1/(S E_s)`` and ``g_s, H_s`` the kernel's 5-vector and 5x5 Hessian at
``z_s``; the penalty adds ``2 lam P (x) diag(1/a^2)``. The same damped Newton
solver (:func:`dsp.fitting.newton.newton`) then runs on ``vec(C)``. Its per-coordinate
step cap becomes a cap on each coefficient of ``a_p / max_s sum_j |B_sj|``, which
keeps every setting's ``z`` step inside the per-level cap (for one knob the
splines are a partition of unity and the cap is unchanged).

Start: the published default start at every setting, each with its own
level-matched make-up (one forward pass per setting), projected onto the basis (opto: the
start cell with its threshold picked per setting, :meth:`dsp.fitting.joint_opto.CellFit.start_rows`).

What comes out (:class:`JointResult`, and :class:`JointKnobModel` for several
groups) is in physical units at any knob value, with the per-setting fitting ESR,
and a plain-dict record for checkpoints.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch

from audio.framing import Frames
from audio.metrics import PooledESR
from dsp.knobs.basis import KnobBasis
from dsp.knobs.joint_curves import CurveSpace, FiveParameterSpace, JointCurves, JointResult, SettingFit
from dsp.fitting.bounds import at_bounds
from dsp.fitting.ff5 import FitOptions, level_matched_make_up, make_objective
from dsp.fitting.graybox import fit_blocks
from dsp.fitting import joint_opto
from dsp.models.graybox import BLOCK_NAMES
from dsp.fitting.by_class import evaluate_any
from dsp.fitting.newton import NewtonOptions, newton
from dsp.derivatives.autograd import target_energy
from dsp.models.parameters import DEFAULT_INIT, Parameterisation, Ranges

__all__ = ["JointSetting", "JointOptions", "CoefficientObjective", "JointProblem", "Selection", "fit_joint",
           "select_smoothness",
           "project_curves", "pooled_esr", "bound_hits", "SharedBlocks", "fit_shared_blocks", "GrayboxValScore",
           "DEFAULT_CANDIDATES"]

# (basis size, smoothness) pairs tried on Val by default: from nearly linear to flexible.
DEFAULT_CANDIDATES = ((4, 1e-3), (5, 1e-4), (6, 1e-3), (7, 1e-2))
MONOTONE_DIRECTIONS = ("increasing", "decreasing")
# Stiffness of the one-sided monotone penalty per squared step cap: a wrong-way coefficient
# step of 0.1 dB costs 3e-3, about a tenth of a typical setting's ESR.
MONOTONE_WEIGHT = 10.0
BOUNDED = (1, 2, 3)      # ratio, attack, release: sigmoid coordinates
UNBOUNDED_NAMES = ("threshold_db", "make_up_db")   # in dB, no range: every other coordinate is a logit
# The joint solve stops when five steps together lower its objective (a mean ESR) by less than
# this fraction of it. Without a ridge (prior 0) a bounded logit is nearly free, the attack /
# release branches make the objective piecewise smooth, and the line search halved every step
# for the last 60 of 100 iterations on the real layout's compress mode (under 1e-7 of the
# objective in all; 95 s of the 129 s its six candidates' solves took); the per-level fits
# keep their own rules.
JOINT_STALL = 1e-6


@dataclass
class JointSetting:
    """One setting's fitting (or validation) material.

    Attributes:
        knobs: the knob vector, e.g. ``(peak_reduction,)``.
        frames: the framed pair.
        label: for messages and records (e.g. ``"compress/pr_60"``).
    """
    knobs: tuple[float, ...]
    frames: Frames
    label: str = ""


@dataclass
class JointOptions:
    """Basis size, roughness weight, the per-setting fit options (ranges, derivative
    method, solver tolerances, step cap), the physical start (None: the published one)
    and two priors on the curves' shape:

    - ``monotone``: parameter -> ``"increasing"`` or ``"decreasing"`` in every knob (the
      LA-2A: the threshold falls as peak reduction, the sidechain gain, grows). A stiff
      one-sided penalty on neighbouring coefficients that step the wrong way
      (:data:`MONOTONE_WEIGHT`); monotone B-spline coefficients make a monotone curve.
    - ``prior``: weight of a ridge pulling the bounded coordinates (ratio, attack,
      release logits) towards the start. A sigmoid's logit drifts to a range end where
      the data is flat in it; this holds it where the data does not say otherwise.

    ``stall``: the solve also stops when five steps lower the objective by less than this
    fraction of it (:data:`JOINT_STALL`; 0: only the per-level fits' rules).

    ``space``: what the curves are of (None: the five-parameter compressor with
    ``fit.ranges``; :class:`dsp.knobs.joint_curves.OptoCellSpace` with ``fit`` an
    :class:`dsp.fitting.opto.OptoFitOptions`).
    """
    size: int = 5
    smoothness: float = 1e-3
    fit: FitOptions = field(default_factory=FitOptions)
    start: dict[str, float] | None = None
    monotone: dict[str, str] = field(default_factory=dict)
    prior: float = 0.0
    stall: float = JOINT_STALL
    space: CurveSpace | None = None

    def __post_init__(self):
        names = [n for n in self.curve_space.names if n not in BLOCK_NAMES]   # the curves', not the held blocks'
        for name, direction in self.monotone.items():
            if name not in names or direction not in MONOTONE_DIRECTIONS:
                raise ValueError(f"monotone: expected parameters of {', '.join(names)}, each increasing or "
                                 f"decreasing, got {name!r}: {direction!r}")
        if not (self.prior >= 0 and math.isfinite(self.prior)):
            raise ValueError(f"prior must be a finite weight >= 0, got {self.prior}")
        if not (0 <= self.stall < 1):
            raise ValueError(f"stall must be a fraction in [0, 1), got {self.stall}")

    @property
    def curve_space(self) -> CurveSpace:
        return self.space if self.space is not None else FiveParameterSpace(self.fit.ranges)


class FiveParameterFit:
    """The fitting side of the five-parameter curves (:class:`FiveParameterSpace`); the optical
    cell's is :class:`dsp.fitting.joint_opto.CellFit`. Each gives a setting's objective in its
    ``z``, the per-coordinate step scale, the physical start and the start at every setting."""

    @staticmethod
    def objective(frames: Frames, space: CurveSpace, param: Parameterisation, fit: FitOptions):
        return make_objective(frames, param, fit.hessian, fit.device)

    @staticmethod
    def scale(param: Parameterisation, fit: FitOptions) -> tuple[float, ...]:
        return tuple(fit.max_step)

    @staticmethod
    def start(start: dict | None, fit: FitOptions) -> dict[str, float]:
        return dict(DEFAULT_INIT if start is None else start)

    @staticmethod
    def start_rows(objectives, settings, param: Parameterisation, start: dict) -> np.ndarray:
        """The start at every setting, each with its own level-matched make-up. ``(S, 5)``."""
        z0 = param.from_physical(start)
        rows = []
        for obj, s in zip(objectives, settings):
            z = z0.clone()
            z[4] = level_matched_make_up(obj, s.frames, z)
            rows.append(z.numpy())
        return np.stack(rows)


# the fitting side of each curve space (CurveSpace.kind)
SPACE_FITS = {"ff5": FiveParameterFit, "opto": joint_opto.CellFit}


def _setting_objectives(settings: Sequence[JointSetting], space: CurveSpace, param, fit: FitOptions):
    objs = [SPACE_FITS[space.kind].objective(s.frames, space, param, fit) for s in settings]
    for s, o in zip(settings, objs):
        if o.energy <= 0:
            raise ValueError(f"{s.label or s.knobs}: the target is silent after the warm-up; nothing to fit")
    return objs


class CoefficientObjective:
    """Mean per-setting ESR plus roughness penalty, in the flattened coefficients.

    Offers the solver's interface (``loss``, ``loss_grad_hess``) on ``vec(C)`` ``(size * P,)``.

    Args:
        objectives: one per setting, each with ``loss``, ``loss_grad_hess`` in ``z`` and ``energy``.
        design: basis rows of the settings, ``(S, size)``.
        penalty: roughness matrix ``(size, size)``.
        smoothness: its weight ``lam``.
        scale: per-coordinate scale ``a`` ``(P,)``: its length is the coordinates per setting.
        bounded: the coordinates the ridge ``prior`` holds (logits; default: the five-parameter
            model's ratio, attack, release).
    """

    def __init__(self, objectives, design: np.ndarray, penalty: np.ndarray, smoothness: float,
                 scale: Sequence[float], monotone: Sequence[tuple[int, int, np.ndarray]] = (),
                 prior: float = 0.0, centre: Sequence[float] | None = None, bounded: Sequence[int] = BOUNDED):
        self.objectives = list(objectives)
        self.design = torch.as_tensor(np.asarray(design, dtype=np.float64))
        self.size = self.design.shape[1]
        self.width = P = len(scale)
        self.weights = torch.tensor([1.0 / (len(self.objectives) * o.energy) for o in self.objectives],
                                    dtype=torch.float64)
        w = torch.as_tensor(1.0 / np.asarray(scale, dtype=np.float64) ** 2)
        self.penalty_hess = 2.0 * float(smoothness) * torch.kron(
            torch.as_tensor(np.asarray(penalty, dtype=np.float64)), torch.diag(w))
        if prior > 0:       # the ridge on the bounded coordinates is quadratic: folded in here
            mask = torch.zeros(P, dtype=torch.float64)
            mask[list(bounded)] = 1.0
            ridge = 2.0 * float(prior) * torch.diag((w * mask).repeat(self.size))
            self.penalty_hess = self.penalty_hess + ridge
            z0 = torch.as_tensor(np.asarray(centre, dtype=np.float64)).repeat(self.size)
            self._shift = ridge @ z0          # the ridge is |c - c0|^2, not |c|^2
            self._offset = 0.5 * float(z0 @ ridge @ z0)
        else:
            self._shift = torch.zeros(self.size * P, dtype=torch.float64)
            self._offset = 0.0
        # one-sided: rows (sign * D c[:, p]) > 0 step the wrong way
        self.monotone = [(int(p), torch.as_tensor(sign * np.asarray(d, dtype=np.float64)),
                          MONOTONE_WEIGHT * float(w[p])) for p, sign, d in monotone]

    def z(self, c: torch.Tensor) -> torch.Tensor:
        """Every setting's ``z``. Shape: ``(size * P,)`` -> ``(S, P)``."""
        return self.design @ torch.as_tensor(c, dtype=torch.float64).reshape(self.size, self.width)

    def _wrong_steps(self, c: torch.Tensor):
        """Per monotone parameter: ``(p, d, k, wrong)``, ``wrong`` the steps against its direction (0 elsewhere)."""
        coef = c.reshape(self.size, self.width)
        return [(p, d, k, torch.clamp(d @ coef[:, p], min=0.0)) for p, d, k in self.monotone]

    def _penalty(self, c: torch.Tensor) -> float:
        """Value of every penalty; the line search's path, so no derivatives."""
        f = 0.5 * float(c @ self.penalty_hess @ c) - float(self._shift @ c) + self._offset
        return f + sum(k * float(wrong @ wrong) for _, _, k, wrong in self._wrong_steps(c))

    def _terms(self, c: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Value, gradient and Hessian of every penalty (roughness, ridge, monotone)."""
        f = self._penalty(c)
        g = self.penalty_hess @ c - self._shift
        h = self.penalty_hess.clone()
        for p, d, k, wrong in self._wrong_steps(c):
            active = d[wrong > 0]
            idx = torch.arange(self.size) * self.width + p
            g[idx] += 2.0 * k * (d.T @ wrong)
            h[idx[:, None], idx[None, :]] += 2.0 * k * (active.T @ active)
        return f, g, h

    def setting_losses(self, c: torch.Tensor) -> list[float]:
        return [o.loss(z) for o, z in zip(self.objectives, self.z(c))]

    def loss(self, c: torch.Tensor) -> float:
        c = torch.as_tensor(c, dtype=torch.float64)
        data = sum(w * f for w, f in zip(self.weights.tolist(), self.setting_losses(c)))
        return data + self._penalty(c)

    def loss_grad_hess(self, c: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        c = torch.as_tensor(c, dtype=torch.float64)
        n, P = self.size, self.width
        f = 0.0
        g = torch.zeros(n, P, dtype=torch.float64)
        h = torch.zeros(n * P, n * P, dtype=torch.float64)
        for obj, z, b, w in zip(self.objectives, self.z(c), self.design, self.weights):
            f_s, g_s, h_s = obj.loss_grad_hess(z)
            f += float(w) * f_s
            g += w * torch.outer(b, g_s)
            h += w * torch.kron(torch.outer(b, b), h_s)
        pf, pg, ph = self._terms(c)
        f += pf
        g = g.reshape(-1) + pg
        h = h + ph
        return f, g, 0.5 * (h + h.T)


def project_curves(basis: KnobBasis, knobs: np.ndarray, z: np.ndarray, ridge: float = 1e-8) -> np.ndarray:
    """Least-squares coefficients whose curves pass closest to ``z`` at ``knobs``.

    A tiny ridge on the roughness penalty (and on the coefficients) settles
    coefficients the points do not determine.

    Shape: knobs ``(S, d)``, z ``(S, P)`` -> ``(size, P)``.
    """
    b = basis.design(knobs)
    lhs = b.T @ b + ridge * (basis.penalty() + np.eye(basis.size))
    return np.linalg.solve(lhs, b.T @ np.asarray(z, dtype=np.float64))


def _knob_matrix(settings: Sequence[JointSetting]) -> np.ndarray:
    return np.array([[float(k) for k in s.knobs] for s in settings], dtype=np.float64)


class JointProblem:
    """What every candidate of one group's joint fit shares: the settings' objectives (for
    opto each holds the pair's prepared signals: made once, not per candidate), the
    parameterisation, the per-setting start, the step scale and the ridge's centre.

    Args:
        settings: the group's Train settings.
        options: the space (:attr:`JointOptions.curve_space`), fit options and start are read;
            basis size, smoothness and prior are not (they vary between candidates).
    """

    def __init__(self, settings: Sequence[JointSetting], options: JointOptions):
        if not settings:
            raise ValueError("a joint fit needs at least one setting")
        rates = {s.frames.sample_rate for s in settings}
        if len(rates) != 1:
            raise ValueError(f"settings of one joint fit must share a sample rate, got {sorted(rates)}")
        self.settings = list(settings)
        self.sample_rate = rates.pop()
        self.knobs = _knob_matrix(settings)
        self.space = options.curve_space
        self.param = self.space.param(self.sample_rate)
        self.objectives = _setting_objectives(settings, self.space, self.param, options.fit)
        self._fit = SPACE_FITS[self.space.kind]
        self.coordinates = tuple(self.param.names)     # the solver's at a setting, in order
        self.scale = np.asarray(self._fit.scale(self.param, options.fit), dtype=np.float64)
        self._start_physical = self._fit.start(options.start, options.fit)
        self.centre = self.param.from_physical(self._start_physical).numpy()   # the ridge's
        self.bounded = tuple(i for i, n in enumerate(self.coordinates) if n not in UNBOUNDED_NAMES)
        self._start_z: np.ndarray | None = None

    def start_z(self) -> np.ndarray:
        """The start at every setting ``(S, P)`` (made on first use, then kept)."""
        if self._start_z is None:
            self._start_z = self._fit.start_rows(self.objectives, self.settings, self.param, self._start_physical)
        return self._start_z


def fit_joint(settings: Sequence[JointSetting], knob_names: Sequence[str], options: JointOptions = JointOptions(),
              init: JointCurves | None = None,
              progress: Callable[[int, float, float], None] | None = None,
              problem: JointProblem | None = None) -> JointResult:
    """Fit smooth curves over the knobs to every setting of one group at once.

    Args:
        settings: the group's Train settings (at least one; knob vectors of ``len(knob_names)``).
        knob_names: names of the knob vector's entries (LA-2A: ``("peak_reduction",)``).
        options: basis size, roughness weight, fit options, start, space.
        init: curves to start from (projected onto this fit's basis); None: the default
            start, level-matched per setting.
        progress: per-iteration callback ``(iteration, objective, decrement)``.
        problem: the settings' objectives and start made already (:class:`JointProblem` of
            these settings and options), e.g. by a selection over candidates.

    Returns:
        :class:`JointResult`.
    """
    t0 = time.perf_counter()
    problem = JointProblem(settings, options) if problem is None else problem
    knobs = problem.knobs
    if knobs.shape[1] != len(knob_names):
        raise ValueError(f"knob vectors have {knobs.shape[1]} entries for {len(knob_names)} knob names")
    basis = KnobBasis.uniform(tuple(knob_names), knobs, options.size)
    design = basis.design(knobs)
    width = len(problem.scale)
    monotone = []
    for name, direction in options.monotone.items():
        if name not in problem.coordinates:
            raise ValueError(f"monotone: {name!r} is not a coordinate of the {problem.space.kind} curves")
        monotone.append((problem.coordinates.index(name), 1 if direction == "decreasing" else -1,
                         basis.first_differences()))
    objective = CoefficientObjective(problem.objectives, design, basis.penalty(), options.smoothness, problem.scale,
                                     monotone, options.prior, problem.centre, problem.bounded)

    if init is None:
        start_z = problem.start_z()
    else:
        start_z = init.z_at(knobs).numpy()
        if start_z.shape[1] != width:
            raise ValueError(f"init curves have {start_z.shape[1]} coordinates per setting, this fit {width}")
    c0 = torch.from_numpy(project_curves(basis, knobs, start_z).reshape(-1))

    reach = float(np.max(np.abs(design).sum(axis=1)))
    cap = tuple(np.tile(problem.scale / reach, basis.size).tolist())
    nopts = NewtonOptions(**{**options.fit.newton.__dict__, "atol": options.fit.atol_esr, "max_step": cap,
                             "stall_rtol": options.stall})
    result = newton(objective, c0, nopts, progress)
    if not result.converged:
        warnings.warn(f"joint fit did not converge: {result.reason}", RuntimeWarning, stacklevel=2)
    losses = objective.setting_losses(result.z)
    fits = [SettingFit(tuple(float(k) for k in s.knobs), s.label, f / o.energy)
            for s, o, f in zip(problem.settings, problem.objectives, losses)]
    curves = JointCurves(basis, result.z.reshape(basis.size, width).numpy().copy(), problem.sample_rate,
                         problem.space)
    return JointResult(curves, fits, result.loss, result.iterations, result.converged, result.reason,
                       time.perf_counter() - t0, float(options.smoothness), result.history,
                       monotone=dict(options.monotone), prior=float(options.prior))


def pooled_esr(curves: JointCurves, settings: Sequence[JointSetting], hessian: str = "kernel") -> float:
    """Total squared pre-emphasised error over total target energy of ``settings`` (e.g. the
    Val pairs), with the parameters read off ``curves`` at each setting's knobs (opto: through
    the curves' blocks)."""
    param = curves._param()
    pooled = PooledESR()
    fit = FitOptions(hessian=hessian)
    for s, z in zip(settings, curves.z_at(_knob_matrix(settings))):
        obj = SPACE_FITS[curves.space.kind].objective(s.frames, curves.space, param, fit)
        pooled.add(obj.loss(z), obj.energy)
    if pooled.value is None:
        raise ValueError("the validation targets are silent; nothing to score")
    return pooled.value


@dataclass
class Selection:
    """The chosen fit and the table of every candidate (size, smoothness, Val and Train ESR)."""
    best: JointResult
    table: list[dict]


def select_smoothness(train: Sequence[JointSetting], val: Sequence[JointSetting], knob_names: Sequence[str],
                      candidates: Sequence[tuple[int, float]] = DEFAULT_CANDIDATES,
                      options: JointOptions = JointOptions(),
                      progress: Callable[[dict], None] | None = None,
                      priors: Sequence[float] = (),
                      val_score: Callable[[JointResult], float] | None = None) -> Selection:
    """Fit each ``(size, smoothness)`` candidate on ``train``; keep the lowest pooled ESR on ``val``.

    Every candidate starts from the default start, so each result is the fit a plain
    :func:`fit_joint` with those options gives (the chosen one needs no refit) and the
    choice does not depend on the order of the candidates. Ties keep the one listed first.
    A candidate whose basis is another's (a size capped by the distinct knob values) is
    not fitted again: its row repeats that one's (``same_as``, 0 s).
    The candidates are fitted with ``options.prior``; then the chosen basis and
    smoothness are fitted again with each of ``priors`` (other ridge weights), and the
    lowest Val ESR of all wins.

    Args:
        train: fitting settings of one group.
        val: validation settings of the same group (their knobs may differ from Train's;
            held-out settings must not be among them).
        candidates: ``(basis size, smoothness)`` pairs.
        progress: called with each candidate's table row as it is scored.
        priors: further ridge weights tried with the chosen basis and smoothness.
        val_score: a fit's Val ESR (default: :func:`pooled_esr` of its curves; the
            gray-box: :class:`GrayboxValScore`, the model that will be used).

    Returns:
        :class:`Selection`; ``best.selection`` holds the table too (``prior`` column).
    """
    if not val:
        raise ValueError("smoothness selection needs at least one validation setting")
    if not candidates:
        raise ValueError("no smoothness candidates given")
    best: JointResult | None = None
    best_val, best_row = math.inf, -1
    table = []
    done: dict[tuple, dict] = {}
    knobs = _knob_matrix(train)
    problem = JointProblem(train, options)   # the settings' objectives and start: once for every candidate

    def score(size: int, lam: float, prior: float) -> None:
        nonlocal best, best_val, best_row
        # a size above a knob's distinct values is capped (KnobBasis.uniform): the same fit again
        key = (tuple(sp.size for sp in KnobBasis.uniform(tuple(knob_names), knobs, int(size)).splines),
               float(lam), float(prior))
        if key in done:
            table.append({**done[key], "size": int(size), "seconds": 0.0, "same_as": table.index(done[key])})
            if progress:
                progress(table[-1])
            return
        opts = replace(options, size=int(size), smoothness=float(lam), prior=float(prior))   # the rest as given
        res = fit_joint(train, knob_names, opts, problem=problem)
        val_esr = pooled_esr(res.curves, val, options.fit.hessian) if val_score is None else float(val_score(res))
        row = {"size": int(size), "smoothness": float(lam), "prior": float(prior), "val_esr": val_esr,
               "train_esr": res.mean_esr, "iterations": res.iterations, "converged": res.converged,
               "seconds": res.seconds}
        table.append(row)
        done[key] = row
        if progress:
            progress(row)
        if val_esr < best_val:
            best, best_val, best_row = res, val_esr, len(table) - 1

    for size, lam in candidates:
        score(size, lam, options.prior)
    chosen = table[best_row]
    for prior in priors:
        if float(prior) != float(options.prior):
            score(chosen["size"], chosen["smoothness"], prior)
    for i, row in enumerate(table):   # by position: a basis of several knobs has more functions than "size"
        row["chosen"] = i == best_row
    best.selection = table
    return Selection(best, table)


def bound_hits(params: dict[str, float], ranges: Ranges = Ranges(), tolerance: float = 0.01) -> list[str]:
    """Names of the bounded compressor parameters within ``tolerance`` of a range end
    (:func:`dsp.fitting.bounds.at_bounds`; 1%: ratio above 19.4, release above 955 ms)."""
    return list(at_bounds(params, FitOptions(ranges=ranges), tolerance))


@dataclass
class SharedBlocks:
    """A gray-box's blocks for one joint group: the same at every setting.

    Attributes:
        blocks: the six block values (:data:`dsp.models.graybox.BLOCK_NAMES`), physical.
        make_up_offset: dB added to the make-up curve at every setting.
        fitted_at: the knob vector of the setting they were fitted on.
        iterations: Newton iterations of that fit.
    """
    blocks: dict[str, float]
    make_up_offset: float
    fitted_at: tuple[float, ...]
    iterations: int

    def apply(self, compressor: dict[str, float]) -> dict[str, float]:
        """The eleven gray-box parameters from the curves' five at one setting."""
        out = {**compressor, **self.blocks}
        out["make_up_db"] = float(compressor["make_up_db"]) + self.make_up_offset
        return out

    def esr(self, fit: JointResult, setting: JointSetting, options: FitOptions) -> float:
        """The gray-box's ESR on ``setting``'s audio, the curves of ``fit`` with these blocks."""
        return evaluate_any(setting.frames, self.apply(fit.curves.params_at(setting.knobs)), options)


def fit_shared_blocks(fit: JointResult, settings: Sequence[JointSetting], options: FitOptions,
                      blocks_start: dict[str, float] | None = None) -> SharedBlocks:
    """``compressor=graybox`` on a joint fit: one set of block parameters shared by every setting.

    The transformers and the tube stage do not move with the knob, so the blocks are not
    curves: they are fitted once (:func:`dsp.fitting.graybox.fit_blocks`, exact Newton, the
    compressor's gain held) on the setting with the highest knob vector (the LA-2A: the
    top PR, where the chain fits them too), with the joint curves' compressor there. The
    make-up found with them becomes one offset added to the make-up curve at every
    setting, so the curves stay smooth. ``blocks_start``: the blocks' start (default: the
    options' transparent start), e.g. the blocks of a neighbouring candidate.
    """
    top = max(settings, key=lambda s: tuple(s.knobs))
    compressor = fit.curves.params_at(top.knobs)
    start = {**compressor, **dict(getattr(options, "start", {})), **dict(blocks_start or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_blocks(top.frames, compressor, start, options)
    return SharedBlocks({k: float(res.params[k]) for k in BLOCK_NAMES},
                        float(res.params["make_up_db"] - compressor["make_up_db"]),
                        tuple(float(k) for k in top.knobs), int(res.iterations))


class GrayboxValScore:
    """``val_score`` of :func:`select_smoothness` for ``compressor=graybox``.

    A candidate's pooled gray-box ESR on ``val``: its curves with the blocks
    :func:`fit_shared_blocks` fits on ``train``, the model that will be used (the
    five-parameter ESR would reward curves bent to make up for the blocks). Each
    candidate's blocks are kept, so the chosen one's are not fitted again
    (:meth:`blocks_for`). A candidate's blocks start from the previous candidate's: the
    transformers and the tube are the same unit's whatever the curves, so the exact Newton
    starts next to its answer (from the transparent start every time, the block fits were
    most of the selection's time: a 7x7 Newton of about 24 FFTs of the top take per step).
    """

    def __init__(self, train: Sequence[JointSetting], val: Sequence[JointSetting], options: FitOptions):
        self.train, self.val, self.options = list(train), list(val), options
        self._kept: list[tuple[JointResult, SharedBlocks]] = []

    def __call__(self, fit: JointResult) -> float:
        previous = self._kept[-1][1].blocks if self._kept else None
        shared = fit_shared_blocks(fit, self.train, self.options, previous)
        self._kept.append((fit, shared))
        err = energy = 0.0
        for s in self.val:
            e = target_energy(s.frames)
            err += e * shared.esr(fit, s, self.options)
            energy += e
        if energy <= 0:
            raise ValueError("the validation targets are silent; nothing to score")
        return err / energy

    def blocks_for(self, fit: JointResult) -> SharedBlocks:
        """The blocks fitted with ``fit`` when it was scored (fitted now if it was not)."""
        for kept, shared in self._kept:
            if kept is fit:
                return shared
        return fit_shared_blocks(fit, self.train, self.options)


