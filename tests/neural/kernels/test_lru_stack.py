"""The compiled LRU stack (streaming inference) against the torch path of the same weights."""
import pytest
import torch

from neural.backbones.lru import LRUModel
from neural.backbones.stack import COMPILED_STEPS
from neural.kernels import lru_stack

pytestmark = pytest.mark.skipif(not lru_stack.available(), reason="numba not available")


def _pair(layers, cond_dim, dtype, seed=0):
    """A compiled-path model with perturbed weights and a torch-path twin (fused=False)."""
    torch.manual_seed(seed)
    model = LRUModel(4, 2, cond_dim, width=12, state=6, layers=layers).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith(("nu_log", "theta_log", "gamma_log")):   # keep the ring: a long memory
                p.add_(0.2 * torch.randn_like(p))
    twin = LRUModel(4, 2, cond_dim, width=12, state=6, layers=layers, fused=False).to(dtype)
    twin.load_state_dict(model.state_dict())
    return model, twin


def _close(got, want, tol):
    scale = max([1.0] + want.abs().flatten().tolist())
    return got.shape == want.shape and bool(((got - want).abs() <= tol * scale).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layers, cond_dim", [(1, 7), (2, 3), (2, 0)])
def test_compiled_stack_matches_the_torch_path_block_by_block(layers, cond_dim, dtype):
    model, twin = _pair(layers, cond_dim, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 400, 4, generator=g).to(dtype)
    cond = torch.rand(2, cond_dim, generator=g).to(dtype) if cond_dim else None
    with torch.inference_mode():
        start = twin.process(x[:, :30], cond)[1]        # a state the torch path made
        ref, ref_state = twin.process(x[:, 30:], cond, start)
        parts, state, i = [], start, 30
        for n in (1, 0, 7, 64, 64, 64, 64, 64, 42):   # blocks the kernel takes (up to COMPILED_STEPS)
            y, state = model.process(x[:, i:i + n], cond, state)
            parts.append(y)
            i += n
        out = torch.cat(parts, 1)
        kept = [s.clone() for s in start]
        model.process(x[:, 30:40], cond, start)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out.dtype == dtype and _close(out, ref, tol)
    assert (ref - twin.process(x[:, 30:], cond)[0]).abs().max() > 1e-3   # the carried state matters
    for s, ref_s in zip(state, ref_state):   # complex (B, N), as the LRU layer's
        assert s.shape == ref_s.shape and s.dtype == ref_s.dtype
        assert _close(torch.view_as_real(s), torch.view_as_real(ref_s), tol)
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
