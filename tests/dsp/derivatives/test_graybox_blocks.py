"""The gray-box stage's exact derivatives (dsp/derivatives/graybox_blocks.py, dsp/derivatives/graybox_block_kernels.py)
against autograd, and the make-up-only stage (blocks held)."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from audio.framing import make_frames
from dsp.derivatives.graybox_blocks import CascadeDerivatives, shaper_partials, stage_loss_grad_hess
from dsp.derivatives.graybox_block_kernels import shaper_first
from dsp.models.blocks import highpass_coefficients, section_response, shelf_coefficients, unit_delay
from dsp.derivatives.graybox_objectives import BlockObjective, MakeUpObjective
from dsp.fitting.graybox import GrayboxFitOptions, fit_graybox_frames, fit_make_up
from dsp.models.graybox import BLOCK_NAMES, GRAYBOX_NAMES, BlockRanges, GrayboxParameterisation
from dsp.models.graybox_streaming import render

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 8000
TRUTH = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 120.0, "make_up_db": 2.0,
         "input_highpass_hz": 40.0, "input_shelf_hz": 2500.0, "input_shelf_db": -6.0,
         "tube_drive": 1.5, "tube_asymmetry": 0.25, "output_highpass_hz": 25.0}
BLOCKS = BlockRanges(input_highpass_hz=(10.0, 500.0), output_highpass_hz=(10.0, 500.0))  # short FFT padding
AWAY = {**TRUTH, "make_up_db": -1.0, "input_highpass_hz": 120.0, "input_shelf_hz": 1500.0, "input_shelf_db": 3.0,
        "tube_drive": 4.0, "tube_asymmetry": -0.3, "output_highpass_hz": 60.0}


def _frames(seconds=0.3, seed=3, floor=1e-3, frame_s=0.2):
    n = int(seconds * SR)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 0.3 * (1.2 + np.sin(2 * np.pi * 3 * np.arange(n) / SR))
    y = render(x, SR, TRUTH) + floor * rng.standard_normal(n)
    return make_frames(x, y, SR, frame_s=frame_s, overlap_s=0.05)   # two frames by default


def _objective(frames):
    param = GrayboxParameterisation(SR, blocks=BLOCKS)
    return BlockObjective(frames, param, {k: TRUTH[k] for k in GRAYBOX_NAMES[:5]})


def _close(ours, ref, rtol):
    scale = float(ref.abs().max())
    assert float((ours - ref).abs().max()) <= rtol * scale, (ours, ref)


@pytest.mark.parametrize("point", ["start", "away", "truth"])
@pytest.mark.parametrize("fused", [True, False])
def test_stage_gradient_and_hessian_equal_autograd(point, fused):
    frames = _frames()
    assert frames.n_frames == 2
    obj = _objective(frames)
    params = {"start": {**TRUTH, "make_up_db": 0.0, "input_highpass_hz": 11.0, "input_shelf_hz": 3000.0,
                        "input_shelf_db": 0.0, "tube_drive": 0.05, "tube_asymmetry": 0.0,
                        "output_highpass_hz": 11.0},
              "away": AWAY, "truth": TRUTH}[point]
    z = obj.stage_vector(params)
    f, g, h = stage_loss_grad_hess(obj._stage(z), z, fused=fused)
    fa, ga, ha = obj.loss_grad_hess_autograd(z)
    assert f == pytest.approx(fa, rel=1e-12)
    assert f > 1e-3 * obj.energy * (point != "truth")             # a real residual away from the truth
    _close(g, ga, 1e-9)
    _close(h, ha, 1e-9)
    assert torch.allclose(h, ha, rtol=1e-8, atol=1e-12 * float(ha.abs().max()))
    # the gradient-only path agrees
    f2, g2 = obj.loss_grad(z)
    assert f2 == pytest.approx(f, rel=1e-12)
    assert torch.allclose(g2, g, rtol=1e-12, atol=1e-12 * float(g.abs().max()))


def test_frames_per_pass_does_not_change_the_result():
    obj = _objective(_frames())
    z = obj.stage_vector(AWAY)
    one = stage_loss_grad_hess(obj._stage(z), z, frames_per_pass=1)
    both = stage_loss_grad_hess(obj._stage(z), z, frames_per_pass=2)
    assert one[0] == pytest.approx(both[0], rel=1e-13)
    assert torch.allclose(one[2], both[2], rtol=1e-10, atol=1e-13 * float(one[2].abs().max()))


def test_cascade_derivatives_fused_equal_torch_and_the_response():
    n_fft = 512
    zinv = unit_delay(n_fft)

    def sections(z):  # a high-pass and a shelf, their corners and gain from z
        hp = highpass_coefficients(100.0 * torch.exp(z[0]), SR)
        sh = shelf_coefficients(2000.0 * torch.exp(z[1]), 6.0 * z[2], SR)
        return torch.stack([torch.stack([torch.as_tensor(c, dtype=torch.float64) for c in s]) for s in (hp, sh)])

    z = torch.tensor([0.3, -0.2, 0.7], dtype=torch.float64)
    fused, plain = CascadeDerivatives(sections, z, zinv, fused=True), CascadeDerivatives(sections, z, zinv)
    ref = section_response([tuple(r) for r in sections(z)], n_fft)
    assert torch.allclose(fused.h, ref, rtol=1e-13, atol=1e-15)
    assert torch.allclose(fused.dh, plain.dh, rtol=1e-12, atol=1e-14)
    # the Hessian of Re sum w H against autograd on the response
    w = torch.randn(zinv.shape[0], dtype=torch.complex128, generator=torch.Generator().manual_seed(0))

    def dot(zz):
        return (w * section_response([tuple(r) for r in sections(zz)], n_fft)).real.sum()
    ref_h = torch.autograd.functional.hessian(dot, z)
    assert torch.allclose(fused.hessian_dot(w), ref_h, rtol=1e-10, atol=1e-12 * float(ref_h.abs().max()))
    assert torch.allclose(plain.hessian_dot(w), ref_h, rtol=1e-10, atol=1e-12 * float(ref_h.abs().max()))
    ref_d = torch.autograd.functional.jacobian(lambda zz: torch.view_as_real(
        section_response([tuple(r) for r in sections(zz)], n_fft)), z)
    assert torch.allclose(torch.view_as_real(fused.dh.T.contiguous()), ref_d.permute(0, 2, 1), rtol=1e-11,
                          atol=1e-13)


def test_shaper_kernel_equals_torch_partials():
    v = torch.linspace(-3, 3, 1001, dtype=torch.float64)
    for k, a in [(0.01, 0.0), (1.5, 0.25), (8.0, -0.4)]:
        ref = shaper_partials(v, torch.tensor(k, dtype=torch.float64), torch.tensor(a, dtype=torch.float64))
        out = [np.empty(v.shape[0]) for _ in range(4)]
        shaper_first(v.numpy(), k, a, *out)
        for name, got in zip(("s", "v", "k", "a"), out):
            # S_k = (k v sech^2 - tanh) / k^2 cancels at a small drive (both paths alike): 2e-13 at k = 0.01
            want = ref[name].numpy()
            assert np.abs(got - want).max() <= 1e-11 * np.abs(want).max(), (k, a, name)
        # S_v against autograd of s (the closed forms are the derivatives)
        vv = v.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(shaper_partials(vv, k, a)["s"].sum(), vv)
        assert torch.allclose(g, ref["v"], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------- blocks held
def test_make_up_objective_equals_the_stage_restricted_to_make_up():
    obj = _objective(_frames())
    z = obj.stage_vector(AWAY)
    blocks = torch.tensor([AWAY[k] for k in BLOCK_NAMES], dtype=torch.float64)
    only = MakeUpObjective(obj, blocks)
    f, g, h = only.loss_grad_hess(z[:1])
    fa, ga, ha = obj.loss_grad_hess_autograd(z)
    assert f == pytest.approx(fa, rel=1e-12) and only.loss(z[:1]) == pytest.approx(fa, rel=1e-12)
    assert float(g[0]) == pytest.approx(float(ga[0]), rel=1e-9)
    assert float(h[0, 0]) == pytest.approx(float(ha[0, 0]), rel=1e-9)


def test_fit_make_up_holds_the_blocks_and_finds_the_make_up():
    frames = _frames(floor=0.0, frame_s=0.3)   # one frame: the model from rest is the rendering
    five = {**{k: TRUTH[k] for k in GRAYBOX_NAMES[:5]}, "make_up_db": -3.0}
    blocks = {k: TRUTH[k] for k in BLOCK_NAMES}
    options = GrayboxFitOptions(blocks=BLOCKS)
    res = fit_make_up(frames, five, blocks, options)
    assert list(res.params) == list(GRAYBOX_NAMES)
    # the solver stops at a predicted ESR gain of 1e-13: about 1e-6 dB of make-up
    assert res.params["make_up_db"] == pytest.approx(TRUTH["make_up_db"], abs=1e-5)
    assert res.esr < 1e-12 and res.converged
    for k in BLOCK_NAMES:
        assert res.params[k] == blocks[k]
    assert res.iterations <= 8


def test_blocks_fixed_option_holds_init_blocks_in_the_whole_fit():
    frames = _frames(seconds=0.4)
    init = {**TRUTH, "input_shelf_db": -5.0, "tube_drive": 1.2}   # blocks off the truth: held anyway
    options = GrayboxFitOptions(blocks=BLOCKS, blocks_fixed=True)
    options.newton.max_iterations = 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        held = fit_graybox_frames(frames, init, options)
    for k in BLOCK_NAMES:
        assert held.params[k] == pytest.approx(init[k], rel=1e-12)
    options.blocks_fixed = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        free = fit_graybox_frames(frames, init, options)
    assert any(free.params[k] != pytest.approx(init[k], rel=1e-6) for k in BLOCK_NAMES)
    assert free.esr <= held.esr


def test_long_pair_made_a_group_at_a_time_equals_kept(monkeypatch):
    """Past KEEP_SAMPLES the stages remake each group's signals on every pass (bounded memory
    for a long pair); the loss, gradient, Hessian and make-up stage must not change."""
    import dsp.derivatives.graybox_objectives as objectives
    frames = _frames(seconds=1.2, frame_s=0.2)
    assert frames.n_frames > objectives.GROUP
    kept = _objective(frames)
    monkeypatch.setattr(objectives, "KEEP_SAMPLES", 0)
    grouped = _objective(frames)
    assert kept.data._kept is not None and grouped.data._kept is None
    assert grouped.energy == pytest.approx(kept.energy, rel=1e-12)
    z = kept.stage_vector(AWAY)
    f1, g1, h1 = kept.loss_grad_hess(z)
    f2, g2, h2 = grouped.loss_grad_hess(z)
    assert f2 == pytest.approx(f1, rel=1e-10)
    _close(g2, g1, 1e-10)
    _close(h2, h1, 1e-10)
    assert grouped.loss(z) == pytest.approx(kept.loss(z), rel=1e-10)
    assert np.allclose(grouped.output(z), kept.output(z), rtol=0, atol=1e-12)
    blocks = torch.tensor([AWAY[k] for k in BLOCK_NAMES], dtype=torch.float64)
    m = torch.tensor([0.5], dtype=torch.float64)
    a, b = MakeUpObjective(kept, blocks).loss_grad_hess(m), MakeUpObjective(grouped, blocks).loss_grad_hess(m)
    assert a[0] == pytest.approx(b[0], rel=1e-10) and float(a[2]) == pytest.approx(float(b[2]), rel=1e-10)


_PEAK_SCRIPT = r"""
import resource
import numpy as np
from common.memory import map_large_allocations
map_large_allocations()   # as the fit job does: freed frame-length arrays go back at once
from audio.framing import make_frames
from dsp.derivatives.graybox_objectives import BlockObjective
from dsp.models.graybox import TRANSPARENT, GrayboxParameterisation

SR = 44100
comp = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0}

def objective(seconds, frame_s):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(int(seconds * SR)) * 0.2
    frames = make_frames(x, np.tanh(2 * x), SR, frame_s=frame_s, overlap_s=0.5)
    obj = BlockObjective(frames, GrayboxParameterisation(SR), comp)
    return obj, obj.stage_vector({**comp, **dict(TRANSPARENT), "make_up_db": 1.0}), frames

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def high_water():
    # this process's own peak (VmHWM): ru_maxrss would also hold the parent's, from before exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

small, z, _ = objective(3.0, 1.0)
small.loss_grad_hess(z)      # kernels compiled and loaded outside the count
obj, z, frames = objective(24.0, 12.0)
base = rss()
obj.loss_grad_hess(z)
peak = high_water()
print((peak - base) / (frames.length * 8))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stage_holds_few_frame_length_signals_at_once():
    """The Hessian pass over a 12 s frame holds at its peak about 33 frame-length float64
    signals' worth (about 10 of them the stage's per-bin responses and weights, the rest one
    frame's signals and FFT buffers), not the 49 it held when ds/dp and the first-order
    signals were stacked at once (a 10-minute pair's fit was then over 800 MB)."""
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], cwd=root, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(root)})
    signals = float(out.stdout.strip().splitlines()[-1])
    assert 10 < signals < 40, signals
