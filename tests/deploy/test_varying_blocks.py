"""Every exportable model class, scripted, streamed in block sizes that change from call to call
(1 to 4096 samples), equals the Python renderer run over the whole signal at once."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.devices import la2a_setting
from deploy.build import knob_table_module
from deploy.compressor import FixedCompressor, KnobMapCompressor
from deploy.graybox import FixedGraybox, KnobMapGraybox
from deploy.neural import neural_module
from deploy.opto import FixedOpto, KnobMapOpto
from deploy.verify import check_signal
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable
from dsp.models.classes import processor
from dsp.models.opto import OPTO_START
from neural.checkpoint import load_checkpoint
from neural.inference import NeuralRenderer

from test_scripted_neural import GRAYBOX_MAP, KNOBMAP, write_checkpoint  # noqa: E402 (this folder)

SR = 44100
P = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
BLOCKS = {"input_highpass_hz": 25.0, "input_shelf_hz": 9000.0, "input_shelf_db": -6.0, "tube_drive": 2.5,
          "tube_asymmetry": 0.3, "output_highpass_hz": 12.0}
PATH = {"shaper": True, "fir_taps": 16, "poles": 4}
SETTING = la2a_setting("limit", 62.5)
# an optical cell with the blocks, three levels per mode (the monotone cubics have two pieces)
CELL = {**OPTO_START, **BLOCKS, "attack_ms": 5.0, "release_ms": 80.0, "release_slow_ms": 600.0,
        "memory_ms": 900.0, "memory_depth": 4.0, "sidechain_shelf_hz": 1500.0, "input_mix": 0.0, "make_up_db": 3.0}
OPTO_MAP = KnobMap({"compress": {pr: {**CELL, "threshold_db": -60.0 + pr / 4.0, "attack_ms": 2.0 + pr / 10.0}
                                 for pr in (40, 70, 100)},
                    "limit": {pr: {**CELL, "threshold_db": -62.0 + pr / 5.0, "input_mix": 0.1 + pr / 500.0,
                                   "release_slow_ms": 300.0 + 5.0 * pr} for pr in (40, 70, 100)}}, "opto")

pytestmark = pytest.mark.usefixtures("one_thread")


def random_blocks(total: int, seed: int) -> list[int]:
    """Block sizes log-uniform over 1..4096 (and a run of single samples), covering ``total``."""
    rng = np.random.default_rng(seed)
    sizes = [1, 1, 2, 3]
    while sum(sizes) < total:
        sizes.append(int(np.exp(rng.uniform(0.0, np.log(4096.0)))))
    return sizes


def stream_varying(call, x: np.ndarray, seed: int) -> np.ndarray:
    out, start = [], 0
    for n in random_blocks(x.shape[1], seed):
        out.append(call(x[:, start:start + n]))
        start += n
    return np.concatenate(out, axis=1)[:, :x.shape[1]]


@pytest.fixture(scope="module")
def signal():
    return check_signal(0.3, SR, channels=2, seed=5)


DSP_CASES = {
    "ff5 fit": (lambda: FixedCompressor(P, SR), (), lambda: processor(P, SR)),
    "gray-box fit": (lambda: FixedGraybox({**P, **BLOCKS}, SR), (), lambda: processor({**P, **BLOCKS}, SR)),
    "ff5 knob map": (lambda: KnobMapCompressor(KNOBMAP.table, SR), (62.5, 1.0),
                     lambda: processor(KNOBMAP.at(SETTING), SR)),
    "gray-box knob map": (lambda: KnobMapGraybox(GRAYBOX_MAP.table, SR), (62.5, 1.0),
                          lambda: processor(GRAYBOX_MAP.at(SETTING), SR)),
    "opto fit": (lambda: FixedOpto(OPTO_MAP.at(SETTING), SR), (), lambda: processor(OPTO_MAP.at(SETTING), SR)),
    "opto knob map": (lambda: KnobMapOpto(OPTO_MAP.table, SR), (62.5, 1.0),
                      lambda: processor(OPTO_MAP.at(SETTING), SR)),
}


@pytest.mark.parametrize("name", list(DSP_CASES))
def test_dsp_streams_in_varying_blocks(signal, name):
    module, knobs, reference = DSP_CASES[name]
    m = torch.jit.script(module())
    y = stream_varying(lambda b: m(torch.from_numpy(np.ascontiguousarray(b)), *knobs).numpy(), signal, seed=1)
    ref = reference().process(signal)
    assert np.max(np.abs(y - ref)) < 1e-5
    assert np.max(np.abs(ref - signal)) > 0.05   # it did something


BAD_SETTINGS = [(-5.0, 0.0), (130.0, 1.0), (float("nan"), 0.0), (50.0, 3.0)]


@pytest.mark.parametrize("name", ["ff5 knob map", "gray-box knob map", "opto knob map"])
def test_dsp_maps_refuse_settings_outside_the_knobs(signal, name):
    m = torch.jit.script(DSP_CASES[name][0]())
    for pr, mode in BAD_SETTINGS:
        with pytest.raises(Exception, match="peak_reduction must be|mode must be"):
            m(torch.from_numpy(signal), pr, mode)


def test_knob_table_streams_in_varying_blocks(signal):
    table = KnobTable(["threshold", "ratio"], [({"threshold": -20.0, "ratio": 4.0}, P),
                                               ({"threshold": -10.0, "ratio": 2.0}, {**P, "ratio": 2.5})])
    m = torch.jit.script(knob_table_module(table, SR))
    y = stream_varying(lambda b: m(torch.from_numpy(np.ascontiguousarray(b)), [-12.0, 2.2]).numpy(), signal, seed=2)
    ref = processor(table.at({"threshold": -12.0, "ratio": 2.2}), SR).process(signal)
    assert np.max(np.abs(y - ref)) < 1e-5


# (param map, backbone, head, conditioning, extra, audio path): hybrids and black boxes of the
# exportable backbones, per sample and at the control rate, with and without the audio path
NEURAL_CASES = [(GRAYBOX_MAP, "s6", "hybrid_gain", "fitted", {"frame": 32}, PATH),
                (OPTO_MAP, "s6", "hybrid_gain", "fitted+knobs", {"frame": 32}, PATH),
                (KNOBMAP, "lstm", "hybrid_gain", "fitted+knobs", {"frame": 32}, PATH),
                (KNOBMAP, "ff", "hybrid_gain", "fitted", {"level_feature": True}, None),
                (GRAYBOX_MAP, "s6", "blackbox", "knobs", {"frame": 32}, None),
                (KNOBMAP, "lstm", "blackbox", "knobs", {"level_feature": True}, {"fir_taps": 4, "poles": 2}),
                (KNOBMAP, "ff", "blackbox", "knobs", {"frame": 32}, PATH),
                (OPTO_MAP, "lru", "hybrid_gain", "fitted+knobs", {"frame": 32}, PATH)]


@pytest.mark.parametrize("param_map, backbone, head, conditioning, extra, path", NEURAL_CASES,
                         ids=[f"{c[0].compressor}-{c[1]}-{c[2]}-{'path' if c[5] else 'nopath'}" for c in NEURAL_CASES])
def test_neural_streams_in_varying_blocks(tmp_path, signal, param_map, backbone, head, conditioning, extra, path):
    variant = "blackbox" if head == "blackbox" else "hybrid"
    ckpt = write_checkpoint(tmp_path / "m.pt", backbone, variant, head, conditioning, extra, True,
                            param_map=param_map, audio_path=path)
    m = torch.jit.script(neural_module(*load_checkpoint(ckpt), str(ckpt)))
    y = stream_varying(lambda b: m(torch.from_numpy(np.ascontiguousarray(b)), 62.5, 1.0).numpy(), signal, seed=3)
    ref = NeuralRenderer.load(ckpt).block_processor(SR, SETTING)(signal)
    assert np.max(np.abs(y - ref)) < 1e-5
    assert np.max(np.abs(ref - signal)) > 1e-3
    for pr, mode in BAD_SETTINGS:   # refused, as the command line refuses them, not clamped
        with pytest.raises(Exception, match="peak_reduction must be|mode must be"):
            m(torch.from_numpy(signal), pr, mode)
