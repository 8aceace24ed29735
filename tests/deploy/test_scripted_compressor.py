"""Scripted DSP modules: equal to BlockCompressor block by block, knob map equal to KnobMap.at."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.compressor import MODE_NAMES, PARAM_ORDER, FixedCompressor, KnobMapCompressor
from deploy.export import check_signal, stream
from dsp.knobmap import KnobMap
from dsp.render import BlockCompressor

SR = 44100
P = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
TABLE = {"compress": {100: P, 70: {**P, "attack_ms": 5.0, "release_ms": 400.0},
                      40: {**P, "threshold_db": -12.0, "ratio": 3.0, "attack_ms": 1.0}},
         "limit": {100: {**P, "ratio": 8.0}, 40: {**P, "threshold_db": -14.0, "release_ms": 60.0}}}


@pytest.fixture(scope="module")
def signal():
    return check_signal(0.25, SR, channels=2, seed=3)


@pytest.mark.parametrize("block", [1, 257, 2048])
def test_fixed_fit_equals_block_compressor(signal, block):
    x = signal[:, :3000] if block == 1 else signal
    m = torch.jit.script(FixedCompressor(P, SR))
    y = stream(lambda b: m(torch.from_numpy(b)).numpy(), x, block)
    ref = stream(BlockCompressor(P, SR).process, x, 4096)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - ref)) < 1e-6
    assert np.max(np.abs(y - x)) > 0.1  # it did compress


def test_state_carries_and_reset_returns_to_silence(signal):
    m = torch.jit.script(FixedCompressor(P, SR))
    first = m(torch.from_numpy(signal)).numpy()
    again = m(torch.from_numpy(signal)).numpy()
    assert np.max(np.abs(first - again)) > 1e-3  # the second pass starts from the held gain
    m.reset()
    assert np.array_equal(m(torch.from_numpy(signal)).numpy(), first)


def test_mono_one_d_and_other_rate(signal):
    m = torch.jit.script(FixedCompressor(P, SR))
    m.set_sample_rate(48000)
    y = m(torch.from_numpy(signal[0])).numpy()
    assert y.shape == signal[0].shape
    ref = BlockCompressor(P, 48000).process(signal[:1])[0]
    assert np.max(np.abs(y - ref)) < 1e-6


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_knob_curves_equal_knobmap(mode):
    kmap = KnobMap(TABLE)
    m = torch.jit.script(KnobMapCompressor(TABLE, SR))
    for pr in (0.0, 40.0, 41.5, 55.0, 70.0, 83.3, 100.0, 130.0):
        got = m.parameters_at(pr, MODE_NAMES.index(mode))
        want = kmap.at(mode, pr)
        for i, name in enumerate(PARAM_ORDER):
            assert got[i] == pytest.approx(want[name], rel=1e-12, abs=1e-12), (pr, name)


def test_single_level_and_missing_mode():
    table = {"limit": {65: P}}
    m = torch.jit.script(KnobMapCompressor(table, SR))
    assert m.parameters_at(10.0, 1) == pytest.approx([P[k] for k in PARAM_ORDER])
    with pytest.raises(Exception, match="no such mode"):
        m.parameters_at(50.0, 0)


@pytest.mark.parametrize("block", [1, 257, 2048])
def test_knobmap_stream_equals_renderer(signal, block):
    kmap = KnobMap(TABLE)
    m = torch.jit.script(KnobMapCompressor(TABLE, SR))
    x = signal[:, :2000] if block == 1 else signal
    for mode, pr in (("compress", 55.0), ("limit", 90.0)):
        m.reset()
        knob = torch.tensor(pr) if block == 257 else pr  # tensors or floats
        y = stream(lambda b: m(torch.from_numpy(b), knob, float(MODE_NAMES.index(mode))).numpy(), x, block)
        ref = stream(BlockCompressor(kmap.at(mode, pr), SR).process, x, 4096)
        assert np.max(np.abs(y - ref)) < 1e-6
