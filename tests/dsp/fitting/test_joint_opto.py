"""The joint fit of the optical-cell model: the cell's coordinates as curves over the knob,
fitted through blocks held for the group; exact derivatives through the basis, recovery of
a known unit, the start, and the curves' record with their blocks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import yaml

from audio.framing import make_frames
from audio.material import synthesize
from dsp.derivatives.opto_kernel import OptoObjective
from dsp.fitting.joint import CoefficientObjective, JointOptions, JointProblem, JointSetting, fit_joint, pooled_esr
from dsp.fitting.joint_opto import cell_space, fit_group_blocks
from dsp.fitting.opto import OptoFitOptions, evaluate_opto_esr
from dsp.knobs.basis import KnobBasis
from dsp.knobs.joint_curves import JointCurves, JointKnobModel, OptoCellSpace
from dsp.models.graybox import BLOCK_NAMES
from dsp.models.opto import OPTO_NAMES, OPTO_START, OptoParameterisation
from dsp.models.opto_streaming import render

SR = 8000
KNOB = ("peak_reduction",)
BLOCKS = {"input_highpass_hz": 30.0, "input_shelf_hz": 2500.0, "input_shelf_db": -3.0, "tube_drive": 1.2,
          "tube_asymmetry": -0.15, "output_highpass_hz": 15.0}
CELL = {**OPTO_START, "ratio": 3.5, "attack_ms": 8.0, "release_ms": 70.0, "release_slow_ms": 400.0,
        "memory_ms": 600.0, "memory_depth": 3.0, "sidechain_shelf_hz": 1500.0, "input_mix": 0.0}
OPTIONS = OptoFitOptions(fit_mix=False)
pytestmark = pytest.mark.usefixtures("one_thread")


def threshold(pr: float) -> float:
    """The truth: the threshold falls by 4 dB per 20 PR (more sidechain gain), the rest fixed."""
    return -34.0 + 0.2 * (100.0 - pr)


def _setting(pr: float, seed: int, seconds: float = 3.0) -> JointSetting:
    x = synthesize(seconds, SR, seed=seed).astype(np.float64)
    y = render(x, SR, {**CELL, "threshold_db": threshold(pr), **BLOCKS})
    return JointSetting((pr,), make_frames(x, y, SR, seconds, 0.3), f"pr_{pr:g}")


@pytest.fixture(scope="module")
def settings():
    return [_setting(pr, seed=int(pr)) for pr in (60.0, 80.0, 100.0)]


def _space(blocks=BLOCKS) -> OptoCellSpace:
    return cell_space(OPTIONS, blocks)


def test_the_space_holds_the_blocks_and_maps_every_name():
    space = _space()
    param = space.param(SR)
    assert space.width(SR) == param.size == 11          # compress: no input tap
    assert cell_space(OptoFitOptions(fit_mix=True), BLOCKS).width(SR) == 12
    params = space.physical(param, param.from_physical(CELL))
    assert set(params) == set(OPTO_NAMES) and all(params[k] == BLOCKS[k] for k in BLOCK_NAMES)
    assert params["input_mix"] == 0.0
    with pytest.raises(ValueError, match="blocks"):
        OptoCellSpace(blocks=(("tube_drive", 1.0),))


def test_coefficient_derivatives_match_finite_differences(settings):
    """The composition through the basis with the opto kernel's 11 coordinates per setting
    (the kernel's own derivatives are checked against autograd in its tests)."""
    param = OptoParameterisation(SR, OPTIONS.cell, False)
    objectives = [OptoObjective(s.frames, param, BLOCKS) for s in settings]
    knobs = np.array([s.knobs for s in settings])
    basis = KnobBasis.uniform(KNOB, knobs, 2)
    scale = np.ones(param.size)
    centre = param.from_physical(CELL).numpy()
    obj = CoefficientObjective(objectives, basis.design(knobs), basis.penalty(), 0.3, scale,
                               [(0, 1, basis.first_differences())], 1e-2, centre,
                               [i for i, n in enumerate(param.names) if n not in ("threshold_db", "make_up_db")])
    rng = np.random.default_rng(2)
    c = torch.from_numpy(np.tile(centre, 2) + rng.normal(0.0, 0.2, 2 * param.size))
    f, g, h = obj.loss_grad_hess(c)
    assert f == pytest.approx(obj.loss(c), rel=1e-12)
    eps = 1e-5
    for i in (0, 1, 4, param.size + 3, 2 * param.size - 1):
        e = torch.zeros_like(c)
        e[i] = eps
        fd = (obj.loss(c + e) - obj.loss(c - e)) / (2 * eps)
        assert g[i].item() == pytest.approx(fd, rel=1e-5, abs=1e-9 * abs(f))
        _, gp, _ = obj.loss_grad_hess(c + e)
        _, gm, _ = obj.loss_grad_hess(c - e)
        np.testing.assert_allclose(h[i].numpy(), ((gp - gm) / (2 * eps)).numpy(), rtol=1e-4,
                                   atol=1e-5 * float(h.abs().max()))


def test_the_start_picks_each_settings_threshold(settings):
    problem = JointProblem(settings, JointOptions(fit=OPTIONS, space=_space(), start=dict(OPTO_START)))
    rows = problem.start_z()
    assert rows.shape == (3, 11)
    picked = [problem.param.to_physical(torch.from_numpy(r))["threshold_db"] for r in rows]
    assert picked[0] >= picked[1] >= picked[2]        # PR 60, 80, 100: less reduction, a higher threshold
    assert problem.start_z() is rows                   # made once for every candidate


def test_recovers_a_known_unit_through_its_blocks(settings):
    options = JointOptions(size=2, smoothness=1e-4, fit=OPTIONS, space=_space(), start=dict(OPTO_START),
                           monotone={"threshold_db": "decreasing"})
    problem = JointProblem(settings, options)
    start = np.mean([o.loss(torch.from_numpy(z)) / o.energy for o, z in zip(problem.objectives, problem.start_z())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_joint(settings, KNOB, options, problem=problem)
    assert res.curves.coefficients.shape == (2, 11)
    assert res.converged and res.mean_esr < 1e-12 and start > 1e-4
    for s in settings:   # the truth is straight in z (every coordinate but the threshold fixed): recovered
        params = res.curves.params_at(s.knobs)
        truth = {**CELL, "threshold_db": threshold(s.knobs[0])}
        assert {k: params[k] for k in truth} == pytest.approx(truth, rel=1e-4, abs=1e-4)
        assert all(params[k] == BLOCKS[k] for k in BLOCK_NAMES)
        # the setting's ESR is the model's, rendered with every parameter the curves give
        fitted = next(f.esr for f in res.settings if f.knobs == s.knobs)
        assert evaluate_opto_esr(s.frames, params) == pytest.approx(fitted, rel=1e-6)
    assert pooled_esr(res.curves, settings) < 1e-3


def test_the_record_keeps_the_space_and_its_blocks(settings):
    space = _space()
    param = space.param(SR)
    coef = np.stack([param.from_physical({**CELL, "threshold_db": -26.0}).numpy(),
                     param.from_physical({**CELL, "threshold_db": -34.0}).numpy()])
    curves = JointCurves(KnobBasis.uniform(KNOB, np.array([[60.0], [100.0]]), 2), coef, SR, space)
    from dsp.knobs.joint_curves import JointResult, SettingFit
    res = JointResult(curves, [SettingFit((60.0,), "a", 0.1), SettingFit((100.0,), "b", 0.2)], 0.15, 3, True,
                      "ok", 1.0, 1e-3)
    model = JointKnobModel({"compress": res})
    again = JointKnobModel.from_record(yaml.safe_load(yaml.safe_dump(model.to_record())))
    for pr in (60, 75, 100):
        assert again.at("compress", pr) == model.at("compress", pr)
    at = again.at("compress", 80)
    assert set(at) == set(OPTO_NAMES) and at["threshold_db"] == pytest.approx(-30.0, abs=0.5)
    assert {k: at[k] for k in BLOCK_NAMES} == BLOCKS
    rows = again.rows({"compress": [60, 80, 100]})
    assert all(set(OPTO_NAMES) <= set(r) for r in rows)
    bad = curves.to_record()
    bad["coefficients"] = [row[:5] for row in bad["coefficients"]]
    with pytest.raises(ValueError, match="2x11"):
        JointCurves.from_record(bad)
    with pytest.raises(ValueError, match="curve space"):
        JointCurves.from_record({**curves.to_record(), "space": {"kind": "tape"}})
    # a record from before the spaces (five parameters, ranges beside them) still opens
    old = JointCurves(curves.basis, np.zeros((2, 5)), SR).to_record()
    del old["space"]
    assert set(JointCurves.from_record(old).params_at(80)) == {"threshold_db", "ratio", "attack_ms", "release_ms",
                                                              "make_up_db"}


def test_one_unit_fits_one_set_of_blocks_for_both_groups(settings):
    top = settings[-1]
    limit = _setting(100.0, seed=7, seconds=2.0)
    options = OptoFitOptions(one_unit=True, newton=OPTIONS.newton)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fitted = fit_group_blocks({"compress": (top.frames, top.knobs), "limit": (limit.frames, limit.knobs)},
                                  dict(OPTO_START), options)
    assert set(fitted) == {"compress", "limit"}
    assert all(fitted["compress"].params[k] == fitted["limit"].params[k] for k in BLOCK_NAMES)
    assert fitted["compress"].params["input_mix"] == 0.0 < fitted["limit"].params["input_mix"]
