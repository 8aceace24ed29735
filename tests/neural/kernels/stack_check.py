"""What the compiled-stack tests (S6, LSTM, LRU) share: a twin on the torch path, the tolerance,
and the stream of kernel-sized blocks against one torch-path call."""
from __future__ import annotations

import torch

BLOCKS = [1, 0, 7, 64, 64, 64, 64, 64, 42]   # block sizes the kernels take (up to COMPILED_STEPS)


def perturbed_pair(make, dtype, seed=0, keep=()):
    """``make(fused)`` twice: a compiled-path model with its weights moved off their start (but the
    parameters named ending in ``keep``) and a torch-path twin (``fused=False``) with the same weights."""
    torch.manual_seed(seed)
    model = make(True).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith(tuple(keep)):
                p.add_(0.2 * torch.randn_like(p))
    twin = make(False).to(dtype)
    twin.load_state_dict(model.state_dict())
    return model, twin


def close(got, want, tol):
    """Within ``tol`` relative to the larger of 1 and the largest reference value (empty tensors: equal shapes)."""
    scale = max([1.0] + want.abs().flatten().tolist())
    return got.shape == want.shape and bool(((got - want).abs() <= tol * scale).all())


def stream(model, x, cond, sizes, state=None):
    parts, i = [], 0
    for n in sizes:
        y, state = model.process(x[:, i:i + n], cond, state)
        parts.append(y)
        i += n
    return torch.cat(parts, 1), state


def blocks_against_torch(model, twin, cond_dim, dtype):
    """From a state the torch path made after 30 steps: the model over :data:`BLOCKS` and the twin
    in one call. Returns ``(x, cond, start, (out, state), (ref, ref_state), from_silence)``, the
    last the twin's output without the carried state."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 400, 4, generator=g).to(dtype)
    cond = torch.rand(2, cond_dim, generator=g).to(dtype) if cond_dim else None
    with torch.inference_mode():
        start = twin.process(x[:, :30], cond)[1]
        ref = twin.process(x[:, 30:], cond, start)
        out = stream(model, x[:, 30:], cond, BLOCKS, start)
        from_silence = twin.process(x[:, 30:], cond)[0]
    return x, cond, start, out, ref, from_silence
