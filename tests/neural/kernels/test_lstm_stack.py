"""The compiled LSTM stack (streaming inference) against the torch path of the same weights."""
import pytest
import torch

from neural.backbones.lstm import LSTMModel
from neural.backbones.stack import COMPILED_STEPS
from neural.kernels import lstm_stack
from tests.neural.kernels.stack_check import blocks_against_torch, close, perturbed_pair

pytestmark = pytest.mark.skipif(not lstm_stack.available(), reason="numba not available")


def _pair(layers, cond_dim, dtype, seed=0):
    """A compiled-path model with perturbed weights and a torch-path twin (fused=False)."""
    return perturbed_pair(lambda fused: LSTMModel(4, 2, cond_dim, hidden=12, layers=layers, fused=fused), dtype, seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layers, cond_dim", [(1, 7), (2, 3), (2, 0)])
def test_compiled_stack_matches_the_torch_path_block_by_block(layers, cond_dim, dtype):
    model, twin = _pair(layers, cond_dim, dtype)
    x, cond, start, (out, state), (ref, ref_state), from_silence = blocks_against_torch(model, twin, cond_dim, dtype)
    kept = [(h.clone(), c.clone()) for h, c in start]
    with torch.inference_mode():
        model.process(x[:, 30:40], cond, start)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out.dtype == dtype and close(out, ref, tol)
    assert (ref - from_silence).abs().max() > 1e-3   # the carried state matters
    for (h, c), (ref_h, ref_c) in zip(state, ref_state):   # (1, B, width), as torch.nn.LSTM's
        assert h.shape == ref_h.shape and c.shape == ref_c.shape and h.dtype == dtype
        assert close(h, ref_h, tol) and close(c, ref_c, tol)
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
