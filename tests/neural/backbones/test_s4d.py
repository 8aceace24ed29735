"""The S4D backbone: the family contract, the chunked SSM against its recurrence, overfitting."""
import math

import pytest
import torch

import backbone_contract as contract
from neural import HEADS, build_head, count_parameters
from neural.backbones.s4d import S4DLayer, S4DModel
from neural.kernels.lti import SSM_KERNEL

SETUPS = [{}, {"fused": False, "chunk": 16, "init": "inv", "width": 8, "layers": 2}]
IDS = ["default", "torch-path"]


@pytest.mark.parametrize("hp", SETUPS, ids=IDS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_streaming_equals_offline(head, hp):
    contract.check_streaming_equals_offline(head, "s4d", hp)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_conditioning_changes_the_output(head):
    contract.check_conditioning_changes_output(head, "s4d", {})


@pytest.mark.parametrize("head", sorted(HEADS))
def test_gradients_reach_every_parameter(head):
    contract.check_gradients_reach_every_parameter(head, "s4d", {})


@pytest.mark.parametrize("head", sorted(HEADS))
def test_default_size(head):
    assert 1_000 <= count_parameters(build_head(head, "s4d", 5)) <= 50_000


def test_papers_size_is_within_range():
    """c32-f4 with 4 blocks, the paper's best, stays well under 50k parameters."""
    n = count_parameters(S4DModel(3, 1, 5, width=32, state=4, layers=4))
    assert 10_000 <= n <= 20_000


def _recurrence(layer, u, h0):
    """The SSM sample by sample, from the continuous parameters (float64 reference)."""
    a = torch.complex(-torch.exp(layer.A_re_log.double()), layer.A_im.double())
    dt = torch.exp(layer.log_dt.double()).unsqueeze(-1)
    abar = torch.exp(dt * a)
    bbar = (abar - 1) / a * torch.view_as_complex(layer.B.double())
    c = torch.view_as_complex(layer.C.double())
    h, ys = h0.clone(), []
    for t in range(u.shape[1]):
        h = abar * h + bbar * u[:, t].unsqueeze(-1)
        ys.append(2 * (c * h).real.sum(-1) + layer.D.double() * u[:, t])
    return torch.stack(ys, 1), h


@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("chunk, steps", [(1, 5), (7, 1), (7, 50), (16, 64), (16, 65), (64, 300)])
def test_chunked_ssm_is_the_recurrence(init, chunk, steps):
    torch.manual_seed(0)
    layer = S4DLayer(5, state=3, init=init, dt_min=1e-2, dt_max=0.5, chunk=chunk).double()
    u = torch.randn(2, steps, 5, dtype=torch.float64)
    h0 = torch.randn(2, 5, 3, dtype=torch.complex128)
    ref, ref_h = _recurrence(layer, u, h0)
    y, h = layer(u.requires_grad_(), h0)  # autograd recorded: the chunked torch path
    assert (y - ref).abs().max() < 1e-10 and (h - ref_h).abs().max() < 1e-10


@pytest.mark.skipif(not SSM_KERNEL.available(), reason="numba not available")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernel_is_the_recurrence(dtype):
    torch.manual_seed(0)
    layer = S4DLayer(4, state=4, dt_min=1e-3, dt_max=0.5).to(dtype)
    u = torch.randn(3, 200, 4, dtype=dtype)
    h0 = torch.randn(3, 4, 4, dtype=torch.complex128).to(layer.initial_state(1).dtype)
    ref, ref_h = _recurrence(layer, u.double(), h0.to(torch.complex128))
    with torch.inference_mode():
        y, h = layer(u, h0)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    scale = ref.abs().max().item()
    assert y.dtype == dtype and (y.double() - ref).abs().max() < tol * scale
    assert (h.to(torch.complex128) - ref_h).abs().max() < tol * max(1.0, ref_h.abs().max().item())


def test_initialisations():
    for init, im in [("lin", [0.0, math.pi, 2 * math.pi, 3 * math.pi]),
                     ("inv", [4 / math.pi * (4 / (2 * n + 1) - 1) for n in range(4)])]:
        layer = S4DLayer(6, state=4, init=init, dt_min=1e-3, dt_max=1e-1)
        assert torch.allclose(layer.A_im, torch.tensor(im).expand(6, 4))
        assert torch.allclose(-torch.exp(layer.A_re_log), torch.full((6, 4), -0.5))
        dt = torch.exp(layer.log_dt)
        assert (dt >= 1e-3 * 0.999).all() and (dt <= 1e-1 * 1.001).all()
        dta, _, _ = layer.discrete()
        assert (torch.exp(dta).abs() < 1).all()  # stable whatever the step


def test_inference_cache_follows_the_parameters():
    """Without autograd the matrices are cached; any change of a parameter's value is seen."""
    torch.manual_seed(0)
    layer = S4DLayer(4, state=2, chunk=8, fused=False)
    u = torch.randn(1, 30, 4)
    with torch.no_grad():
        before = layer(u)[0]
        layer.C.data.mul_(2.0)  # through .data: the version counter does not move
        after = layer(u)[0]
        again = layer(u)[0]
    fresh = layer(u)[0]  # autograd recorded: computed afresh
    assert not torch.allclose(before, after) and torch.equal(after, again)
    assert torch.allclose(fresh, after, atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        S4DLayer(4, init="legs")
    with pytest.raises(ValueError):
        S4DLayer(4, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError):
        S4DModel(1, 1, 0, layers=0)
    model = S4DModel(1, 1, 0)
    with pytest.raises(ValueError):
        model.process(torch.zeros(1, 10, 1), None, ())


def test_hybrid_learns_a_gain_correction():
    first, final = contract.hybrid_fit("hybrid_gain", "s4d", {"width": 8, "layers": 2})
    assert final < first / 300


def test_black_box_learns_a_smoothing_compressor():
    first, final, constant = contract.blackbox_fit("s4d", {"width": 8, "layers": 2}, steps=150)
    assert final < first / 200 and final < constant / 4
