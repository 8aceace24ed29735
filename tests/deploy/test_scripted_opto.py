"""Scripted opto modules: equal to dsp.models.opto_streaming.StreamingOpto block by block (the
cell's feedback loop sample by sample), knob map equal to KnobMap.at for every parameter."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.devices import la2a_setting
from deploy.compressor import MODE_NAMES
from deploy.opto import OPTO_ORDER, FixedOpto, KnobMapOpto
from deploy.verify import check_signal, stream
from dsp.models.opto import OPTO_NAMES
from dsp.models.opto_streaming import StreamingOpto

from test_varying_blocks import CELL, OPTO_MAP  # noqa: E402 (this folder)

SR = 44100
P = {**CELL, "threshold_db": -40.0, "input_mix": 0.2}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def signal():
    return check_signal(0.5, SR, channels=2, seed=4)


def test_the_exported_order_is_the_models():
    assert OPTO_ORDER == OPTO_NAMES


@pytest.mark.parametrize("block", [1, 257, 4096])
def test_fixed_opto_equals_streaming_opto(signal, block):
    x = signal[:, :2000] if block == 1 else signal
    m = torch.jit.script(FixedOpto(P, SR))
    y = stream(lambda b: m(torch.from_numpy(b)).numpy(), x, block)
    ref = stream(StreamingOpto(P, SR).process, x, 4096)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - ref)) < 1e-6
    _, gain = StreamingOpto(P, SR).process_and_gain(x.astype(np.float64))
    assert gain.min() < 0.5   # the cell reduced by more than 6 dB somewhere: the loop ran


@pytest.mark.parametrize("mode", ["compress", "limit"])
def test_opto_curves_equal_knobmap(mode):
    m = torch.jit.script(KnobMapOpto(OPTO_MAP.table, SR))
    for pr in (0.0, 40.0, 47.5, 70.0, 91.0, 100.0):
        got = dict(zip(OPTO_ORDER, m.parameters_at(pr, MODE_NAMES.index(mode))))
        want = OPTO_MAP.at(la2a_setting(mode, pr))
        assert got.keys() == want.keys()
        for k in OPTO_ORDER:
            assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), (pr, k)


def test_state_reset_rate_and_channels(signal):
    m = torch.jit.script(FixedOpto(P, SR))
    first = m(torch.from_numpy(signal)).numpy()
    assert np.max(np.abs(m(torch.from_numpy(signal)).numpy() - first)) > 1e-3   # the cell's state carried on
    m.reset()
    assert np.array_equal(m(torch.from_numpy(signal)).numpy(), first)
    m.reset()
    m.set_sample_rate(48000)
    y = m(torch.from_numpy(signal[0])).numpy()   # 1-D in, 1-D out, retimed
    assert y.shape == signal[0].shape
    assert np.max(np.abs(y - StreamingOpto(P, 48000).process(signal[:1])[0])) < 1e-6
    m.set_sample_rate(2000)   # the 1.5 kHz sidechain shelf lies above Nyquist there
    with pytest.raises(Exception, match="half the sample rate"):
        m(torch.from_numpy(signal))


def test_a_long_silence_leaves_no_cell_state_on_its_way_to_the_subnormal_range():
    sr = 8000   # fast decays: the silence needed stays short
    p = {**P, "release_ms": 10.0, "release_slow_ms": 100.0, "memory_ms": 100.0, "sidechain_shelf_hz": 1000.0,
         "input_highpass_hz": 200.0, "input_shelf_hz": 1000.0, "output_highpass_hz": 300.0}
    m = torch.jit.script(FixedOpto(p, sr))
    m(torch.from_numpy(0.5 * check_signal(1.0, sr, channels=1, seed=3)))
    assert m.cell.state[1] > 1e-6   # lit
    silence = torch.zeros(1, 4096)
    for _ in range(200 * sr // 4096):   # 200 s: without the flush the light and the shelf go subnormal
        out = m(silence)
    states = list(m.cell.state) + list(m.cell.shelf)
    assert all(v == 0.0 or abs(v) >= 1e-200 for v in states) and m.cell.state[1] == 0.0
    assert torch.all(out == 0.0)
