"""Scripted gray-box modules: equal to dsp.models.graybox_streaming.StreamingGraybox block by block, knob map equal to KnobMap.at."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.devices import la2a_setting
from deploy.compressor import MODE_NAMES
from deploy.graybox import GRAYBOX_ORDER, FixedGraybox, KnobMapGraybox
from deploy.verify import check_signal, stream
from dsp.models.graybox_streaming import StreamingGraybox
from dsp.knobs.knobmap import KnobMap

SR = 44100
# audible blocks: a 25 Hz input roll-off, a -6 dB shelf, a driven asymmetric tube, an output high-pass
P = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0,
     "input_highpass_hz": 25.0, "input_shelf_hz": 9000.0, "input_shelf_db": -6.0, "tube_drive": 2.5,
     "tube_asymmetry": 0.3, "output_highpass_hz": 12.0}
TABLE = {"compress": {100: P, 70: {**P, "input_highpass_hz": 60.0, "tube_drive": 1.0, "release_ms": 400.0},
                      40: {**P, "threshold_db": -12.0, "input_shelf_db": -12.0, "tube_asymmetry": -0.2}},
         "limit": {80: {**P, "ratio": 8.0, "output_highpass_hz": 40.0}}}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def signal():
    return check_signal(0.5, SR, channels=2, seed=3)


@pytest.mark.parametrize("block", [1, 257, 2048, None])
def test_fixed_graybox_equals_block_graybox(signal, block):
    x = signal[:, :2000] if block == 1 else signal
    m = torch.jit.script(FixedGraybox(P, SR))
    y = stream(lambda b: m(torch.from_numpy(b)).numpy(), x, block or x.shape[1])
    ref = stream(StreamingGraybox(P, SR).process, x, 4096)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - ref)) < 1e-6
    five_only = stream(StreamingGraybox({**P, "tube_drive": 0.01, "tube_asymmetry": 0.0, "input_shelf_db": 0.0,
                                     "input_highpass_hz": 5.0, "output_highpass_hz": 5.0}, SR).process, x, 4096)
    assert np.max(np.abs(ref - five_only)) > 0.05  # the blocks matter on this signal


def test_knob_map_streams_at_any_setting(signal):
    kmap = KnobMap(TABLE, "graybox")
    m = torch.jit.script(KnobMapGraybox(TABLE, SR))
    for block, (mode, pr) in ((257, ("compress", 55.0)), (2048, ("compress", 100.0)), (1000, ("limit", 20.0))):
        m.reset()
        y = stream(lambda b: m(torch.from_numpy(b), pr, float(MODE_NAMES.index(mode))).numpy(), signal, block)
        ref = stream(StreamingGraybox(kmap.at(la2a_setting(mode, pr)), SR).process, signal, 4096)
        assert np.max(np.abs(y - ref)) < 1e-6, (mode, pr)


@pytest.mark.parametrize("mode", ["compress", "limit"])
def test_graybox_curves_equal_knobmap(mode):
    kmap = KnobMap(TABLE, "graybox")
    m = torch.jit.script(KnobMapGraybox(TABLE, SR))
    for pr in (0.0, 40.0, 47.5, 70.0, 91.0, 100.0):
        got = dict(zip(GRAYBOX_ORDER, m.parameters_at(pr, MODE_NAMES.index(mode))))
        want = kmap.at(la2a_setting(mode, pr))
        assert got.keys() == want.keys()
        for k in GRAYBOX_ORDER:
            assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), (pr, k)


def test_state_reset_rate_and_channels(signal):
    m = torch.jit.script(FixedGraybox(P, SR))
    first = m(torch.from_numpy(signal)).numpy()
    assert np.max(np.abs(m(torch.from_numpy(signal)).numpy() - first)) > 1e-3   # the state carried on
    m.reset()
    assert np.array_equal(m(torch.from_numpy(signal)).numpy(), first)
    m.reset()
    m.set_sample_rate(48000)
    y = m(torch.from_numpy(signal[0])).numpy()   # 1-D in, 1-D out
    assert y.shape == signal[0].shape
    assert np.max(np.abs(y - StreamingGraybox(P, 48000).process(signal[:1])[0])) < 1e-6
    m.set_sample_rate(16000)   # the 9 kHz shelf lies above Nyquist there
    with pytest.raises(Exception, match="half the sample rate"):
        m(torch.from_numpy(signal))
