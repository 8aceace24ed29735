"""End-to-end fits of digital targets (the plain compressor rendered by :func:`dsp.models.ff5_streaming.render`)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from audio.framing import make_frames
from audio.material import synthesize
from dsp.fitting.ff5 import FitOptions, evaluate_esr, fit_frames
from dsp.fitting.newton import NewtonOptions
from dsp.models.parameters import DEFAULT_INIT, PARAM_NAMES
from audio.metrics import preemphasis_np
from dsp.models.ff5_streaming import render

SR = 44100
TARGETS = {
    "ff_a": {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0},
    "ff_b": {"threshold_db": -20.0, "ratio": 5.0, "attack_ms": 30.0, "release_ms": 30.0, "make_up_db": 0.0},
    "ff_c": {"threshold_db": -20.0, "ratio": 8.0, "attack_ms": 0.1, "release_ms": 200.0, "make_up_db": 0.0},
}


def _frames(target: dict, seconds: float, seed: int):
    """One frame (12 s frames, 1 s unscored warm-up) of program material and its digital target."""
    x = synthesize(seconds, SR, seed).astype(np.float64)
    frames = make_frames(x, render(x, SR, target), SR, frame_s=12.0, overlap_s=1.0)
    assert frames.x.shape[0] == 1
    return frames


def _fit(frames, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)      # a non-converged fit fails loudly
        return fit_frames(frames, **kwargs)


def _assert_recovered(params: dict, truth: dict) -> None:
    for k in ("threshold_db", "make_up_db"):
        assert abs(params[k] - truth[k]) <= 0.1, (k, params[k])
    for k in ("ratio", "attack_ms", "release_ms"):
        assert params[k] == pytest.approx(truth[k], rel=0.01), (k, params[k])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_recovers_digital_target_from_default_start(name):
    truth = TARGETS[name]
    frames = _frames(truth, 7.0, seed=0)
    res = _fit(frames)                                      # the kernel is the default
    assert res.converged, res.reason
    assert res.esr < 1e-6
    _assert_recovered(res.params, truth)
    assert res.initial_params["threshold_db"] == DEFAULT_INIT["threshold_db"]
    assert res.iterations == len(res.history) and res.seconds > 0
    assert all(math.isfinite(f) for f in res.history)
    assert res.loss == pytest.approx(res.esr * float(np.sum(
        preemphasis_np(frames.y) ** 2 * frames.score_mask())), rel=1e-9)


def test_kernel_and_autograd_agree():
    frames = _frames(TARGETS["ff_a"], 2.0, seed=2)   # 1 s scored: autograd stays quick
    kern = _fit(frames, options=FitOptions(hessian="kernel"))
    auto = _fit(frames, options=FitOptions(hessian="autograd"))
    assert kern.converged and auto.converged
    for k in PARAM_NAMES:   # relative; a dB value near 0 (make-up) compares in dB
        assert abs(kern.params[k] - auto.params[k]) <= 1e-4 * max(abs(auto.params[k]), 1.0), k
    assert kern.initial_params == pytest.approx(auto.initial_params, rel=1e-9, abs=1e-9)
    assert kern.esr < 1e-6 and auto.esr < 1e-6
    assert abs(kern.iterations - auto.iterations) <= 2


def test_unknown_hessian_is_rejected():
    frames = _frames(TARGETS["ff_a"], 2.0, seed=1)
    with pytest.raises(ValueError, match="hessian"):
        fit_frames(frames, options=FitOptions(hessian="bfgs"))


def test_chained_start_needs_fewer_iterations():
    truth = TARGETS["ff_a"]
    frames = _frames(truth, 6.0, seed=2)
    cold = _fit(frames)
    near = {"threshold_db": -21.0, "ratio": 3.3, "attack_ms": 1.2, "release_ms": 90.0, "make_up_db": 0.5}
    warm = _fit(frames, init=near)
    assert cold.converged and warm.converged
    assert warm.iterations < cold.iterations
    assert warm.initial_params == pytest.approx(near, rel=1e-9)   # no level matching of a given start
    _assert_recovered(warm.params, truth)


@pytest.mark.parametrize("init", [None, {**DEFAULT_INIT, "threshold_db": -30.0, "make_up_db": -12.0}])
def test_level_matching_sets_the_initial_make_up(init):
    truth = dict(TARGETS["ff_b"], make_up_db=4.0)
    frames = _frames(truth, 4.0, seed=3)
    opts = FitOptions(newton=NewtonOptions(max_iterations=0))      # only the start is wanted
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = fit_frames(frames, init=init, options=opts, level_match=True)
    start = res.initial_params
    expected = DEFAULT_INIT if init is None else init
    for k in ("threshold_db", "ratio", "attack_ms", "release_ms"):
        assert start[k] == pytest.approx(expected[k], rel=1e-9)
    assert start["make_up_db"] != pytest.approx(expected["make_up_db"], abs=0.5)

    def energy(y):
        return float(np.sum(preemphasis_np(y) ** 2 * frames.score_mask()))

    out = render(frames.x[0], SR, start)[None, :]
    assert energy(out) == pytest.approx(energy(frames.y), rel=1e-6)
    # the solver starts from it: the returned point (no iterations) is the level-matched start
    assert res.params == pytest.approx(start, rel=1e-9, abs=1e-9)


def test_level_matching_off_keeps_the_given_make_up():
    frames = _frames(TARGETS["ff_b"], 4.0, seed=3)
    opts = FitOptions(newton=NewtonOptions(max_iterations=0))
    with pytest.warns(RuntimeWarning):
        cold = fit_frames(frames, options=opts, level_match=False)
    assert cold.initial_params["make_up_db"] == pytest.approx(DEFAULT_INIT["make_up_db"], abs=1e-12)


def test_evaluate_esr():
    truth = TARGETS["ff_c"]
    frames = _frames(truth, 4.0, seed=3)
    assert evaluate_esr(frames, truth) < 1e-20
    assert evaluate_esr(frames, DEFAULT_INIT) > 1e-3
    off = dict(truth, make_up_db=1.0)     # a pure gain error: ESR = (10^(1/20) - 1)^2
    assert evaluate_esr(frames, off) == pytest.approx((10 ** (1 / 20) - 1) ** 2, rel=1e-9)


def test_silent_target_is_refused():
    x = synthesize(3.0, SR, 0).astype(np.float64)
    frames = make_frames(x, np.zeros_like(x), SR, 12.0, 1.0)
    with pytest.raises(ValueError, match="silent"):
        fit_frames(frames)


@pytest.mark.parametrize("channels", [2, 6])
def test_a_linked_multichannel_pair_recovers_its_compressor(channels):
    """The renderers link the gain over channels (the loudest drives it); the fit reads the
    same linked detector, so a stereo or 6-channel target is recovered exactly (each
    channel framed on its own, it was -14.7 dB / 20:1 / 52 ms for this stereo pair)."""
    truth = {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0, "make_up_db": 2.0}
    x = np.stack([synthesize(3.0, SR, seed=11 + c) * (1.0 - 0.1 * c) for c in range(channels)])
    frames = make_frames(x, render(x, SR, truth), SR, frame_s=12.0, overlap_s=1.0)
    assert frames.detector is not None and frames.n_frames == channels
    res = _fit(frames)
    assert res.esr < 1e-10
    for k, v in truth.items():
        assert res.params[k] == pytest.approx(v, rel=1e-4, abs=1e-3), (k, res.params[k])
    # the autograd objective reads the same detector: zero loss at the truth
    from dsp.derivatives.autograd import AutogradObjective
    from dsp.models.parameters import Parameterisation
    param = Parameterisation(SR)
    assert AutogradObjective(frames, param).loss(param.from_physical(truth)) < 1e-12 * frames.scored_samples
