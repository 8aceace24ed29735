"""Scripted DSP modules: equal to StreamingCompressor block by block, knob map equal to KnobMap.at."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.compressor import MODE_NAMES, PARAM_ORDER, FixedCompressor, KnobMapCompressor
from deploy.verify import check_signal, stream
from audio.devices import la2a_setting
from dsp.knobs.knobmap import KnobMap
from dsp.models.ff5_streaming import StreamingCompressor

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
    ref = stream(StreamingCompressor(P, SR).process, x, 4096)
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
    ref = StreamingCompressor(P, 48000).process(signal[:1])[0]
    assert np.max(np.abs(y - ref)) < 1e-6


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_knob_curves_equal_knobmap(mode):
    kmap = KnobMap(TABLE, "ff5")
    m = torch.jit.script(KnobMapCompressor(TABLE, SR))
    for pr in (0.0, 20.0, 40.0, 41.5, 55.0, 70.0, 83.3, 100.0):   # below PR 40: the end level held
        got = m.parameters_at(pr, MODE_NAMES.index(mode))
        want = kmap.at(la2a_setting(mode, pr))
        for i, name in enumerate(PARAM_ORDER):
            assert got[i] == pytest.approx(want[name], rel=1e-12, abs=1e-12), (pr, name)


@pytest.mark.parametrize("pr, mode", [(-5.0, 0.0), (100.5, 0.0), (1000.0, 1.0), (float("nan"), 0.0),
                                      (float("inf"), 1.0), (50.0, -1.0), (50.0, 2.0), (50.0, float("nan"))])
def test_a_setting_outside_the_knobs_raises(signal, pr, mode):
    """The exported module refuses what the command line refuses (PR outside 0..100, NaN,
    infinity, a mode outside 0..1) instead of clamping it to an end of the map; within
    0..100 but outside the fitted levels it holds the end level (documented, tested above)."""
    m = torch.jit.script(KnobMapCompressor(TABLE, SR))
    with pytest.raises(Exception, match="peak_reduction must be a finite number in 0..100|mode must be 0"):
        m(torch.from_numpy(signal), pr, mode)
    with pytest.raises(Exception, match="peak_reduction must be a finite number in 0..100|mode must be 0"):
        m.parameters_at(pr, 0) if mode in (0.0, 1.0) else m(torch.from_numpy(signal), 50.0, mode)
    y = m(torch.from_numpy(signal), 50.0, 1.0)   # still usable after a refusal
    assert np.all(np.isfinite(y.numpy()))


def test_single_level_and_missing_mode():
    table = {"limit": {65: P}}
    m = torch.jit.script(KnobMapCompressor(table, SR))
    assert m.parameters_at(10.0, 1) == pytest.approx([P[k] for k in PARAM_ORDER])
    with pytest.raises(Exception, match="no such mode"):
        m.parameters_at(50.0, 0)


@pytest.mark.parametrize("block", [1, 257, 2048])
def test_knobmap_stream_equals_renderer(signal, block):
    kmap = KnobMap(TABLE, "ff5")
    m = torch.jit.script(KnobMapCompressor(TABLE, SR))
    x = signal[:, :2000] if block == 1 else signal
    for mode, pr in (("compress", 55.0), ("limit", 90.0)):
        m.reset()
        knob = torch.tensor(pr) if block == 257 else pr  # tensors or floats
        y = stream(lambda b: m(torch.from_numpy(b), knob, float(MODE_NAMES.index(mode))).numpy(), x, block)
        ref = stream(StreamingCompressor(kmap.at(la2a_setting(mode, pr)), SR).process, x, 4096)
        assert np.max(np.abs(y - ref)) < 1e-6


# --- a knob table (a device with its own knobs): the nearest fitted setting ---------------
KNOBS = ["threshold", "ratio", "attack"]
FITTED = [({"threshold": -30.0, "ratio": 2.0, "attack": 5.0}, P),
          ({"threshold": -20.0, "ratio": 4.0, "attack": 5.0}, {**P, "threshold_db": -18.0, "ratio": 3.5}),
          ({"threshold": -10.0, "ratio": 4.0, "attack": 5.0}, {**P, "threshold_db": -9.0, "attack_ms": 0.5}),
          ({"threshold": -20.0, "ratio": 8.0, "attack": 5.0}, {**P, "ratio": 9.0, "release_ms": 40.0})]


def knob_table():
    from dsp.knobs.knobtable import KnobTable
    return KnobTable(KNOBS, FITTED)


def scripted_table():
    from deploy.build import knob_table_module
    return torch.jit.script(knob_table_module(knob_table(), SR))


def test_knob_table_nearest_equals_knobtable():
    table, m = knob_table(), scripted_table()
    assert m.knob_names() == KNOBS
    rng = np.random.default_rng(0)
    queries = [dict(s) for s, _ in FITTED] + [
        {"threshold": float(t), "ratio": float(r), "attack": 5.0}
        for t, r in zip(rng.uniform(-33, -7, 40), rng.uniform(1.5, 9.0, 40))]
    chosen = set()
    for q in queries:
        want = table.at(q)
        got = m.parameters_at([q[k] for k in KNOBS])
        assert got == [want[k] for k in PARAM_ORDER], q
        chosen.add(tuple(got))
    assert len(chosen) == len(FITTED)  # the queries reach every fitted setting


def test_knob_table_refuses_far_settings_and_wrong_knob_count():
    m = scripted_table()
    with pytest.raises(Exception, match="knob threshold lies far outside"):
        m.parameters_at([10.0, 4.0, 5.0])   # 20 dB above the fitted -30..-10: a full range beyond
    with pytest.raises(Exception, match="one value per knob"):
        m.parameters_at([-20.0, 4.0])


@pytest.mark.parametrize("block", [1, 257, 2048])
def test_knob_table_stream_equals_renderer(signal, block):
    table, m = knob_table(), scripted_table()
    x = signal[:, :2000] if block == 1 else signal
    for q in ({"threshold": -14.0, "ratio": 3.9, "attack": 5.0}, {"threshold": -21.0, "ratio": 7.0, "attack": 5.0}):
        m.reset()
        values = [q[k] for k in KNOBS]
        knobs = torch.tensor(values) if block == 257 else values  # a tensor or a list
        y = stream(lambda b: m(torch.from_numpy(b), knobs).numpy(), x, block)
        ref = stream(StreamingCompressor(table.at(q), SR).process, x, 4096)
        assert np.max(np.abs(y - ref)) < 1e-6
