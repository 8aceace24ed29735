"""The time-invariant complex recurrences: the chunked scan and the compiled loop against a loop."""
import math

import pytest
import torch

from neural.kernels.lti import COMPLEX_KERNEL, scan_complex_fused, scan_lti
from neural.kernels.scan import scan_parallel, scan_sequential


def _lti_inputs(steps, dtype=torch.complex64, radius=(0.5, 1.0), seed=0):
    """log lambda (complex128, N = 5) with |lambda| in ``radius`` and any phase; inputs and h0 in dtype."""
    g = torch.Generator().manual_seed(seed)
    r = radius[0] + (radius[1] - radius[0]) * torch.rand(5, generator=g, dtype=torch.float64)
    log_lam = torch.complex(torch.log(r), 2 * math.pi * torch.rand(5, generator=g, dtype=torch.float64))
    b = torch.randn(2, steps, 5, generator=g, dtype=torch.complex128)
    h0 = torch.randn(2, 5, generator=g, dtype=torch.complex128)
    return log_lam, b.to(dtype), h0.to(dtype)


def _loop(log_lam, b, h0):
    """The sequential loop in complex128 (the reference)."""
    lam = torch.exp(log_lam.to(torch.complex128))
    return scan_sequential(lam.expand(b.shape).clone(), b.to(torch.complex128), h0.to(torch.complex128))


def _rel_err(x, ref):
    return ((x.to(torch.complex128) - ref.to(torch.complex128)).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("steps", [1, 7, 8, 9, 64, 257, 1000])
@pytest.mark.parametrize("chunk", [2, 8, 64])
def test_lti_scan_matches_the_loop(dtype, steps, chunk):
    log_lam, b, h0 = _lti_inputs(steps, dtype)
    h, last = scan_lti(log_lam, b, h0, chunk)
    ref, ref_last = _loop(log_lam, b, h0)
    tol = 1e-12 if dtype == torch.complex128 else 1e-5
    assert h.dtype == dtype and h.shape == b.shape
    assert _rel_err(h, ref) < tol and _rel_err(last, ref_last) < tol


def test_lti_scan_is_exact_near_the_unit_circle():
    """20k steps with |lambda| in [0.9999, 0.99999] (long memory, large states, rotating
    phases) in complex64: still within 1e-5 of the complex128 loop."""
    log_lam, b, h0 = _lti_inputs(20_000, radius=(0.9999, 0.99999), seed=1)
    ref, _ = _loop(log_lam, b, h0)
    h, _ = scan_lti(log_lam, b, h0)
    assert torch.isfinite(torch.view_as_real(h)).all() and _rel_err(h, ref) < 1e-5


def test_lti_scan_gradients_match_the_loop():
    log_lam, b, h0 = _lti_inputs(50, torch.complex128)
    grads = []
    for scan in (scan_lti, _loop):
        args = [t.clone().requires_grad_() for t in (log_lam, b, h0)]
        h, _ = scan(*args)
        (h.real.square().sum() + h.imag.sum()).backward()
        grads.append([t.grad for t in args])
    for g_lti, g_loop in zip(*grads):
        assert _rel_err(g_lti, g_loop) < 1e-10


@pytest.mark.parametrize("steps", [1, 64, 1000])
def test_generic_parallel_scan_handles_complex(steps):
    """neural.kernels.scan.scan_parallel (time-varying a) on complex tensors against its loop."""
    log_lam, b, h0 = _lti_inputs(steps, torch.complex128)
    g = torch.Generator().manual_seed(3)
    a = torch.exp(log_lam) * (0.9 + 0.1 * torch.rand(2, steps, 5, generator=g, dtype=torch.float64))
    h, last = scan_parallel(a, b, h0)
    ref, ref_last = scan_sequential(a, b, h0)
    assert _rel_err(h, ref) < 1e-12 and _rel_err(last, ref_last) < 1e-12


@pytest.mark.skipif(not COMPLEX_KERNEL.available(), reason="numba not available")
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_fused_kernel_matches_the_loop(dtype):
    log_lam, b, h0 = _lti_inputs(20_000, dtype, radius=(0.9999, 0.99999), seed=2)
    ref, ref_last = _loop(log_lam, b, h0)
    h, last = scan_complex_fused(log_lam, b, h0)
    tol = 1e-12 if dtype == torch.complex128 else 1e-5
    assert h.dtype == dtype and _rel_err(h, ref) < tol and _rel_err(last, ref_last) < tol
