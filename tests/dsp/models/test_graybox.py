"""Gray-box model: blocks against scipy, derivatives against finite differences, recovery,
streaming against offline rendering."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.signal
import torch

from audio.framing import make_frames
from audio.material import synthesize
from dsp.models.blocks import (cascade, decay_samples, fft_filter, fft_length, highpass_coefficients,
                               section_response, shaper, shelf_coefficients)
from dsp.fitting.ff5 import FitOptions, FitResult
from dsp.derivatives.graybox_objectives import STAGE2_NAMES, BlockObjective, GrayboxObjective
from dsp.fitting.graybox import GrayboxFitOptions, evaluate_graybox_esr, fit_blocks, fit_graybox_frames
from dsp.models.graybox import BLOCK_NAMES, GRAYBOX_NAMES, TRANSPARENT, BlockRanges, GrayboxParameterisation, graybox
from dsp.models.graybox_streaming import render
from dsp.models.ff5_streaming import render as render_ff5

SR = 44100
TRUTH = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 120.0, "make_up_db": 2.0,
         "input_highpass_hz": 40.0, "input_shelf_hz": 6000.0, "input_shelf_db": -6.0,
         "tube_drive": 1.5, "tube_asymmetry": 0.25, "output_highpass_hz": 25.0}
TRUTH_8K = {**TRUTH, "input_shelf_hz": 2500.0}  # the fit tests run at 8 kHz (corners < 0.45 sr)


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ blocks
@pytest.mark.parametrize("kind, args", [("highpass", (30.0,)), ("highpass", (400.0,)),
                                        ("shelf", (5000.0, -9.0)), ("shelf", (2000.0, 4.0))])
def test_filter_response_matches_scipy_freqz(kind, args):
    coef = highpass_coefficients(*args, SR) if kind == "highpass" else shelf_coefficients(*args, SR)
    n_fft = 4096
    ours = section_response([coef], n_fft).numpy()
    _, ref = scipy.signal.freqz([coef[0], coef[1]], [1.0, coef[2]], worN=n_fft // 2 + 1,
                                whole=False, include_nyquist=True)
    assert np.allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_filters_have_their_physical_shape():
    w = np.array([1.0, 30.0, 1000.0, 20000.0])
    _, hp = scipy.signal.freqz(*cascade(highpass_coefficients(30.0, SR)), worN=w, fs=SR)
    assert abs(hp[1]) == pytest.approx(1 / math.sqrt(2), rel=1e-6)        # -3 dB at the corner
    assert abs(hp[0]) < 0.05 and abs(hp[2]) > 0.999                       # roll-off, pass band
    assert np.angle(hp[1], deg=True) == pytest.approx(45.0, abs=1e-6)     # phase lead at the corner
    _, sh = scipy.signal.freqz(*cascade(shelf_coefficients(5000.0, -12.0, SR)), worN=w, fs=SR)
    assert abs(sh[0]) == pytest.approx(1.0, abs=1e-6)
    assert 20 * np.log10(abs(sh[3])) < -8.0                               # top end cut towards -12 dB
    _, flat = scipy.signal.freqz(*cascade(shelf_coefficients(5000.0, 0.0, SR)), worN=w, fs=SR)
    assert np.allclose(flat, 1.0, atol=1e-12)                             # 0 dB: the identity


def test_fft_filter_equals_lfilter_from_rest():
    x = np.random.default_rng(0).standard_normal((2, 5000))
    secs = (highpass_coefficients(20.0, SR), shelf_coefficients(8000.0, -6.0, SR))
    n_fft = fft_length(x.shape[1], decay_samples(20.0, SR))
    y = fft_filter(torch.fft.rfft(torch.from_numpy(x), n=n_fft), section_response(secs, n_fft),
                   x.shape[1], n_fft).numpy()
    assert np.allclose(y, scipy.signal.lfilter(*cascade(*secs), x, axis=-1), atol=1e-12)
    # the result holds its own samples, not a view that keeps the padded buffer alive
    t = fft_filter(torch.fft.rfft(torch.from_numpy(x), n=n_fft), section_response(secs, n_fft), x.shape[1], n_fft)
    assert n_fft > x.shape[1] and t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_shaper_starts_transparent_and_is_level_matched():
    u = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    start = shaper(u, TRANSPARENT["tube_drive"], TRANSPARENT["tube_asymmetry"])
    assert float((start - u).abs().max()) < 1e-3                          # transparent at its start
    for drive, asym in [(0.5, 0.0), (3.0, 0.3), (8.0, -0.4)]:
        small = torch.tensor([-1e-6, 1e-6], dtype=torch.float64)
        out = shaper(small, drive, asym)
        slope = float((out[1] - out[0]) / 2e-6)
        assert slope == pytest.approx(1.0, abs=1e-6)                      # unity small-signal gain
        assert float(shaper(torch.zeros(1, dtype=torch.float64), drive, asym)) == 0.0


def test_shaper_asymmetry_makes_second_harmonic():
    t = torch.arange(SR, dtype=torch.float64) / SR
    tone = 0.5 * torch.sin(2 * math.pi * 1000 * t)
    spec = np.abs(np.fft.rfft(shaper(tone, 0.3, 0.2).numpy()))  # mild drive: even dominates
    assert spec[2000] > 10 * spec[3000]
    spec_sym = np.abs(np.fft.rfft(shaper(tone, 1.0, 0.0).numpy()))
    assert spec_sym[2000] < 1e-9 * spec_sym[1000]                          # odd only without asymmetry


# --------------------------------------------------------------------- parameterisation
def test_parameter_round_trip_and_names():
    param = GrayboxParameterisation(SR)
    z = param.from_physical(TRUTH)
    assert z.shape == (len(GRAYBOX_NAMES),) == (11,)
    back = param.to_physical(z)
    assert list(back) == list(GRAYBOX_NAMES)
    for k in GRAYBOX_NAMES:
        assert back[k] == pytest.approx(TRUTH[k], rel=1e-9, abs=1e-9)
    BlockRanges().check(back)
    with pytest.raises(ValueError, match="tube_drive"):
        BlockRanges().check({**back, "tube_drive": 50.0})


# --------------------------------------------------------------------------- derivatives
def _tiny_frames(seconds=0.3, sr=8000):
    # seeded noise under a slow envelope (the synthesised material opens with silence,
    # which would leave a short frame with nothing to score)
    n = int(seconds * sr)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(n) * 0.3 * (1.2 + np.sin(2 * np.pi * 3 * np.arange(n) / sr))
    y = render(x, sr, TRUTH_8K) + 1e-3 * rng.standard_normal(n)   # a floor: the residual is not zero
    frames = make_frames(x, y, sr, frame_s=seconds, overlap_s=0.05)
    assert np.sum(frames.y[frames.score_mask()] ** 2) > 1.0
    return frames


def _check_central_differences(obj, z, f, g, h, grad_rel):
    """``g`` and ``h`` against central differences of ``obj``'s loss and gradient."""
    eps = 1e-6
    for i in range(z.shape[0]):
        e = torch.zeros_like(z)
        e[i] = eps
        fp, gp = obj.loss_grad(z + e)
        fm, gm = obj.loss_grad(z - e)
        assert (fp - fm) / (2 * eps) == pytest.approx(float(g[i]), rel=grad_rel, abs=1e-9 * abs(f))
        assert torch.allclose((gp - gm) / (2 * eps), h[i], rtol=1e-4, atol=1e-7 * float(h.abs().max()))


def test_gradient_and_hessian_match_finite_differences():
    frames = _tiny_frames()
    # high-pass ranges from 10 Hz keep the FFT padding (and the test) short
    blocks = BlockRanges(input_highpass_hz=(10.0, 500.0), output_highpass_hz=(10.0, 500.0))
    param = GrayboxParameterisation(frames.sample_rate, blocks=blocks)
    obj = GrayboxObjective(frames, param)
    z = param.from_physical({**TRUTH_8K, "threshold_db": -20.0, "tube_drive": 1.0, "input_shelf_db": -3.0,
                             "output_highpass_hz": 40.0})
    f, g, h = obj.loss_grad_hess(z)
    assert f == pytest.approx(obj.loss(z), rel=1e-12)
    _check_central_differences(obj, z, f, g, h, grad_rel=1e-4)


def test_block_stage_gradient_and_hessian_are_exact():
    """Stage 2's gradient/Hessian (signals and adjoints) against central differences of its loss and gradient."""
    frames = _tiny_frames()
    blocks = BlockRanges(input_highpass_hz=(10.0, 500.0), output_highpass_hz=(10.0, 500.0))
    param = GrayboxParameterisation(frames.sample_rate, blocks=blocks)
    obj = BlockObjective(frames, param, {k: TRUTH_8K[k] for k in GRAYBOX_NAMES[:5]})
    start = {**TRUTH_8K, "make_up_db": 1.0, "tube_drive": 1.0, "tube_asymmetry": 0.1, "input_shelf_db": -3.0,
             "output_highpass_hz": 40.0, "input_highpass_hz": 60.0}
    z = obj.stage_vector(start)
    assert z.shape == (len(STAGE2_NAMES),) == (7,)
    f, g, h = obj.loss_grad_hess(z)
    assert f == pytest.approx(obj.loss(z), rel=1e-12)
    # the held-gain objective is the full model at the same point
    full = GrayboxObjective(frames, param)
    assert f == pytest.approx(full.loss(obj.full_vector(z, start)), rel=1e-10)
    assert torch.allclose(h, h.T, rtol=1e-10, atol=0.0)
    _check_central_differences(obj, z, f, g, h, grad_rel=1e-5)
    # second differences of the loss itself on the diagonal (no autograd in the reference)
    for i in range(z.shape[0]):
        e = torch.zeros_like(z)
        e[i] = 1e-4
        d2 = (obj.loss(z + e) - 2 * f + obj.loss(z - e)) / 1e-8
        assert d2 == pytest.approx(float(h[i, i]), rel=1e-3, abs=1e-6 * float(h.abs().max()))


# -------------------------------------------------------------------------------- render
def test_offline_render_equals_torch_model():
    x = synthesize(1.0, SR, seed=4).astype(np.float64)
    param = GrayboxParameterisation(SR)
    natural, blocks = param.natural(param.from_physical(TRUTH))
    ref = graybox(torch.from_numpy(x)[None], natural, blocks, SR)[0].numpy()
    assert np.allclose(render(x, SR, TRUTH), ref, atol=1e-10)


@pytest.mark.parametrize("block", [7, 64, 257, 4096])
def test_streaming_equals_offline(block):
    x = synthesize(0.1, SR, seed=5).astype(np.float64)
    stereo = np.stack([x, 0.5 * x[::-1]])
    offline = render(stereo, SR, TRUTH)
    assert np.allclose(render(stereo, SR, TRUTH, block=block), offline, atol=1e-12)


def test_transparent_blocks_reduce_to_ff5():
    x = synthesize(1.0, SR, seed=6).astype(np.float64)
    five = {k: TRUTH[k] for k in GRAYBOX_NAMES[:5]}
    exact = {**five, "input_highpass_hz": 1e-3, "input_shelf_hz": 5000.0, "input_shelf_db": 0.0,
             "tube_drive": 1e-4, "tube_asymmetry": 0.0, "output_highpass_hz": 1e-3}
    assert np.allclose(render(x, SR, exact), render_ff5(x, SR, five), atol=1e-5)


# ----------------------------------------------------------------------------------- fit
def _short_options() -> GrayboxFitOptions:
    # high-pass ranges from 10 Hz keep the FFT padding of short frames short
    return GrayboxFitOptions(blocks=BlockRanges(input_highpass_hz=(10.0, 500.0),
                                                output_highpass_hz=(10.0, 500.0)),
                             start={**TRANSPARENT, "input_highpass_hz": 11.0, "output_highpass_hz": 11.0})


def test_block_stage_recovers_known_blocks():
    sr = 8000
    x = synthesize(1.5, sr, seed=7).astype(np.float64)
    frames = make_frames(x, render(x, sr, TRUTH_8K), sr, frame_s=1.5, overlap_s=0.25)
    start = {"make_up_db": 0.0, "input_highpass_hz": 20.0, "input_shelf_hz": 3500.0, "input_shelf_db": -2.0,
             "tube_drive": 0.5, "tube_asymmetry": 0.0, "output_highpass_hz": 15.0}
    five = {k: TRUTH_8K[k] for k in GRAYBOX_NAMES[:5]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_blocks(frames, five, start, _short_options())
    assert isinstance(res, FitResult)
    assert list(res.params) == list(GRAYBOX_NAMES)
    assert res.esr < 1e-8, res
    for k in ("threshold_db", "ratio", "attack_ms", "release_ms"):
        assert res.params[k] == pytest.approx(TRUTH_8K[k], rel=1e-9)           # held
    for k in STAGE2_NAMES:
        assert res.params[k] == pytest.approx(TRUTH_8K[k], rel=1e-3, abs=1e-3), (k, res.params)
    assert evaluate_graybox_esr(frames, res.params) == pytest.approx(res.esr, rel=1e-6, abs=1e-12)


def test_cold_start_fits_ff5_first_and_improves_on_it():
    sr = 8000
    x = synthesize(1.0, sr, seed=8).astype(np.float64)
    frames = make_frames(x, render(x, sr, TRUTH_8K), sr, frame_s=1.0, overlap_s=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        from dsp.fitting.ff5 import fit_frames
        ff5 = fit_frames(frames, None, FitOptions())
        res = fit_graybox_frames(frames, None, _short_options())
    assert res.iterations > ff5.iterations           # the five-parameter stage ran first
    for k in GRAYBOX_NAMES[:4]:
        assert res.params[k] == pytest.approx(ff5.params[k], rel=1e-9)   # stage 2 holds the compressor
    assert res.esr < 0.2 * ff5.esr, (res.esr, ff5.esr)
    assert set(BLOCK_NAMES) <= set(res.params)


def test_joint_autograd_option_refines_all_eleven():
    sr = 8000
    x = synthesize(0.4, sr, seed=9).astype(np.float64)
    frames = make_frames(x, render(x, sr, TRUTH_8K), sr, frame_s=0.4, overlap_s=0.1)
    options = _short_options()
    options.newton.max_iterations = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        two = fit_graybox_frames(frames, None, options)
        options.joint_autograd = True
        three = fit_graybox_frames(frames, None, options)
    assert three.iterations > two.iterations
    assert three.esr <= two.esr
    assert any(three.params[k] != pytest.approx(two.params[k], rel=1e-12) for k in GRAYBOX_NAMES[:4])
