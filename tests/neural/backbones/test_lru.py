"""The LRU backbone: the family contract, the layer against its recurrence, overfitting."""
import math

import pytest
import torch

import backbone_contract as contract
from neural import HEADS, build_head, count_parameters
from neural.backbones.lru import LRULayer, LRUModel
from neural.kernels.scan import scan_parallel

SETUPS = [{}, {"fused": False, "width": 8, "state": 4, "layers": 1, "chunk": 3}]
IDS = ["default", "torch-path"]


@pytest.mark.parametrize("hp", SETUPS, ids=IDS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_streaming_equals_offline(head, hp):
    contract.check_streaming_equals_offline(head, "lru", hp)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_conditioning_changes_the_output(head):
    contract.check_conditioning_changes_output(head, "lru", {})


@pytest.mark.parametrize("head", sorted(HEADS))
def test_gradients_reach_every_parameter(head):
    contract.check_gradients_reach_every_parameter(head, "lru", {})


@pytest.mark.parametrize("head", sorted(HEADS))
def test_default_size(head):
    assert 1_000 <= count_parameters(build_head(head, "lru", 5)) <= 50_000


def _recurrence(layer, u, h0):
    """The LRU sample by sample from its parameters (float64 reference)."""
    lam = torch.exp(torch.complex(-torch.exp(layer.nu_log.double()), torch.exp(layer.theta_log.double())))
    gamma = torch.exp(layer.gamma_log.double())
    B = torch.view_as_complex(layer.B.double()) * gamma.unsqueeze(-1)
    C = torch.view_as_complex(layer.C.double())
    h, ys = h0.clone(), []
    for t in range(u.shape[1]):
        h = lam * h + u[:, t].to(torch.complex128) @ B.T
        ys.append((h @ C.T).real + layer.D.double() * u[:, t])
    return torch.stack(ys, 1), h


@pytest.mark.parametrize("grad", [True, False])
def test_layer_is_the_recurrence(grad):
    torch.manual_seed(0)
    layer = LRULayer(6, state=5, r_min=0.5, r_max=0.99, max_phase=math.pi, chunk=4).double()
    u = torch.randn(2, 100, 6, dtype=torch.float64)
    h0 = torch.randn(2, 5, dtype=torch.complex128)
    ref, ref_h = _recurrence(layer, u, h0)
    with torch.set_grad_enabled(grad):  # the parallel scan, or (no grad) the compiled loop
        y, h = layer(u, h0)
    assert (y - ref).abs().max() < 1e-10 and (h - ref_h).abs().max() < 1e-10


def test_ring_initialisation():
    torch.manual_seed(0)
    layer = LRULayer(4, state=2000, r_min=0.4, r_max=0.9, max_phase=0.5)
    lam = layer.eigenvalues()
    r, phase = lam.abs(), lam.angle()
    assert r.min() >= 0.4 - 1e-6 and r.max() <= 0.9 + 1e-6
    assert phase.min() > 0 and phase.max() <= 0.5 + 1e-6
    # uniform on the ring (in area): the median radius splits the area in two
    assert abs(r.median().item() - math.sqrt((0.4**2 + 0.9**2) / 2)) < 0.02
    assert torch.allclose(torch.exp(layer.gamma_log), torch.sqrt(1 - r**2), atol=1e-5)


def test_normalisation_keeps_the_state_at_the_inputs_scale():
    """With gamma, white input gives states of the input's scale even with |lambda| near 1."""
    torch.manual_seed(0)
    layer = LRULayer(1, state=8, r_min=0.99, r_max=0.999)
    with torch.no_grad():
        u = torch.randn(1, 50_000, 1)
        bu = torch.complex(u, torch.zeros_like(u)) * torch.exp(layer.gamma_log)
        h, _ = scan_parallel(layer.eigenvalues().expand_as(bu), bu)
    power = h[:, 10_000:].abs().square().mean(1).squeeze(0)  # 1 / (1 - |lambda|^2) > 50 without gamma
    assert ((power > 0.6) & (power < 1.6)).all(), power


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        LRULayer(4, r_min=0.9, r_max=1.0)
    with pytest.raises(ValueError):
        LRULayer(4, max_phase=0.0)
    with pytest.raises(ValueError):
        LRUModel(1, 1, 0, layers=0)


def test_hybrid_learns_a_gain_correction():
    first, final = contract.hybrid_fit("hybrid_add", "lru", {"width": 8, "state": 8})
    assert final < first / 20  # the additive head learns the 3 dB as a residual: slower


def test_black_box_learns_a_smoothing_compressor():
    first, final, constant = contract.blackbox_fit("lru", {"width": 8, "state": 8}, steps=150)
    assert final < first / 200 and final < constant / 4
