"""The compiled S6 stack (streaming inference) against the torch path of the same weights."""
import pytest
import torch

from neural.backbones.s6 import S6Model
from neural.kernels import s6_stack
from tests.neural.kernels.stack_check import blocks_against_torch, close, perturbed_pair

pytestmark = pytest.mark.skipif(not s6_stack.available(), reason="numba not available")

SIZES = [  # (layers, expand, conv, cond_dim): the default shape, a deeper and wider one, no conv, no cond
    (1, 1, 4, 7), (2, 2, 3, 3), (1, 1, 1, 2), (2, 1, 4, 0),
]


def _pair(layers, expand, conv, cond_dim, dtype, seed=0):
    """A compiled-path model with perturbed weights and a torch-path twin (fused=False)."""
    sizes = dict(width=12, state=5, layers=layers, expand=expand, conv=conv, dt_min=1e-3, dt_max=0.5)
    return perturbed_pair(lambda fused: S6Model(4, 2, cond_dim, fused=fused, **sizes), dtype, seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layers, expand, conv, cond_dim", SIZES)
def test_compiled_stack_matches_the_torch_path_block_by_block(layers, expand, conv, cond_dim, dtype):
    model, twin = _pair(layers, expand, conv, cond_dim, dtype)
    _, _, _, (out, state), (ref, ref_state), from_silence = blocks_against_torch(model, twin, cond_dim, dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out.dtype == dtype and out.shape == ref.shape
    assert close(out, ref, tol)
    assert (ref - from_silence).abs().max() > 1e-3   # the carried state matters
    for (tail, h), (ref_tail, ref_h) in zip(state, ref_state):   # products summed in double: not bit for bit
        for got, want in ((tail, ref_tail), (h, ref_h)):
            assert got.shape == want.shape and got.dtype == dtype
            assert close(got, want, tol)


def test_the_callers_state_is_left_as_it_was():
    model, _ = _pair(1, 1, 4, 7, torch.float32)
    x, cond = torch.randn(1, 20, 4), torch.rand(1, 7)
    with torch.inference_mode():
        state = model.process(x, cond)[1]
        kept = [(t.clone(), h.clone()) for t, h in state]
        first = model.process(x, cond, state)[0]
        again = model.process(x, cond, state)[0]
    assert torch.equal(first, again)
    assert all(torch.equal(t, kt) and torch.equal(h, kh) for (t, h), (kt, kh) in zip(state, kept))


def test_kept_weights_and_film_coefficients_follow_changes():
    model, twin = _pair(2, 1, 4, 3, torch.float32)
    x, cond = torch.randn(2, 50, 4), torch.rand(2, 3)
    with torch.inference_mode():
        before = model(x, cond)
        other_cond = model(x, cond.flip(0))             # the same values in another order: a new cond
        assert torch.allclose(other_cond, twin(x, cond.flip(0)), atol=1e-5)
        assert (other_cond - before).abs().max() > 1e-4
    with torch.no_grad():                               # in place, as an optimiser step
        model.blocks[1].x_proj.weight.mul_(1.5)
        model.films[0].net[2].bias.add_(0.3)
        twin.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after = model(x, cond)
        assert (after - before).abs().max() > 1e-4
        assert torch.allclose(after, twin(x, cond), atol=1e-5)


def test_training_keeps_the_differentiable_path():
    model, _ = _pair(1, 1, 4, 7, torch.float32)
    x, cond = torch.randn(1, 30, 4), torch.rand(1, 7)
    model(x, cond).square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
