"""The compiled LRU stack (streaming inference) against the torch path of the same weights."""
import pytest
import torch

from neural.backbones.lru import LRUModel
from neural.backbones.stack import COMPILED_STEPS
from neural.kernels import lru_stack
from tests.neural.kernels.stack_check import blocks_against_torch, close, perturbed_pair

pytestmark = pytest.mark.skipif(not lru_stack.available(), reason="numba not available")


def _pair(layers, cond_dim, dtype, seed=0):
    """A compiled-path model with perturbed weights (the ring kept: a long memory) and a torch-path twin."""
    return perturbed_pair(lambda fused: LRUModel(4, 2, cond_dim, width=12, state=6, layers=layers, fused=fused),
                          dtype, seed, keep=("nu_log", "theta_log", "gamma_log"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layers, cond_dim", [(1, 7), (2, 3), (2, 0)])
def test_compiled_stack_matches_the_torch_path_block_by_block(layers, cond_dim, dtype):
    model, twin = _pair(layers, cond_dim, dtype)
    x, cond, start, (out, state), (ref, ref_state), from_silence = blocks_against_torch(model, twin, cond_dim, dtype)
    kept = [s.clone() for s in start]
    with torch.inference_mode():
        model.process(x[:, 30:40], cond, start)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out.dtype == dtype and close(out, ref, tol)
    assert (ref - from_silence).abs().max() > 1e-3   # the carried state matters
    for s, ref_s in zip(state, ref_state):   # complex (B, N), as the LRU layer's
        assert s.shape == ref_s.shape and s.dtype == ref_s.dtype
        assert close(torch.view_as_real(s), torch.view_as_real(ref_s), tol)
    assert all(torch.equal(s, k) for s, k in zip(start, kept))   # the caller's state is left as it was


def test_long_blocks_keep_the_module_path():
    model, twin = _pair(1, 3, torch.float32)
    x, cond = torch.randn(1, COMPILED_STEPS + 1, 4), torch.rand(1, 3)
    with torch.inference_mode():
        modules = model._run_modules(x, cond, None)[0]                   # the layers, each its own call
        assert torch.equal(model(x, cond), modules)
        short = model(x[:, :COMPILED_STEPS], cond)
        assert not torch.equal(short, modules[:, :COMPILED_STEPS])       # the kernel (sums in another order)
        assert torch.allclose(short, modules[:, :COMPILED_STEPS], atol=1e-5)
        assert torch.allclose(modules, twin(x, cond), atol=1e-5)         # the torch scan, not compiled
    model(x, cond).square().sum().backward()                             # training: the torch path
    assert all(p.grad is not None for p in model.parameters())
