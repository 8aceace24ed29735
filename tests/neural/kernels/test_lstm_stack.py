"""The compiled LSTM stack (streaming inference) against the torch path of the same weights."""
import pytest
import torch

from neural.backbones.lstm import LSTMModel
from neural.backbones.stack import COMPILED_STEPS
from neural.kernels import lstm_stack

pytestmark = pytest.mark.skipif(not lstm_stack.available(), reason="numba not available")


def _pair(layers, cond_dim, dtype, seed=0):
    """A compiled-path model with perturbed weights and a torch-path twin (fused=False)."""
    torch.manual_seed(seed)
    model = LSTMModel(4, 2, cond_dim, hidden=12, layers=layers).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    twin = LSTMModel(4, 2, cond_dim, hidden=12, layers=layers, fused=False).to(dtype)
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
        kept = [(h.clone(), c.clone()) for h, c in start]
        model.process(x[:, 30:40], cond, start)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out.dtype == dtype and _close(out, ref, tol)
    assert (ref - twin.process(x[:, 30:], cond)[0]).abs().max() > 1e-3   # the carried state matters
    for (h, c), (ref_h, ref_c) in zip(state, ref_state):   # (1, B, width), as torch.nn.LSTM's
        assert h.shape == ref_h.shape and c.shape == ref_c.shape and h.dtype == dtype
        assert _close(h, ref_h, tol) and _close(c, ref_c, tol)
    # the caller's state is left as it was
    assert all(torch.equal(h, kh) and torch.equal(c, kc) for (h, c), (kh, kc) in zip(start, kept))


def test_kept_weights_follow_changes_and_training_keeps_the_torch_path():
    model, twin = _pair(1, 3, torch.float32)
    x, cond = torch.randn(2, 50, 4), torch.rand(2, 3)
    with torch.inference_mode():
        before = model(x, cond)
    with torch.no_grad():                               # in place, as an optimiser step
        model.blocks[0].lstm.weight_hh_l0.mul_(1.5)
        twin.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after = model(x, cond)
        assert (after - before).abs().max() > 1e-4
        assert torch.allclose(after, twin(x, cond), atol=1e-5)
    model(x, cond).square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_long_blocks_keep_torch_lstm():
    model, twin = _pair(1, 3, torch.float32)
    x, cond = torch.randn(1, COMPILED_STEPS + 1, 4), torch.rand(1, 3)
    with torch.inference_mode():
        assert torch.equal(model(x, cond), twin(x, cond))                 # the torch path, bit for bit
        short = model(x[:, :COMPILED_STEPS], cond)
        assert not torch.equal(short, twin(x[:, :COMPILED_STEPS], cond))  # the kernel (sums in another order)
        assert torch.allclose(short, twin(x[:, :COMPILED_STEPS], cond), atol=1e-5)
