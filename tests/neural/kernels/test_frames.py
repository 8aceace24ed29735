"""The compiled frame features and control-rate ramp against the torch path."""
import pytest
import torch

from neural.control import frame_features, interpolate
from neural.kernels import frames

pytestmark = pytest.mark.skipif(not (frames.FEATURES_KERNEL.available() and frames.RAMP_KERNEL.available()),
                                reason="numba not available")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_gain", [True, False])
def test_frame_features_match_the_torch_path(dtype, with_gain):
    g = torch.Generator().manual_seed(0)
    x = (0.3 * torch.randn(3, 8 * 32, generator=g)).to(dtype)
    x[1, 32:64] = 0.0                                   # a silent frame: floored
    gain = (-10 * torch.rand(3, 8 * 32, generator=g)).to(dtype) if with_gain else None
    before = torch.randn(3, 1, generator=g).to(dtype)
    with torch.enable_grad():
        ref = frame_features(x, gain, before, 32)        # the torch path (a graph may be recorded)
    with torch.inference_mode():
        out = frame_features(x, gain, before, 32)
        strided = frame_features(torch.cat([x, x], 1)[:, :x.shape[1]], gain, before, 32)   # a view, not contiguous
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert out.shape == ref.shape == (3, 8, 4 if with_gain else 3) and out.dtype == dtype
    assert (out - ref).abs().max().item() < tol
    assert torch.equal(strided, out)
    assert out[1, 1, :2].tolist() == [-4.0, -4.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ramp_equals_the_torch_path_exactly(dtype):
    c = torch.randn(2, 11, generator=torch.Generator().manual_seed(0)).to(dtype)
    for start, stop in ((0, 9 * 32), (5, 200), (31, 32), (40, 40)):
        with torch.enable_grad():
            ref = interpolate(c, 32, start, stop)
        with torch.inference_mode():
            out = interpolate(c, 32, start, stop)
        assert out.shape == ref.shape and torch.equal(out, ref), (start, stop)
