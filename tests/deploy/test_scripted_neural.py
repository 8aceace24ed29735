"""Scripted neural models: equal to NeuralRenderer's streaming output at any block size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.devices import KnobDevice, la2a_setting
from common.errors import UserError
from deploy.neural import neural_module
from deploy.verify import check_signal, stream
from dsp.knobmap import KnobMap
from dsp.knobtable import KnobTable
from neural.checkpoint import build_model, load_checkpoint, model_spec, save_checkpoint
from neural.inference import NeuralRenderer

SR = 44100
PARAMS = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
KNOBMAP = KnobMap({"compress": {100: PARAMS, 40: {**PARAMS, "threshold_db": -12.0, "ratio": 3.0}},
                   "limit": {100: {**PARAMS, "ratio": 8.0}, 40: {**PARAMS, "threshold_db": -14.0}}})
# (backbone, variant, head, conditioning, extra hyperparameters, conditioning normalised)
CASES = [("s6", "hybrid", "hybrid_gain", "fitted", {"frame": 32}, True),
         ("s6", "hybrid", "hybrid_add", "fitted+knobs", {"level_feature": True, "layers": 2}, False),
         ("lstm", "hybrid", "hybrid_gain", "fitted", {"frame": 32}, True),
         ("lstm", "blackbox", "blackbox", "knobs", {"level_feature": True}, False),
         ("s6", "blackbox", "blackbox", "knobs", {"frame": 32}, False),
         ("ff", "hybrid", "hybrid_gain", "fitted+knobs", {"level_feature": True}, True),
         ("ff", "blackbox", "blackbox", "knobs", {"layers": 1}, False),
         ("ff", "hybrid", "hybrid_gain", "fitted", {"frame": 32}, False)]


def write_checkpoint(path, backbone="s6", variant="hybrid", head="hybrid_gain", conditioning="fitted",
                     extra=None, normalised=False, seed=0, param_map=KNOBMAP):
    """A tiny untrained model whose output differs from the DSP's (or the input)."""
    torch.manual_seed(seed)
    hp = {"s6": {"width": 8, "state": 3}, "lstm": {"hidden": 8}, "ff": {"width": 8}}.get(backbone, {})
    size = param_map.device.conditioning_size(conditioning)
    norm = {"mean": [0.1] * size, "std": [0.5] * size, "clip": 3.0} if normalised else None
    spec = model_spec(backbone, head, conditioning, {**hp, **(extra or {})}, cond_norm=norm,
                      device=param_map.device)
    model = build_model(spec)
    stack = getattr(model, "head", model).backbone
    with torch.no_grad():
        stack.out_proj.weight.normal_(0.0, 0.05)
        stack.out_proj.bias.normal_(0.0, 0.01)
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
