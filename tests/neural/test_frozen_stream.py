"""FrozenStream: the block processor's path for control-rate S6, LSTM and LRU models gives the modules' output
bit for bit, for any mix of block sizes (switching between the two paths), mono and stereo."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.devices import la2a_setting
from audio.material import synthesize
from dsp.knobs.knobmap import KnobMap
from neural.checkpoint import build_model, model_spec, save_checkpoint
from neural.frozen_stream import MAX_BLOCK, supports
from neural.inference import NeuralRenderer

SR = 44100
FF5 = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
FF5_MAP = KnobMap({"compress": {100: FF5, 40: {**FF5, "threshold_db": -12.0}},
                   "limit": {100: {**FF5, "ratio": 8.0}, 40: {**FF5, "threshold_db": -14.0}}}, "ff5")


def _opto_map() -> KnobMap:
    from tests.neural.test_opto_hybrid import OPTO_MAP
    return OPTO_MAP


def _renderer(tmp_path, head, conditioning, dsp="opto", path=True, layers=1, frame=32, backbone="s6"):
    torch.manual_seed(1)
    hp = {"s6": {"width": 8, "state": 3}, "lru": {"width": 8, "state": 4}}.get(backbone, {"hidden": 8})
    hp = {**hp, "layers": layers, "frame": frame}
    spec = model_spec(backbone, head, conditioning, hp, audio_path={"fir_taps": 8, "poles": 2} if path else None)
    model = build_model(spec)
    with torch.no_grad():   # a model whose output is neither the DSP's nor the input
        model.backbone.out_proj.weight.normal_(0.0, 0.05)
        model.backbone.out_proj.bias.normal_(0.0, 0.01)
        if path:
            model.audio_path.fir.add_(0.1 * torch.randn(8))
            model.audio_path.branch.fill_(-0.5)
            model.audio_path.shaper_base.fill_(-0.1)
    kmap = _opto_map() if dsp == "opto" else FF5_MAP
    variant = "blackbox" if head == "blackbox" else "hybrid"
    save_checkpoint(tmp_path / "m.pt", {"model": spec, "variant": variant, "sample_rate": SR,
                                        "param_map": kmap.to_record(), "state_dict": model.state_dict()})
    return NeuralRenderer.load(tmp_path / "m.pt")


def _signal(seconds: float, channels: int) -> np.ndarray:
    """Program material, loud enough to move the cell; a second channel later and quieter."""
    x = (0.5 * synthesize(seconds, SR, seed=7)).astype(np.float32)[None]
    assert np.abs(x).max() > 0.1
    return np.concatenate([x, 0.6 * np.roll(x, 91, 1)], 0) if channels == 2 else x


def _blocks(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes, total = [], 0
    while total < n:   # host sizes, odd ones, and longer blocks that take the modules
        sizes.append(int(rng.choice([1, 5, 31, 32, 64, 100, 256, MAX_BLOCK, MAX_BLOCK + 1, 1500])))
        total += sizes[-1]
    return sizes


def _stream(r, x, sizes, frozen: bool, setting):
    proc = r.block_processor(SR, setting)
    proc.frozen_ok = proc.frozen_ok and frozen
    out, i = [], 0
    for b in sizes:
        out.append(proc(x[:, i:i + b]))
        i += b
    return np.concatenate(out, 1), proc


@pytest.mark.parametrize("head, conditioning, dsp, path, layers", [
    ("hybrid_gain", "fitted+knobs", "opto", True, 1),    # the default model's form
    ("hybrid_gain", "fitted", "ff5", False, 2),
    ("blackbox", "knobs", "opto", True, 1),
    ("hybrid_gain", "fitted+knobs", "opto", True, "lstm"),   # the LSTM hybrid
    ("hybrid_gain", "fitted", "ff5", False, "lstm2"),
    ("hybrid_gain", "fitted+knobs", "opto", True, "lru2"),   # the LRU hybrid (the default backbone)
    ("blackbox", "knobs", "opto", True, "lru"),
])
@pytest.mark.parametrize("channels", [1, 2])
def test_frozen_blocks_equal_the_modules(tmp_path, head, conditioning, dsp, path, layers, channels):
    backbone = str(layers).rstrip("0123456789") or "s6"   # "lstm2": an LSTM of 2 layers; 1: an S6 of 1
    layers = int(str(layers)[len(backbone):] or 1) if backbone != "s6" else layers
    r = _renderer(tmp_path, head, conditioning, dsp, path, layers, backbone=backbone)
    assert supports(r.model)
    x = _signal(0.6, channels)
    setting = la2a_setting("limit", 70)
    sizes = _blocks(x.shape[1], channels)
    modules, _ = _stream(r, x, sizes, False, setting)
    frozen, proc = _stream(r, x, sizes, True, setting)
    assert proc.frozen is not None   # the frozen path ran
    np.testing.assert_array_equal(frozen, modules)
    # and it is the model: not the DSP output or the input unchanged, and the offline render
    offline = r.render_channels(x, SR, setting)
    np.testing.assert_allclose(frozen, offline, rtol=0, atol=1e-5)
    assert np.abs(frozen - x).max() > 1e-3
    # reset: the same signal again gives the same output
    proc.reset()
    again = np.concatenate([proc(x[:, i:i + 64]) for i in range(0, x.shape[1], 64)], 1)
    first, _ = _stream(r, x, [64] * -(-x.shape[1] // 64), True, setting)
    np.testing.assert_array_equal(again, first)


def test_models_it_does_not_cover_stream_through_the_modules(tmp_path):
    assert not supports(_renderer(tmp_path, "hybrid_gain", "fitted", backbone="lstm", frame=1).model)   # per sample
    r = _renderer(tmp_path, "hybrid_gain", "fitted", frame=1)
    assert not supports(r.model)
    x = _signal(0.1, 1)
    out, proc = _stream(r, x, [64] * -(-x.shape[1] // 64), True, la2a_setting("compress", 60))
    assert proc.frozen is None and np.isfinite(out).all()


def test_a_renderer_loaded_under_inference_mode_streams(tmp_path):
    r = _renderer(tmp_path, "hybrid_gain", "fitted+knobs")
    with torch.inference_mode():   # its weights are inference tensors: no version counters to key caches on
        loaded = NeuralRenderer.load(tmp_path / "m.pt")
    x = _signal(0.3, 1)
    setting = la2a_setting("limit", 70)
    sizes = _blocks(x.shape[1], 3)
    want, _ = _stream(r, x, sizes, True, setting)
    for frozen in (True, False):
        np.testing.assert_array_equal(_stream(loaded, x, sizes, frozen, setting)[0], want)


def test_a_stream_of_ever_changing_block_sizes_keeps_few_matrices(tmp_path):
    r = _renderer(tmp_path, "hybrid_gain", "fitted+knobs")
    x = _signal(0.2, 1)
    sizes = list(range(7, 300, 23))   # 13 lengths, each once
    frozen, proc = _stream(r, x, sizes, True, la2a_setting("compress", 80))
    np.testing.assert_array_equal(frozen, _stream(r, x, sizes, False, la2a_setting("compress", 80))[0])
    assert len(proc.frozen.matrices) <= 8
