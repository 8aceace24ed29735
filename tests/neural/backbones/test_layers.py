"""FiLM, GLU, the S6 block and its fused inference kernel."""
import pytest
import torch
import torch.nn.functional as F

from neural.backbones.film import FiLM, GLU
from neural.backbones.lstm import LSTMBlock
from neural.backbones.s6 import S6Block
from neural.kernels import selective


def test_film_shapes_and_per_sample_conditioning():
    torch.manual_seed(0)
    film = FiLM(3, 8, hidden=5)
    x, cond = torch.randn(2, 40, 8), torch.randn(2, 3)
    y = film(x, cond)
    assert y.shape == x.shape
    # a per-sample cond that is constant over time gives the same result
    assert torch.allclose(film(x, cond.unsqueeze(1).expand(2, 40, 3)), y, atol=1e-6)
    assert not torch.allclose(film(x, cond + 1.0), y)


def test_film_without_conditioning_is_identity():
    x = torch.randn(2, 10, 4)
    assert torch.equal(FiLM(0, 4)(x, None), x)


def test_film_rejects_wrong_cond():
    with pytest.raises(ValueError):
        FiLM(3, 8)(torch.randn(2, 5, 8), torch.randn(2, 4))
    with pytest.raises(ValueError):
        FiLM(3, 8)(torch.randn(2, 5, 8), None)


def test_glu():
    torch.manual_seed(0)
    glu = GLU(6)
    x = torch.randn(2, 9, 6)
    value, gate = glu.proj(x).chunk(2, -1)
    assert torch.allclose(glu(x), value * torch.sigmoid(gate))


def test_s6_initialisation():
    block = S6Block(8, d_state=5, dt_min=1e-4, dt_max=1e-1)
    A = -torch.exp(block.A_log)
    assert torch.allclose(A, -torch.arange(1.0, 6.0).expand(8, 5))
    dt = F.softplus(block.x_proj.bias[:8])
    assert torch.allclose(dt, torch.logspace(-4, -1, 8), rtol=1e-4)
    assert torch.equal(block.D, torch.ones(8))


def test_s6_is_causal():
    torch.manual_seed(0)
    block = S6Block(4, d_state=3, dt_min=1e-2, dt_max=0.5)
    x = torch.randn(2, 100, 4)
    y, _ = block(x)
    x2 = x.clone()
    x2[:, 60] += 1.0
    y2, _ = block(x2)
    assert torch.equal(y[:, :60], y2[:, :60])
    assert not torch.allclose(y[:, 60:], y2[:, 60:])


@pytest.mark.skipif(not selective.available(), reason="numba not available")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernel_matches_torch_path(dtype):
    torch.manual_seed(0)
    fused = S6Block(6, d_state=4, expand=2, dt_min=1e-3, dt_max=1.0).to(dtype)
    plain = S6Block(6, d_state=4, expand=2, fused=False).to(dtype)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 500, 6, dtype=dtype)
    with torch.no_grad():
        state = fused.initial_state(3)
        state = (torch.randn_like(state[0]), torch.randn_like(state[1]))
        y_f, (tail_f, h_f) = fused(x, state)
        y_p, (tail_p, h_p) = plain(x, state)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(y_f, y_p, atol=tol) and torch.allclose(h_f, h_p, atol=tol)
    assert torch.equal(tail_f, tail_p)


def test_s6_uses_the_differentiable_path_when_training():
    block = S6Block(4)
    x = torch.randn(1, 50, 4, requires_grad=True)
    y, _ = block(x)
    y.sum().backward()
    assert x.grad is not None and block.A_log.grad is not None and block.conv_weight.grad is not None


def test_lstm_block_state_layout():
    block = LSTMBlock(5)
    h, c = block.initial_state(3)
    assert h.shape == c.shape == (1, 3, 5)
    y, (h, c) = block(torch.randn(3, 7, 5), (h, c))
    assert y.shape == (3, 7, 5) and h.shape == (1, 3, 5)
