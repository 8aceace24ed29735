"""The fused derivative kernel holds against autograd through torchcomp."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.framing import Frames
from dsp.models.ff5 import compress, compressor_gain
from dsp.derivatives.ff5_kernel import KernelObjective
from dsp.derivatives.autograd import AutogradObjective
from dsp.models.parameters import Parameterisation

SR = 44100
T = SR // 2          # 0.5 s frames
WARMUP = SR // 10    # 0.1 s unscored

# physical settings: moderate, strong compression with fast attack, slow and gentle
SETTINGS = [
    {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0, "make_up_db": 3.0},
    {"threshold_db": -42.0, "ratio": 18.0, "attack_ms": 0.3, "release_ms": 15.0, "make_up_db": 8.0},
    {"threshold_db": -30.0, "ratio": 1.8, "attack_ms": 40.0, "release_ms": 700.0, "make_up_db": -4.0},
]


def _bursts(rng: np.random.Generator, shape, seg: int = 2205) -> np.ndarray:
    """White noise in 50 ms bursts at random levels between -50 and 0 dBFS."""
    b, t = shape
    levels = 10.0 ** (rng.uniform(-50.0, 0.0, (b, t // seg + 1)) / 20.0)
    return rng.standard_normal(shape) * np.repeat(levels, seg, axis=1)[:, :t]


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _zs(param: Parameterisation) -> list[torch.Tensor]:
    zs = [param.from_physical(s) for s in SETTINGS]
    rng = np.random.default_rng(7)
    for _ in range(2):
        zs.append(torch.tensor([rng.uniform(-40.0, -15.0), *rng.normal(0.0, 1.5, 3),
                                rng.uniform(-6.0, 6.0)], dtype=torch.float64))
    return zs


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(1234)
    x = _bursts(rng, (2, T))
    param = Parameterisation(SR)
    truth = param.from_physical({"threshold_db": -25.0, "ratio": 5.0, "attack_ms": 2.0,
                                 "release_ms": 150.0, "make_up_db": 2.0})
    y = compress(torch.from_numpy(x), param.natural(truth)).numpy()
    y = y + 1e-3 * rng.standard_normal(y.shape)
    lengths = np.array([T, T - 3000])          # the second frame is zero padded at the end
    x[1, lengths[1]:] = 0.0
    y[1, lengths[1]:] = 0.0
    frames = Frames(x, y, lengths, WARMUP, SR)
    auto = AutogradObjective(frames, param)
    zs = _zs(param)
    reference = [auto.loss_grad_hess(z) for z in zs]
    return frames, param, auto, zs, reference


def test_draws_exercise_both_branches(problem):
    """Every draw has samples above and below threshold, and both attack and release."""
    frames, param, _, zs, _ = problem
    x = torch.from_numpy(frames.x)
    for z in zs:
        v = param.natural(z)
        g = compressor_gain(x, v[0], v[1], v[2], v[3])
        level_db = 20 * torch.log10(x.abs().clamp_min(1e-8))
        f = 10 ** (torch.clamp((1 - 1 / v[1]) * (v[0] - level_db), max=0.0) / 20)
        g_prev = torch.cat([torch.ones(2, 1, dtype=g.dtype), g[:, :-1]], dim=1)
        attack = (f < g_prev).double().mean().item()
        active = (f < 1).double().mean().item()
        assert 0.01 < attack < 0.99 and 0.01 < active < 0.99, (attack, active)


@pytest.mark.parametrize("i", range(5))
def test_float64_matches_autograd(problem, i):
    frames, param, _, zs, reference = problem
    kernel = KernelObjective(frames, param)
    la, ga, ha = reference[i]
    lk, gk, hk = kernel.loss_grad_hess(zs[i])
    assert isinstance(gk, torch.Tensor) and gk.dtype == torch.float64 and gk.shape == (5,)
    assert isinstance(hk, torch.Tensor) and hk.dtype == torch.float64 and hk.shape == (5, 5)
    assert _rel(lk, la) < 1e-6
    assert _rel(gk, ga) < 1e-6
    assert _rel(hk, ha) < 1e-6
    assert torch.allclose(hk, hk.T, rtol=0, atol=0)


@pytest.mark.parametrize("i", range(5))
def test_loss_only_and_gradient_paths_agree(problem, i):
    frames, param, _, zs, _ = problem
    kernel = KernelObjective(frames, param)
    lh, gh, _ = kernel.loss_grad_hess(zs[i])
    lg, gg = kernel.loss_grad(zs[i])
    assert kernel.loss(zs[i]) == pytest.approx(lh, rel=1e-12)
    assert lg == pytest.approx(lh, rel=1e-12)
    assert _rel(gg, gh) < 1e-12


@pytest.mark.parametrize("dtype", [np.float32, torch.float32])
def test_float32_path(problem, dtype):
    frames, param, _, zs, reference = problem
    kernel = KernelObjective(frames, param, dtype=dtype)
    for z, (la, ga, ha) in zip(zs, reference):
        lk, gk, hk = kernel.loss_grad_hess(z)
        assert gk.dtype == torch.float64
        assert _rel(lk, la) < 1e-3
        assert _rel(gk, ga) < 1e-3
        assert _rel(hk, ha) < 1e-3
        assert kernel.loss(z) == pytest.approx(lk, rel=1e-6)


def test_energy_and_output(problem):
    frames, param, auto, zs, _ = problem
    kernel = KernelObjective(frames, param)
    assert kernel.energy == pytest.approx(auto.energy, rel=1e-12)
    for z in zs:
        out = kernel.output(z)
        assert out.shape == frames.x.shape and out.dtype == np.float64
        assert _rel(out, auto.output(z)) < 1e-12


def test_rejects_other_dtypes(problem):
    frames, param, *_ = problem
    with pytest.raises(ValueError):
        KernelObjective(frames, param, dtype=torch.float16)
