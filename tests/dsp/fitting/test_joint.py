"""The joint knob fit: exact derivatives through the basis, recovery of known curves,
smoothness chosen on validation material, and plain records."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import yaml

from audio.framing import Frames, make_frames
from audio.material import synthesize
from audio.devices import la2a_setting
from dsp.knobs.basis import KnobBasis
from dsp.models.ff5 import compress
from dsp.fitting.ff5 import FitOptions
from dsp.fitting.joint import (CoefficientObjective, JointOptions, JointSetting, bound_hits, fit_joint, pooled_esr,
                               select_smoothness)
from dsp.knobs.joint_curves import JointCurves, JointKnobModel, JointResult
from dsp.derivatives.ff5_kernel import KernelObjective
from dsp.knobs.knobmap import KnobMap
from dsp.fitting.newton import NewtonOptions
from dsp.models.parameters import PARAM_NAMES, Parameterisation, Ranges
from dsp.models.preemphasis import preemphasis
from dsp.models.ff5_streaming import render

SR = 44100
KNOB = ("peak_reduction",)
TRAIN_PR = (40.0, 60.0, 80.0, 100.0)
BETWEEN_PR = (50.0, 70.0, 90.0)
PARAM = Parameterisation(SR)

# physical parameters at PR 40 and 100; the truth is a straight line between them in z
LOW = {"threshold_db": -18.0, "ratio": 2.5, "attack_ms": 8.0, "release_ms": 300.0, "make_up_db": 0.5}
HIGH = {"threshold_db": -34.0, "ratio": 6.0, "attack_ms": 1.5, "release_ms": 80.0, "make_up_db": 4.0}
# plus a bend (in z) that only a basis of 3 or more functions can follow
BEND = torch.tensor([6.0, 0.8, 0.0, -0.6, 1.5], dtype=torch.float64)


def true_z(pr: float, bend: bool) -> torch.Tensor:
    u = (pr - 40.0) / 60.0
    z = (1 - u) * PARAM.from_physical(LOW) + u * PARAM.from_physical(HIGH)
    return z + (4 * u * (1 - u)) * BEND if bend else z


def _setting(pr: float, bend: bool, seed: int, seconds: float = 3.0) -> JointSetting:
    x = synthesize(seconds, SR, seed=seed).astype(np.float64)
    y = render(x, SR, PARAM.to_physical(true_z(pr, bend)))
    return JointSetting((pr,), make_frames(x, y, SR, 12.0, 0.5), f"pr_{pr:g}")


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------------------
# exact derivatives through the basis
# --------------------------------------------------------------------------------------
def _bursts(rng, t, seg=2205):
    levels = 10.0 ** (rng.uniform(-50.0, 0.0, t // seg + 1) / 20.0)
    return rng.standard_normal(t) * np.repeat(levels, seg)[:t]


def test_coefficient_derivatives_match_autograd_of_the_composed_objective():
    rng = np.random.default_rng(5)
    t, warm = SR // 3, SR // 20
    knobs = np.array([[40.0], [55.0], [80.0], [100.0]])
    frames = []
    for pr in knobs[:, 0]:
        x = _bursts(rng, t)[None, :]
        y = compress(torch.from_numpy(x), PARAM.natural(true_z(pr, True))).numpy()
        frames.append(Frames(x, y + 1e-3 * rng.standard_normal(y.shape), np.array([t]), warm, SR))
    basis = KnobBasis.uniform(KNOB, knobs, 3)
    design = basis.design(knobs)
    scale = np.array([6.0, 2.0, 2.0, 2.0, 6.0])
    lam = 0.37
    objectives = [KernelObjective(f, PARAM) for f in frames]
    coef_obj = CoefficientObjective(objectives, design, basis.penalty(), lam, scale)
    # a point away from the optimum, so every term of the Hessian matters
    c = torch.from_numpy(np.stack([true_z(pr, False).numpy() for pr in (40.0, 70.0, 100.0)]).reshape(-1))
    c = c + torch.from_numpy(rng.normal(0.0, 0.3, c.shape))

    xs = [torch.from_numpy(f.x) for f in frames]
    masks = [torch.from_numpy(f.score_mask()) for f in frames]
    targets = [torch.where(m, preemphasis(torch.from_numpy(f.y)), 0.0) for f, m in zip(frames, masks)]
    energies = [float((tp ** 2).sum()) for tp in targets]
    b = torch.from_numpy(design)
    pen = torch.from_numpy(basis.penalty())
    w = torch.from_numpy(1.0 / scale ** 2)

    def composed(cv):
        cm = cv.reshape(3, 5)
        z = b @ cm
        total = 0.0
        for s in range(len(frames)):
            y = compress(xs[s], PARAM.natural(z[s]))
            err = torch.where(masks[s], preemphasis(y) - targets[s], 0.0)
            total = total + (err ** 2).sum() / (len(frames) * energies[s])
        return total + lam * sum(w[p] * cm[:, p] @ pen @ cm[:, p] for p in range(5))

    cv = c.clone().requires_grad_(True)
    f_ref = composed(cv)
    (g_ref,) = torch.autograd.grad(f_ref, cv, create_graph=True)
    h_ref = torch.stack([torch.autograd.grad(g_ref[i], cv, retain_graph=True)[0] for i in range(c.numel())])
    f, g, h = coef_obj.loss_grad_hess(c)
    assert f == pytest.approx(float(f_ref.detach()), rel=1e-8)
    assert coef_obj.loss(c) == pytest.approx(f, rel=1e-12)
    np.testing.assert_allclose(g.numpy(), g_ref.detach().numpy(), rtol=0, atol=1e-6 * float(g_ref.detach().abs().max()))
    h_ref = h_ref.detach().numpy()
    np.testing.assert_allclose(h.numpy(), 0.5 * (h_ref + h_ref.T), rtol=0, atol=1e-6 * np.abs(h_ref).max())
    assert torch.equal(h, h.T)


def test_shape_penalties_match_autograd():
    """The one-sided monotone penalty and the ridge towards the start: exact value, gradient
    and Hessian (no data term: no settings)."""
    rng = np.random.default_rng(11)
    basis = KnobBasis.uniform(KNOB, np.array([[40.0], [55.0], [70.0], [85.0], [100.0]]), 5)
    assert basis.size == 5
    scale = np.array([6.0, 2.0, 2.0, 2.0, 6.0])
    d = basis.first_differences()
    centre = rng.normal(0.0, 1.0, 5)
    # threshold must fall, ratio rise; a point where some neighbours step the wrong way
    monotone = [(0, 1, d), (1, -1, d)]
    obj = CoefficientObjective([], np.zeros((0, 5)), basis.penalty(), 0.2, scale, monotone, 0.3, centre)
    c = torch.from_numpy(rng.normal(0.0, 2.0, 25))
    w = torch.from_numpy(1.0 / scale ** 2)
    dt, pen = torch.from_numpy(d), torch.from_numpy(basis.penalty())

    def explicit(cv):
        cm = cv.reshape(5, 5)
        rough = 0.2 * sum(w[p] * cm[:, p] @ pen @ cm[:, p] for p in range(5))
        ridge = 0.3 * sum(w[p] * ((cm[:, p] - float(centre[p])) ** 2).sum() for p in (1, 2, 3))
        up = torch.clamp(dt @ cm[:, 0], min=0.0)
        down = torch.clamp(-(dt @ cm[:, 1]), min=0.0)
        return rough + ridge + 10.0 * (w[0] * (up ** 2).sum() + w[1] * (down ** 2).sum())

    cv = c.clone().requires_grad_(True)
    f_ref = explicit(cv)
    (g_ref,) = torch.autograd.grad(f_ref, cv, create_graph=True)
    h_ref = torch.stack([torch.autograd.grad(g_ref[i], cv, retain_graph=True)[0] for i in range(25)])
    assert 0 < int((dt @ c.reshape(5, 5)[:, 0] > 0).sum()) < 4   # both sides of the hinge are exercised
    f, g, h = obj.loss_grad_hess(c)
    assert f == pytest.approx(float(f_ref.detach()), rel=1e-12)
    np.testing.assert_allclose(g.numpy(), g_ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), h_ref.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_shape_options_are_checked():
    with pytest.raises(ValueError, match="monotone"):
        JointOptions(monotone={"threshold": "decreasing"})
    with pytest.raises(ValueError, match="monotone"):
        JointOptions(monotone={"threshold_db": "down"})
    with pytest.raises(ValueError, match="prior"):
        JointOptions(prior=-1.0)
    with pytest.raises(ValueError, match="stall"):
        JointOptions(stall=1.0)


def test_stall_rule_reaches_the_joint_solve():
    """The joint solve stops once five steps gain less than ``stall`` of its objective
    (a creeping solve ran to the iteration cap on the real layout before)."""
    settings = [_setting(pr, True, seed=30 + i, seconds=2.0) for i, pr in enumerate(TRAIN_PR)]
    strict = _quiet(fit_joint, settings, KNOB, JointOptions(size=4, smoothness=1e-2, stall=0.0))
    loose = _quiet(fit_joint, settings, KNOB, JointOptions(size=4, smoothness=1e-2, stall=0.05))
    assert loose.converged and "steps lowered the loss by less than 0.05" in loose.reason
    assert 5 <= loose.iterations < strict.iterations and "steps" not in strict.reason
    assert loose.history[-5] - loose.loss <= 0.05 * loose.loss
    assert JointOptions().stall == 1e-6


# --------------------------------------------------------------------------------------
# recovering known curves from digital-compressor targets
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def straight():
    settings = [_setting(pr, False, seed=10 + i) for i, pr in enumerate(TRAIN_PR)]
    return settings, _quiet(fit_joint, settings, KNOB, JointOptions(size=4, smoothness=1e-2))


def test_recovers_straight_curves_despite_the_penalty(straight):
    """Linear curves are what the second-difference penalty leaves alone: recovered exactly."""
    settings, res = straight
    assert res.converged
    assert res.curves.basis.size == 4 and res.smoothness == 1e-2
    assert all(s.esr < 1e-8 for s in res.settings)
    for pr in TRAIN_PR + BETWEEN_PR + (45.0,):
        z = res.curves.z_at(pr)[0]
        assert torch.max(torch.abs(z - true_z(pr, False))) < 2e-3, pr
        got = res.curves.params_at(pr)
        want = PARAM.to_physical(true_z(pr, False))
        for k in PARAM_NAMES:
            assert got[k] == pytest.approx(want[k], rel=2e-3, abs=1e-3), (pr, k)


def test_joint_fit_result_fields(straight):
    settings, res = straight
    assert [s.knobs for s in res.settings] == [s.knobs for s in settings]
    assert [s.label for s in res.settings] == ["pr_40", "pr_60", "pr_80", "pr_100"]
    assert 1 <= res.iterations <= 100 and res.seconds > 0
    assert res.history and res.history[-1] >= res.loss - 1e-15
    assert res.mean_esr == pytest.approx(np.mean([s.esr for s in res.settings]))


def test_outside_the_fitted_range_end_values_are_held(straight):
    _, res = straight
    assert res.curves.params_at(20.0) == res.curves.params_at(40.0)
    assert res.curves.params_at(100.0) == res.curves.params_at(120.0)


@pytest.fixture(scope="module")
def bent_selection():
    """Curves with a bend; candidates: a straight line, a free cubic (it holds the truth),
    a cubic pressed flat by a heavy penalty. Val material sits between the Train knobs."""
    train = [_setting(pr, True, seed=20 + i) for i, pr in enumerate(TRAIN_PR)]
    val = [_setting(pr, True, seed=40 + i, seconds=2.0) for i, pr in enumerate(BETWEEN_PR)]
    candidates = [(2, 0.0), (4, 0.0), (4, 100.0)]
    # a start near the curves and looser stops keep the misfitting candidates short (the
    # exact one converges quadratically)
    opts = JointOptions(fit=FitOptions(newton=NewtonOptions(max_iterations=20, rtol=1e-6, ftol=1e-5)),
                        start=PARAM.to_physical(true_z(70.0, False)))
    rows = []
    sel = _quiet(select_smoothness, train, val, KNOB, candidates, opts, progress=rows.append)
    return val, candidates, rows, sel


def test_recovers_bent_curves_with_a_cubic(bent_selection):
    *_, sel = bent_selection
    res = sel.best
    assert res.converged and max(s.esr for s in res.settings) < 1e-8
    for pr in TRAIN_PR + BETWEEN_PR:
        assert torch.max(torch.abs(res.curves.z_at(pr)[0] - true_z(pr, True))) < 5e-3, pr


def test_monotone_threshold_holds_against_a_bump(bent_selection):
    """The bent truth's threshold rises above PR 40 before it falls: the free cubic follows
    it, the monotone one cannot and falls everywhere, fitting the other curves still."""
    *_, sel = bent_selection
    grid = np.linspace(40.0, 100.0, 61)
    free = sel.best.curves.sample(grid)["threshold_db"]
    assert np.max(np.diff(free)) > 0.1
    train = [_setting(pr, True, seed=20 + i) for i, pr in enumerate(TRAIN_PR)]
    opts = JointOptions(4, 0.0, FitOptions(newton=NewtonOptions(max_iterations=20, rtol=1e-6, ftol=1e-5)),
                        PARAM.to_physical(true_z(70.0, False)), monotone={"threshold_db": "decreasing"})
    res = _quiet(fit_joint, train, KNOB, opts)
    held = res.curves.sample(grid)["threshold_db"]
    assert np.max(np.diff(held)) <= 1e-3
    assert res.monotone == {"threshold_db": "decreasing"}
    assert JointResult.from_record(res.to_record()).monotone == res.monotone
    assert max(s.esr for s in res.settings) < 0.05


def test_prior_holds_the_bounded_coordinates_where_the_data_is_silent(straight):
    """A heavy ridge keeps ratio, attack and release at the start; threshold and make-up,
    which it does not touch, still fit."""
    settings, free = straight
    start = {"threshold_db": -30.0, "ratio": 3.0, "attack_ms": 5.0, "release_ms": 150.0, "make_up_db": 0.0}
    res = _quiet(fit_joint, settings, KNOB, JointOptions(size=4, smoothness=1e-2, start=start, prior=1e4))
    centre = PARAM.from_physical(start)
    for pr in TRAIN_PR:
        z = res.curves.z_at(pr)[0]
        assert torch.max(torch.abs(z[1:4] - centre[1:4])) < 0.05, pr
    assert res.prior == 1e4 and JointResult.from_record(res.to_record()).prior == 1e4
    assert res.mean_esr > 100 * free.mean_esr


# --------------------------------------------------------------------------------------
# smoothness chosen on validation material
# --------------------------------------------------------------------------------------
def test_selection_on_val_picks_the_basis_that_can_follow_the_bend(bent_selection):
    val, candidates, rows, sel = bent_selection
    assert [(r["size"], r["smoothness"]) for r in sel.table] == candidates
    assert rows == sel.table
    assert [r["chosen"] for r in sel.table] == [False, True, False]
    assert (sel.best.curves.basis.size, sel.best.smoothness) == (4, 0.0)
    assert sel.best.selection == sel.table
    vals = [r["val_esr"] for r in sel.table]
    assert vals[1] < 1e-6 < min(vals[0], vals[2])
    assert vals[1] == pytest.approx(pooled_esr(sel.best.curves, val), rel=1e-12)
    # the flat candidates fit Train worse too, but Train alone cannot rank exact fits
    assert sel.table[1]["train_esr"] < 1e-8 < min(sel.table[0]["train_esr"], sel.table[2]["train_esr"])


def test_a_candidate_with_the_same_capped_basis_is_not_fitted_again(straight):
    """Four Train settings: sizes 4 and 6 are the same basis of 4 functions."""
    settings, _ = straight
    rows = []
    sel = _quiet(select_smoothness, settings, settings[:1], KNOB, [(4, 1e-2), (6, 1e-2)], JointOptions(),
                 progress=rows.append)
    first, second = sel.table
    assert second["same_as"] == 0 and second["seconds"] == 0.0 and second["size"] == 6
    assert second["val_esr"] == first["val_esr"] and second["iterations"] == first["iterations"]
    assert [r["chosen"] for r in sel.table] == [True, False] and rows == sel.table


def test_selection_needs_validation_material():
    with pytest.raises(ValueError, match="validation"):
        select_smoothness([_setting(40.0, False, 1, 1.0)], [], KNOB)


# --------------------------------------------------------------------------------------
# records, summary rows and the knob map
# --------------------------------------------------------------------------------------
def test_record_round_trip_through_yaml(straight):
    _, res = straight
    model = JointKnobModel({"compress": res, "limit": res})
    text = yaml.safe_dump(model.to_record(), sort_keys=False)
    again = JointKnobModel.from_record(yaml.safe_load(text))
    assert again.modes == ["compress", "limit"]
    for pr in (40, 47.5, 65, 100):
        assert again.at("limit", pr) == model.at("limit", pr)
    assert again.rows() == model.rows()
    r = again.fits["compress"]
    assert (r.iterations, r.converged, r.reason, r.smoothness) == (res.iterations, res.converged, res.reason, 1e-2)
    assert JointResult.from_record(res.to_record()).curves.coefficients.tolist() == res.curves.coefficients.tolist()
    with pytest.raises(ValueError):
        JointKnobModel.from_record({"kind": "knobmap"})
    bad = res.curves.to_record()
    bad["coefficients"] = bad["coefficients"][:-1]
    with pytest.raises(ValueError, match="coefficients"):
        JointCurves.from_record(bad)


def test_rows_feed_the_knob_map_unchanged(straight):
    _, res = straight
    model = JointKnobModel({"compress": res})
    rows = model.rows()
    assert [r["peak_reduction"] for r in rows] == [40, 60, 80, 100]
    assert all(isinstance(r["peak_reduction"], int) for r in rows)
    for r, s in zip(rows, res.settings):
        assert r["esr"] == s.esr and r["iterations"] == res.iterations
    assert sum(r["seconds"] for r in rows) == pytest.approx(res.seconds)
    km = KnobMap.from_rows(rows, "ff5")
    for pr in (40, 60, 80, 100):
        assert km.at(la2a_setting("compress", pr)) == pytest.approx(model.at("compress", pr))
    # any setting, e.g. a held-out one: parameters from the curves, no fitting ESR
    extra = model.rows({"compress": [45, 65]})
    assert [r["peak_reduction"] for r in extra] == [45, 65]
    assert all(math.isnan(r["esr"]) and r["seconds"] == 0.0 for r in extra)
    assert extra[1]["threshold_db"] == pytest.approx(model.at("compress", 65)["threshold_db"])
    assert model.levels("compress") == [40, 60, 80, 100]


def test_curve_grid(straight):
    _, res = straight
    grid = JointKnobModel({"compress": res}).curve_grid("compress", points=13)
    assert set(grid) == {"peak_reduction", *PARAM_NAMES}
    np.testing.assert_allclose(grid["peak_reduction"], np.linspace(40, 100, 13))
    assert grid["threshold_db"].shape == (13,)
    assert grid["threshold_db"][6] == pytest.approx(res.curves.params_at(70.0)["threshold_db"])
    assert np.all(np.diff(grid["threshold_db"]) < 0)   # the truth falls with PR


def test_bound_hits():
    r = Ranges()
    inside = {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 200.0, "make_up_db": 0.0}
    assert bound_hits(inside, r) == []
    assert bound_hits({**inside, "ratio": 19.9, "release_ms": 990.0}, r) == ["ratio", "release_ms"]
    assert bound_hits({**inside, "attack_ms": 0.1}, r) == ["attack_ms"]


def test_bad_input_is_rejected():
    s = _setting(40.0, False, 1, 1.0)
    other = JointSetting((60.0,), Frames(s.frames.x, s.frames.y, s.frames.lengths, s.frames.warmup, 48000))
    with pytest.raises(ValueError, match="sample rate"):
        fit_joint([s, other], KNOB)
    silent = JointSetting((60.0,), Frames(s.frames.x, 0 * s.frames.y, s.frames.lengths, s.frames.warmup, SR),
                          "pr_60")
    with pytest.raises(ValueError, match="pr_60: the target is silent"):
        fit_joint([s, silent], KNOB)
    with pytest.raises(ValueError, match="knob"):
        fit_joint([s], ("a", "b"))


# --------------------------------------------------------------------------------------
# several knobs (manifest devices): additive, smooth in each knob
# --------------------------------------------------------------------------------------
def test_two_knobs_additive_recovery_and_step_cap(monkeypatch):
    """z(a, b) = z0 + slope_a a + slope_b b is in the additive basis: recovered exactly, also
    at an unfitted combination; the step cap shrinks so no setting's z moves further than
    the per-level cap in one step."""
    import dsp.fitting.joint as joint
    z0 = PARAM.from_physical(LOW)
    slope_a = (PARAM.from_physical(HIGH) - z0) / 2.0
    slope_b = torch.tensor([-3.0, 0.4, -0.5, 0.3, 1.0], dtype=torch.float64)

    def truth(a, b):
        return z0 + slope_a * a + slope_b * b

    settings = []
    for i, (a, b) in enumerate([(0.0, 0.0), (2.0, 0.0), (0.0, 1.0), (1.0, 1.0)]):
        x = synthesize(3.0, SR, seed=60 + i).astype(np.float64)
        y = render(x, SR, PARAM.to_physical(truth(a, b)))
        settings.append(JointSetting((a, b), make_frames(x, y, SR, 12.0, 0.5), f"a{a:g}_b{b:g}"))
    seen = {}
    real_newton = joint.newton

    def spy(objective, c0, options, progress=None):
        seen["cap"] = options.max_step
        return real_newton(objective, c0, options, progress)

    monkeypatch.setattr(joint, "newton", spy)
    res = _quiet(fit_joint, settings, ("a", "b"), JointOptions(size=4, smoothness=1e-3))
    assert [s.size for s in res.curves.basis.splines] == [3, 2]   # a: 3 distinct values, b: 2
    assert res.curves.basis.size == 4
    # the largest basis row sum is 2 (one from each knob), so the cap halves
    np.testing.assert_allclose(seen["cap"], np.tile(np.array([6.0, 2.0, 2.0, 2.0, 6.0]) / 2, 4))
    assert max(s.esr for s in res.settings) < 1e-8
    for a, b in [(2.0, 1.0), (0.5, 0.5)]:
        assert torch.max(torch.abs(res.curves.z_at({"a": a, "b": b})[0] - truth(a, b))) < 2e-3
    model = JointKnobModel({"device": res})
    row = model.rows({"device": [[2.0, 1.0]]})[0]
    assert (row["a"], row["b"]) == (2, 1) and math.isnan(row["esr"])
    grid = model.curve_grid("device", points=3, knob="b", others={"a": 1.0})
    np.testing.assert_allclose(grid["b"], [0.0, 0.5, 1.0])
    assert grid["threshold_db"][2] == pytest.approx(PARAM.to_physical(truth(1.0, 1.0))["threshold_db"], abs=1e-2)
