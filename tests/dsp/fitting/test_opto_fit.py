"""Fitting the optical-cell model by Newton: the cell through held blocks and the blocks with the
cell's gain held recover a known model; one set of blocks serves two modes (one unit)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from audio.framing import make_frames
from audio.material import synthesize
from dsp.fitting.newton import NewtonOptions
from dsp.fitting.opto import OptoFitOptions, evaluate_opto_esr, fit_cell, fit_opto_blocks, fit_unit
from dsp.models.graybox import BLOCK_NAMES, TRANSPARENT
from dsp.models.opto import CORE_NAMES, OPTO_START
from dsp.models.opto_streaming import render

SR = 8000
TRUTH = {**OPTO_START, "threshold_db": -28.0, "ratio": 3.5, "attack_ms": 8.0, "release_ms": 70.0,
         "make_up_db": 1.5, "release_slow_ms": 400.0, "slow_fraction": 0.3, "memory_ms": 600.0,
         "memory_depth": 3.0, "sidechain_shelf_hz": 1500.0, "sidechain_shelf_db": 8.0, "input_mix": 0.0,
         "input_highpass_hz": 30.0, "input_shelf_hz": 2500.0, "input_shelf_db": -3.0, "tube_drive": 1.2,
         "tube_asymmetry": -0.15, "output_highpass_hz": 15.0}
pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(params: dict, seed: int = 5, seconds: float = 3.0):
    x = synthesize(seconds, SR, seed=seed).astype(np.float64)
    return make_frames(x, render(x, SR, params), SR, frame_s=seconds, overlap_s=0.3)


@pytest.fixture(scope="module")
def frames():
    return _pair(TRUTH)


def test_cell_stage_recovers_the_cell_through_the_held_blocks(frames):
    options = OptoFitOptions(newton=NewtonOptions(ftol=1e-14, rtol=1e-14), atol_esr=0.0).for_mode("compress")
    start = {**{k: TRUTH[k] for k in CORE_NAMES}, "threshold_db": -25.0, "ratio": 4.2, "attack_ms": 12.0,
             "release_ms": 50.0, "release_slow_ms": 600.0, "memory_depth": 2.0, "make_up_db": 0.0}
    blocks = {k: TRUTH[k] for k in BLOCK_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cell, result, energy = fit_cell(frames, start, blocks, options)
    assert result.loss / energy < 1e-20              # to the end: quadratic convergence (exact Hessian)
    for k in CORE_NAMES:
        assert cell[k] == pytest.approx(TRUTH[k], rel=1e-8, abs=1e-10), k
    assert cell["input_mix"] == 0.0                       # compress mode: the tap is held at 0
    assert evaluate_opto_esr(frames, {**cell, **blocks}) < 1e-20


def test_block_stage_recovers_the_blocks_with_the_gain_held(frames):
    cell = {k: TRUTH[k] for k in CORE_NAMES}
    make_up, blocks, result, energy = fit_opto_blocks(frames, {**cell, "make_up_db": 0.0}, dict(TRANSPARENT),
                                                      OptoFitOptions())
    assert result.loss / energy < 1e-9
    assert make_up == pytest.approx(TRUTH["make_up_db"], abs=1e-3)
    for k in BLOCK_NAMES:
        assert blocks[k] == pytest.approx(TRUTH[k], rel=1e-3, abs=1e-3), k


def test_one_unit_fits_one_set_of_blocks_for_both_modes(frames):
    """Two modes of one unit (the limit take with its tap): one set of blocks fitted on both
    takes' held gains, each its own make-up, then each cell through them (capped iterations:
    this checks the plumbing; the block stage's recovery is checked above)."""
    limit = {**TRUTH, "threshold_db": -32.0, "input_mix": 0.1}
    options = OptoFitOptions(newton=NewtonOptions(max_iterations=8))
    levels = [(frames, {k: TRUTH[k] for k in CORE_NAMES}, options.for_mode("compress")),
              (_pair(limit, seed=6, seconds=1.0), {k: limit[k] for k in CORE_NAMES}, options.for_mode("limit"))]
    flat = [evaluate_opto_esr(f, {**init, **TRANSPARENT, "input_shelf_hz": 3000.0}) for f, init, _ in levels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = fit_unit(levels)
    blocks = [{k: r.params[k] for k in BLOCK_NAMES} for r in results]
    assert blocks[0] == blocks[1]
    assert results[0].params["input_mix"] == 0.0 and results[1].params["input_mix"] > 0.0
    for r, (f, _, _), before in zip(results, levels, flat):
        assert r.esr < 0.1 * before
        assert evaluate_opto_esr(f, r.params) == pytest.approx(r.esr, rel=1e-6, abs=1e-15)


def test_a_linked_stereo_pair_recovers_its_unit():
    """A stereo unit's one cell, lit by both channels (other material, 8 dB apart), is recovered
    from its stereo pair as the renderer links it; the cell fitted to each channel alone is not it."""
    left = synthesize(2.0, SR, seed=5)
    x = np.stack([left, 0.4 * synthesize(2.0, SR, seed=7)[:len(left)]]).astype(np.float64)
    frames = make_frames(x, render(x, SR, TRUTH), SR, frame_s=2.0, overlap_s=0.3)
    assert frames.linked
    options = OptoFitOptions(newton=NewtonOptions(ftol=1e-14, rtol=1e-14), atol_esr=0.0).for_mode("compress")
    start = {**{k: TRUTH[k] for k in CORE_NAMES}, "threshold_db": -25.0, "ratio": 4.2, "attack_ms": 12.0,
             "release_ms": 50.0, "make_up_db": 0.0}
    blocks = {k: TRUTH[k] for k in BLOCK_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cell, result, energy = fit_cell(frames, start, blocks, options)
    assert result.loss / energy < 1e-20
    for k in CORE_NAMES:
        assert cell[k] == pytest.approx(TRUTH[k], rel=1e-8, abs=1e-10), k
    quiet = make_frames(x[1], render(x, SR, TRUTH)[1], SR, frame_s=2.0, overlap_s=0.3)   # the right channel alone
    assert evaluate_opto_esr(quiet, TRUTH) > 1e-3
