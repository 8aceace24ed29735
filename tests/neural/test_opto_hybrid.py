"""Hybrids on an opto fit: their DSP features are the cell's output and gain from one pass,
an untrained hybrid is the opto model exactly, streaming equals offline, and the exported
module equals the renderer."""
from __future__ import annotations

import numpy as np
import torch

from audio.devices import la2a_setting
from audio.material import synthesize
from deploy.neural import neural_module
from dsp.knobs.knobmap import KnobMap
from dsp.models.classes import ModelParams
from dsp.models.opto import OPTO_START
from dsp.models.opto_streaming import StreamingOpto, render
from neural.checkpoint import build_model, load_checkpoint, model_spec, save_checkpoint
from neural.conditioning import dsp_features
from neural.inference import NeuralRenderer

SR = 44100
BLOCKS = {"input_highpass_hz": 30.0, "input_shelf_hz": 2500.0, "input_shelf_db": -3.0, "tube_drive": 1.2,
          "tube_asymmetry": -0.15, "output_highpass_hz": 15.0}
CELL = {**OPTO_START, **BLOCKS, "ratio": 3.5, "attack_ms": 8.0, "release_ms": 70.0, "release_slow_ms": 400.0,
        "memory_ms": 600.0, "memory_depth": 3.0, "sidechain_shelf_hz": 1500.0, "input_mix": 0.0, "make_up_db": 4.0}
OPTO_MAP = KnobMap({"compress": {100: {**CELL, "threshold_db": -34.0}, 40: {**CELL, "threshold_db": -22.0}},
                    "limit": {100: {**CELL, "threshold_db": -36.0, "input_mix": 0.3},
                              40: {**CELL, "threshold_db": -24.0, "input_mix": 0.2}}}, "opto")


def _signal(seconds=0.4):
    return (0.5 * synthesize(seconds, SR, seed=7)).astype(np.float32)


def _checkpoint(path, trained: bool):
    torch.manual_seed(0)
    spec = model_spec("s6", "hybrid_gain", "fitted+knobs", {"width": 8, "state": 3, "frame": 32})
    model = build_model(spec)
    if trained:   # an output that is not the DSP model's
        with torch.no_grad():
            model.backbone.out_proj.weight.normal_(0.0, 0.05)
            model.backbone.out_proj.bias.normal_(0.0, 0.01)
    save_checkpoint(path, {"model": spec, "variant": "hybrid", "sample_rate": SR, "param_map": OPTO_MAP.to_record(),
                           "state_dict": model.state_dict()})
    return path


def test_features_are_the_cells_output_and_gain():
    x = _signal()
    params = OPTO_MAP.at(la2a_setting("limit", 70))
    assert isinstance(params, ModelParams) and params.model_class == "opto"
    g_db, y = dsp_features(x, params, SR)
    y_ref, gain = StreamingOpto(params, SR).process_and_gain(x[None, :].astype(np.float64))
    np.testing.assert_allclose(y, y_ref[0].astype(np.float32), rtol=0, atol=1e-7)
    np.testing.assert_allclose(g_db, 20 * np.log10(gain) + 4.0, rtol=0, atol=1e-4)
    assert g_db.min() < 4.0 - 3.0   # the cell works: more than 3 dB of reduction somewhere
    # an ff5 fit's output is x * gain and is not stored
    ff5 = ModelParams("ff5", {k: CELL[k] for k in ("threshold_db", "ratio", "attack_ms", "release_ms", "make_up_db")})
    assert dsp_features(x, ff5, SR)[1] is None


def test_untrained_hybrid_is_the_opto_model_and_streams_as_offline(tmp_path):
    x = _signal()
    setting = la2a_setting("compress", 55)
    zero = NeuralRenderer.load(_checkpoint(tmp_path / "zero.pt", trained=False))
    want = render(x.astype(np.float64), SR, OPTO_MAP.at(setting))
    np.testing.assert_allclose(zero.render(x, SR, setting), want, rtol=0, atol=1e-5)
    r = NeuralRenderer.load(_checkpoint(tmp_path / "m.pt", trained=True))
    offline = r.render(x, SR, setting)
    assert np.abs(offline - want).max() > 1e-4   # the correction does something
    for block in (333, 4096):
        proc = r.block_processor(SR, setting)
        parts = [proc(x[None, i:i + block])[0] for i in range(0, len(x), block)]
        np.testing.assert_allclose(np.concatenate(parts), offline, rtol=0, atol=1e-5)


def test_the_exported_hybrid_equals_the_renderer(tmp_path):
    path = _checkpoint(tmp_path / "m.pt", trained=True)
    record, model = load_checkpoint(path)
    m = torch.jit.script(neural_module(record, model, str(path)))
    x = np.stack([_signal(), 0.5 * _signal()])
    for mode, pr in (("limit", 70.0), ("compress", 40.0)):
        m.reset()
        y = np.concatenate([m(torch.from_numpy(x[:, i:i + 300]), pr, float(mode == "limit")).numpy()
                            for i in range(0, x.shape[1], 300)], axis=1)
        ref = NeuralRenderer.load(path).block_processor(SR, la2a_setting(mode, pr))(x)
        assert np.max(np.abs(y - ref)) < 1e-5, mode
