"""The streaming renderers' compiled kernels against the libraries they replace (torchcomp, scipy)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
from torchcomp import amp2db, db2amp
from torchcomp.core import compressor_core

from audio.material import synthesize
from dsp.models.blocks import cascade, highpass_coefficients, shaper_np, shelf_coefficients
from dsp.models.ff5 import PEAK_FLOOR
from dsp.models.parameters import ms_to_coef
from dsp.models.streaming_kernels import compressor_gain, graybox_block

SR = 48000


@pytest.fixture(scope="module")
def stereo():
    x = synthesize(1.0, SR, seed=11).astype(np.float64)[SR // 2:]
    x *= 0.9 / np.abs(x).max()
    return np.stack([x, 0.7 * np.roll(x, 101)])


@pytest.mark.parametrize("linked", [True, False])
def test_compressor_gain_equals_torchcomp(stereo, linked):
    threshold, ratio, at, rt = -24.0, 4.0, ms_to_coef(2.0, SR), ms_to_coef(150.0, SR)
    slope = 1.0 - 1.0 / ratio
    peak = np.abs(stereo)
    level = peak.max(0, keepdims=True) if linked else peak
    static = db2amp(torch.clamp(slope * (threshold - amp2db(torch.from_numpy(level).clamp_min(PEAK_FLOOR))),
                                max=0.0))
    d = level.shape[0]
    want = compressor_core(static.contiguous(), torch.ones(d, dtype=torch.float64),
                           torch.full((d,), at, dtype=torch.float64), torch.full((d,), rt, dtype=torch.float64)).numpy()
    state = np.ones(d)
    got = np.empty_like(want)
    half = stereo.shape[1] // 2   # two blocks: the state carries
    compressor_gain(np.ascontiguousarray(stereo[:, :half]), linked, threshold, slope, at, rt, PEAK_FLOOR, state,
                    got[:, :half])
    compressor_gain(np.ascontiguousarray(stereo[:, half:]), linked, threshold, slope, at, rt, PEAK_FLOOR, state,
                    got[:, half:])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    assert state[0] == got[0, -1] and np.min(got) < 0.7   # it compressed


def test_graybox_block_equals_lfilter_and_shaper(stereo):
    sections_in = (highpass_coefficients(25.0, SR), shelf_coefficients(9000.0, -6.0, SR))
    b_in, a_in = cascade(*sections_in)
    b_out, a_out = cascade(highpass_coefficients(12.0, SR))
    gain = 0.5 + 0.4 * np.sin(np.arange(stereo.shape[1]) / 300.0)
    drive, asymmetry = 2.5, 0.3
    u = scipy.signal.lfilter(b_in, a_in, stereo, axis=-1)
    want = scipy.signal.lfilter(b_out, a_out, shaper_np(u * gain, drive, asymmetry), axis=-1)
    z_in, z_out = np.zeros((2, 2)), np.zeros((2, 1))
    got = np.empty_like(stereo)
    for start in range(0, stereo.shape[1], 777):   # blocks: the states carry
        part = np.ascontiguousarray(stereo[:, start:start + 777])
        graybox_block(part, gain[start:start + 777], b_in, a_in, z_in, drive, asymmetry, b_out, a_out, z_out,
                      got[:, start:start + 777])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def _subnormal_or_tiny(values) -> bool:
    v = np.abs(np.asarray(values, dtype=np.float64).ravel())
    return bool(((v > 0) & (v < 1e-200)).any())


def test_a_long_silence_leaves_no_state_on_its_way_to_the_subnormal_range():
    """Loud material, then minutes of digital silence block by block: every decaying state of the
    gray-box's filters and of the opto cell is zero or above 1e-200 (no subnormal arithmetic)."""
    from dsp.models.opto import OPTO_START
    from dsp.models.opto_streaming import StreamingOpto
    sr = 8000   # fast decays: the silence needed stays short
    blocks = {"input_highpass_hz": 200.0, "input_shelf_hz": 1000.0, "input_shelf_db": -3.0, "tube_drive": 1.5,
              "tube_asymmetry": 0.1, "output_highpass_hz": 300.0}
    params = {**OPTO_START, **blocks, "threshold_db": -30.0, "release_ms": 10.0, "release_slow_ms": 100.0,
              "memory_ms": 100.0, "sidechain_shelf_hz": 1000.0}
    proc = StreamingOpto(params, sr)
    loud = 0.5 * synthesize(1.0, sr, seed=3)[None].astype(np.float64)
    proc.process(loud)
    lit = proc.cells[0].state[1]
    assert lit > 1e-6   # the cell was lit
    silence = np.zeros((1, 512))
    for _ in range(200 * sr // 512):   # 200 s: without the flush the light, the shelves and filters go subnormal
        out = proc.process(silence)
    cell = proc.cells[0]
    assert not _subnormal_or_tiny(cell.state) and not _subnormal_or_tiny(cell.shelf)
    assert not _subnormal_or_tiny(proc.input_filter.state) and not _subnormal_or_tiny(proc.output_filter.state)
    assert cell.state[1] == 0.0 and np.all(out == 0.0)
