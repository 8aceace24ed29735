"""The compiled audio-path row against the torch shaper and concatenation."""
import pytest
import torch

from neural.audio_path import AudioPath
from neural.kernels import shaper

pytestmark = pytest.mark.skipif(not shaper.KERNEL.available(), reason="numba not available")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("use_shaper", [True, False])
def test_row_equals_the_torch_shaper_bit_for_bit(dtype, use_shaper):
    torch.manual_seed(0)
    path = AudioPath(3, shaper=use_shaper, fir_taps=5, poles=2).to(dtype)
    if use_shaper:
        with torch.no_grad():
            path.shaper_base.add_(torch.tensor([0.1, -0.05], dtype=dtype))
            path.shaper_cond.normal_(0.0, 0.1)
    u = torch.randn(2, 300, dtype=dtype)
    cond = torch.rand(2, 3, dtype=dtype)
    tail, h0 = torch.randn(2, 4, dtype=dtype), torch.randn(2, 2, dtype=dtype)
    shaped = path._shape(u, cond) if use_shaper else u
    expected = torch.cat([tail, shaped, h0], 1)
    a = path._coefficients(cond).detach() if use_shaper else torch.zeros(2, 2, dtype=dtype)
    row = shaper.filter_row(u, a.contiguous(), use_shaper, tail, h0)
    assert row.dtype == dtype and torch.equal(row, expected)
    if use_shaper:
        assert not torch.equal(shaped, u)


def test_streaming_blocks_take_the_compiled_row():
    path = AudioPath(3)
    u, cond = torch.randn(1, 64), torch.rand(1, 3)
    with torch.no_grad():
        assert path._compiled_row(u, cond, *path.initial_state(1))
        assert not path._compiled_row(u, cond[:, None].expand(1, 64, 3), *path.initial_state(1))   # per-sample cond
    assert not path._compiled_row(u, cond, *path.initial_state(1))   # a graph may be recorded: the torch path
