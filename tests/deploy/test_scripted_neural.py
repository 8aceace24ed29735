"""Scripted neural models: equal to NeuralRenderer's streaming output at any block size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.devices import KnobDevice, la2a_setting
from common.errors import UserError
from deploy.neural import neural_module
from deploy.verify import check_signal, stream
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable
from neural.checkpoint import build_model, load_checkpoint, model_spec, save_checkpoint
from neural.inference import NeuralRenderer

SR = 44100
PARAMS = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
KNOBMAP = KnobMap({"compress": {100: PARAMS, 40: {**PARAMS, "threshold_db": -12.0, "ratio": 3.0}},
                   "limit": {100: {**PARAMS, "ratio": 8.0}, 40: {**PARAMS, "threshold_db": -14.0}}}, "ff5")
# (backbone, variant, head, conditioning, extra hyperparameters, conditioning normalised)
CASES = [("s6", "hybrid", "hybrid_gain", "fitted", {"frame": 32}, True),
         ("s6", "hybrid", "hybrid_add", "fitted+knobs", {"level_feature": True, "layers": 2}, False),
         ("lstm", "hybrid", "hybrid_gain", "fitted", {"frame": 32}, True),
         ("lstm", "blackbox", "blackbox", "knobs", {"level_feature": True}, False),
         ("s6", "blackbox", "blackbox", "knobs", {"frame": 32}, False),
         ("ff", "hybrid", "hybrid_gain", "fitted+knobs", {"level_feature": True}, True),
         ("ff", "blackbox", "blackbox", "knobs", {"layers": 1}, False),
         ("ff", "hybrid", "hybrid_gain", "fitted", {"frame": 32}, False),
         ("lru", "hybrid", "hybrid_gain", "fitted+knobs", {"frame": 32}, True),
         ("lru", "blackbox", "blackbox", "knobs", {"level_feature": True, "layers": 1}, False)]


# a gray-box knob map: the hybrid's DSP output is the gray-box's (filters and tube around the gain)
BLOCKS = {"input_highpass_hz": 25.0, "input_shelf_hz": 9000.0, "input_shelf_db": -6.0, "tube_drive": 2.5,
          "tube_asymmetry": 0.3, "output_highpass_hz": 12.0}
GRAYBOX_MAP = KnobMap({m: {pr: {**p, **BLOCKS, "tube_drive": 1.0 + pr / 50.0} for pr, p in lv.items()}
                       for m, lv in KNOBMAP.table.items()}, "graybox")
AUDIO_PATH = {"shaper": True, "fir_taps": 16, "poles": 4}   # cfg/model/base.yaml's hybrid default


def _perturb_audio_path(path):
    """Move the identity-initialised path somewhere audible: shaper terms, FIR taps, branch gains."""
    with torch.no_grad():
        if path.use_shaper:
            path.shaper_base.copy_(torch.tensor([0.3, -0.2]))
            if path.shaper_cond is not None:
                path.shaper_cond.normal_(0.0, 0.1)
        path.fir.add_(torch.randn(path.fir.shape) * 0.05)
        path.branch.copy_(torch.linspace(-0.5, 0.3, path.branch.shape[0]))


def write_checkpoint(path, backbone="s6", variant="hybrid", head="hybrid_gain", conditioning="fitted",
                     extra=None, normalised=False, seed=0, param_map=KNOBMAP, audio_path=None):
    """A tiny untrained model whose output differs from the DSP's (or the input); ``audio_path``: its
    options (:func:`neural.audio_path.audio_path_options`), the path's weights moved off the identity."""
    torch.manual_seed(seed)
    hp = {"s6": {"width": 8, "state": 3}, "lstm": {"hidden": 8}, "ff": {"width": 8},
          "lru": {"width": 8, "state": 4}}.get(backbone, {})
    size = param_map.device.conditioning_size(conditioning)
    norm = {"mean": [0.1] * size, "std": [0.5] * size, "clip": 3.0} if normalised else None
    spec = model_spec(backbone, head, conditioning, {**hp, **(extra or {})}, cond_norm=norm,
                      device=param_map.device, audio_path=audio_path)
    model = build_model(spec)
    stack = getattr(model, "head", model).backbone
    with torch.no_grad():
        stack.out_proj.weight.normal_(0.0, 0.05)
        stack.out_proj.bias.normal_(0.0, 0.01)
    if audio_path is not None:
        _perturb_audio_path(getattr(model, "head", model).audio_path)
    save_checkpoint(path, {"model": spec, "variant": variant, "sample_rate": SR, "param_map": param_map.to_record(),
                           "state_dict": model.state_dict(), "config": {"seed": seed}})
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("backbone, variant, head, conditioning, extra, normalised", CASES)
def test_scripted_equals_renderer(tmp_path, backbone, variant, head, conditioning, extra, normalised):
    path = write_checkpoint(tmp_path / "m.pt", backbone, variant, head, conditioning, extra, normalised)
    record, model = load_checkpoint(path)
    m = torch.jit.script(neural_module(record, model, str(path)))
    renderer = NeuralRenderer.load(path)
    x = check_signal(0.15, SR, channels=2, seed=1)
    for block, (mode, pr) in ((1, ("limit", 65.0)), (257, ("compress", 40.0)), (2048, ("limit", 100.0))):
        xs = x[:, :700] if block == 1 else x
        m.reset()
        y = stream(lambda b: m(torch.from_numpy(b), pr, float(mode == "limit")).numpy(), xs, block)
        ref = stream(renderer.block_processor(SR, la2a_setting(mode, pr)), xs, 4096)
        assert np.max(np.abs(y - ref)) < 1e-5, (block, mode)
        moved = ref - xs if variant == "blackbox" else None
        if moved is not None:
            assert np.max(np.abs(moved)) > 1e-3  # the model does something


# (param map, backbone, head, conditioning, extra, normalised, audio path): the default hybrid's path,
# per sample and at the control rate, on an ff5 and a gray-box map; the default backbone (LRU) first
PATH_CASES = [(KNOBMAP, "lru", "hybrid_gain", "fitted+knobs", {"frame": 32}, True, AUDIO_PATH),
              (KNOBMAP, "s6", "hybrid_gain", "fitted", {"frame": 32}, True, AUDIO_PATH),
              (GRAYBOX_MAP, "s6", "hybrid_gain", "fitted+knobs", {"frame": 32}, True, AUDIO_PATH),
              (GRAYBOX_MAP, "lstm", "hybrid_add", "fitted", {"level_feature": True}, False,
               {"shaper": False, "fir_taps": 3, "poles": 2}),
              (KNOBMAP, "ff", "blackbox", "knobs", {}, False, {"fir_taps": 1, "poles": 0})]


@pytest.mark.parametrize("param_map, backbone, head, conditioning, extra, normalised, audio_path", PATH_CASES)
def test_audio_path_and_graybox_equal_renderer(tmp_path, param_map, backbone, head, conditioning, extra,
                                               normalised, audio_path):
    variant = "blackbox" if head == "blackbox" else "hybrid"
    path = write_checkpoint(tmp_path / "m.pt", backbone, variant, head, conditioning, extra, normalised,
                            param_map=param_map, audio_path=audio_path)
    record, model = load_checkpoint(path)
    m = torch.jit.script(neural_module(record, model, str(path)))
    renderer = NeuralRenderer.load(path)
    x = check_signal(0.3, SR, channels=2, seed=1)
    for block, (mode, pr) in ((1, ("limit", 65.0)), (257, ("compress", 40.0)), (2048, ("limit", 100.0)),
                              (x.shape[1], ("compress", 72.0))):
        xs = x[:, :600] if block == 1 else x
        m.reset()
        y = stream(lambda b: m(torch.from_numpy(b), pr, float(mode == "limit")).numpy(), xs, block)
        ref = stream(renderer.block_processor(SR, la2a_setting(mode, pr)), xs, 4096)
        assert np.max(np.abs(y - ref)) < 1e-5, (block, mode)
    # the path does something: the same model with the path set back to the identity differs
    head_module = getattr(model, "head", model)
    with torch.no_grad():
        head_module.audio_path.fir.zero_()
        head_module.audio_path.fir[0] = 1.0
        head_module.audio_path.branch.zero_()
        if head_module.audio_path.use_shaper:
            head_module.audio_path.shaper_base.zero_()
            if head_module.audio_path.shaper_cond is not None:
                head_module.audio_path.shaper_cond.zero_()
    plain = torch.jit.script(neural_module(record, model, str(path)))
    y_plain = plain(torch.from_numpy(x), 72.0, 0.0).numpy()
    m.reset()
    assert np.max(np.abs(m(torch.from_numpy(x), 72.0, 0.0).numpy() - y_plain)) > 1e-3


def test_channel_change_starts_fresh_stream(tmp_path):
    path = write_checkpoint(tmp_path / "m.pt", extra={"frame": 32})
    m = torch.jit.script(neural_module(*load_checkpoint(path), str(path)))
    x = torch.from_numpy(check_signal(0.05, SR, channels=2))
    first = m(x, 50.0, 0.0)
    m(x[:1], 50.0, 0.0)  # another channel count: a new stream
    assert torch.equal(m(x, 50.0, 0.0), first)
    with pytest.raises(Exception, match="training sample rate"):
        m.set_sample_rate(48000)


def test_unsupported_backbone_is_a_user_error(tmp_path):
    path = write_checkpoint(tmp_path / "s4d.pt", backbone="s4d", extra={"width": 8})
    with pytest.raises(UserError, match="s4d backbone cannot be exported"):
        neural_module(*load_checkpoint(path), str(path))


def test_manifest_model_is_a_user_error(tmp_path):
    table = KnobTable(["threshold", "ratio"], [({"threshold": -20.0, "ratio": 4.0}, PARAMS),
                                               ({"threshold": -10.0, "ratio": 2.0}, PARAMS)])
    path = write_checkpoint(tmp_path / "m.pt", conditioning="fitted+knobs", param_map=table)
    assert isinstance(load_checkpoint(path)[0]["param_map_obj"].device, KnobDevice)
    with pytest.raises(UserError, match="own knobs \\(threshold, ratio\\) cannot be exported"):
        neural_module(*load_checkpoint(path), str(path))


@pytest.mark.parametrize("backbone", ["s6", "lru"])
def test_a_whole_file_in_one_call_streams_in_pieces(tmp_path, backbone):
    """A 20 s call equals the same signal streamed in host buffers; done at once, the control-rate
    ramp alone would be a (frames x samples) matrix of some 100 GB."""
    path = write_checkpoint(tmp_path / "m.pt", backbone, extra={"frame": 32})
    m = torch.jit.script(neural_module(*load_checkpoint(path), str(path)))
    x = torch.from_numpy(check_signal(20.0, SR, channels=1, seed=4)[0])
    whole = m(x, 65.0, 0.0)
    m.reset()
    buffers = torch.cat([m(b, 65.0, 0.0) for b in x.split(1000)])
    assert whole.shape == x.shape and whole.dtype == x.dtype
    assert float((whole - buffers).abs().max()) < 1e-6
    assert float((whole - x).abs().max()) > 1e-3
