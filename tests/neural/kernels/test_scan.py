"""The parallel selective scan against the sequential loop, autograd and torchlpc."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural.kernels.scan import scan_parallel, scan_sequential


def _inputs(shape, dtype, low=0.0, high=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)).to(dtype)
    b = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    h0 = torch.randn(shape[:1] + shape[2:], generator=g, dtype=torch.float64).to(dtype)
    return a, b, h0


def _rel_err(x, ref):
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps", [1, 2, 7, 8, 9, 64, 100, 257, 1000])
@pytest.mark.parametrize("chunk", [2, 3, 8])
def test_parallel_matches_sequential(dtype, steps, chunk):
    a, b, h0 = _inputs((2, steps, 3, 4), dtype)
    h, last = scan_parallel(a, b, h0, chunk)
    ref, ref_last = scan_sequential(a, b, h0)
    assert h.shape == ref.shape and h.dtype == dtype and last.shape == (2, 3, 4)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert _rel_err(h, ref) < tol
    assert torch.equal(last, h[:, -1])
    assert _rel_err(last, ref_last) < tol


_REGIMES = {"near1": (0.999, 1.0), "small": (0.0, 0.01), "any": (0.0, 1.0)}


@pytest.fixture(scope="module", params=sorted(_REGIMES))
def long_case(request):
    """50k steps and the loop's float64 result (computed once per regime)."""
    a, b, h0 = _inputs((2, 50_000, 3), torch.float64, *_REGIMES[request.param], seed=1)
    return a, b, h0, scan_sequential(a, b, h0)[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_long_sequence_is_stable(long_case, dtype):
    """50k steps: a close to 1 (long memory, large states), a close to 0, and any a."""
    a, b, h0, truth = long_case
    h, last = scan_parallel(a.to(dtype), b.to(dtype), h0.to(dtype))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.isfinite(h).all()
    assert _rel_err(h, truth) < tol
    assert _rel_err(last, truth[:, -1]) < tol
    if dtype == torch.float32:  # and no worse than the float32 loop itself
        loop32, _ = scan_sequential(a[:, :5000].float(), b[:, :5000].float(), h0.float())
        assert _rel_err(h[:, :5000], truth[:, :5000]) <= max(2 * _rel_err(loop32, truth[:, :5000]), 1e-6)


def test_underflowing_products_are_exact_zeros_not_nans():
    a = torch.full((1, 4000, 2), 1e-30)
    b = torch.ones(1, 4000, 2)
    h, _ = scan_parallel(a, b)
    assert torch.allclose(h, torch.ones_like(h))


def test_zero_initial_state_and_empty_sequence():
    a, b, _ = _inputs((2, 50, 5), torch.float64)
    assert torch.allclose(scan_parallel(a, b)[0], scan_parallel(a, b, torch.zeros(2, 5, dtype=torch.float64))[0])
    h0 = torch.randn(2, 5, dtype=torch.float64)
    h, last = scan_parallel(a[:, :0], b[:, :0], h0)
    assert h.shape == (2, 0, 5) and torch.equal(last, h0)


def test_block_by_block_equals_whole():
    a, b, h0 = _inputs((2, 300, 4), torch.float64)
    whole, _ = scan_parallel(a, b, h0)
    state, parts = h0, []
    for i in range(0, 300, 37):
        part, state = scan_parallel(a[:, i:i + 37], b[:, i:i + 37], state)
        parts.append(part)
    assert torch.allclose(torch.cat(parts, 1), whole, atol=1e-12)


def test_gradients_match_the_loop():
    a, b, h0 = _inputs((2, 70, 3), torch.float64, 0.5, 1.0)
    grads = []
    for fn in (scan_parallel, scan_sequential):
        leaves = [t.clone().requires_grad_() for t in (a, b, h0)]
        h, last = fn(*leaves)
        ((h * torch.linspace(-1, 1, 70, dtype=torch.float64)[None, :, None]).sum() + last.square().sum()).backward()
        grads.append([t.grad for t in leaves])
    for g_par, g_seq in zip(*grads):
        assert torch.allclose(g_par, g_seq, atol=1e-10)


def test_gradcheck():
    a, b, h0 = _inputs((1, 19, 2), torch.float64, 0.3, 0.9)
    leaves = [t.requires_grad_() for t in (a, b, h0)]
    assert torch.autograd.gradcheck(lambda a, b, h0: scan_parallel(a, b, h0, 3), leaves)


def test_matches_torchlpc():
    torchlpc = pytest.importorskip("torchlpc")
    a, b, h0 = _inputs((2, 3000, 3), torch.float64, 0.0, 1.0)
    h, _ = scan_parallel(a, b, h0)
    # torchlpc: y_t = x_t - A_t y_{t-1}, batch of 1-D signals (time last), initial y_{-1} = zi
    x = b.movedim(1, -1).reshape(-1, 3000)
    coef = -a.movedim(1, -1).reshape(-1, 3000, 1)
    y = torchlpc.sample_wise_lpc(x, coef, h0.reshape(-1, 1))
    assert torch.allclose(h, y.reshape(2, 3, 3000).movedim(-1, 1), atol=1e-10)


def test_bad_shapes_raise():
    a = torch.rand(2, 10, 3)
    with pytest.raises(ValueError):
        scan_parallel(a, torch.rand(2, 10, 4))
    with pytest.raises(ValueError):
        scan_parallel(a, a, torch.zeros(2, 4))
    with pytest.raises(ValueError):
        scan_parallel(a, a, chunk=1)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 300),
    chunk=st.integers(2, 17),
    width=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_property_any_length_and_chunk(batch, steps, chunk, width, seed):
    a, b, h0 = _inputs((batch, steps, width), torch.float64, seed=seed)
    h, last = scan_parallel(a, b, h0, chunk)
    ref, ref_last = scan_sequential(a, b, h0)
    assert torch.allclose(h, ref, atol=1e-11) and torch.allclose(last, ref_last, atol=1e-11)
