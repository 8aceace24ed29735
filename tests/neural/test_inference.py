"""NeuralRenderer: self-contained checkpoints, streaming equals offline, clean failures."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.devices import la2a_setting
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from dsp.models.ff5_streaming import render
from neural.checkpoint import build_model, model_spec, save_checkpoint
from neural.inference import NeuralRenderer

SR = 44100
PARAMS = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
KNOBMAP = KnobMap({"compress": {100: PARAMS, 40: {**PARAMS, "threshold_db": -12.0, "ratio": 3.0}},
                   "limit": {100: {**PARAMS, "ratio": 8.0}, 40: {**PARAMS, "threshold_db": -14.0}}}, "ff5")
CASES = [("s6", "hybrid", "hybrid_gain", "fitted"), ("s6", "hybrid", "hybrid_add", "fitted"),
         ("lstm", "hybrid", "hybrid_gain", "fitted"), ("s6", "blackbox", "blackbox", "knobs"),
         ("lstm", "blackbox", "blackbox", "knobs")]


def _signal(seconds=0.3, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    env = 0.05 + 0.6 * (np.sin(2 * np.pi * 3 * np.arange(n) / SR) > 0)
    return (env * rng.standard_normal(n) * 0.5).astype(np.float32)


def _checkpoint(path, backbone, variant, head, conditioning, seed=0):
    torch.manual_seed(seed)
    hp = {"width": 8, "state": 3} if backbone == "s6" else {"hidden": 8}
    spec = model_spec(backbone, head, conditioning, {**hp, "level_feature": True})
    model = build_model(spec)
    with torch.no_grad():  # a model whose output is not just the DSP's or the input
        model.backbone.out_proj.weight.normal_(0.0, 0.05)
        model.backbone.out_proj.bias.normal_(0.0, 0.01)
    save_checkpoint(path, {"model": spec, "variant": variant, "sample_rate": SR, "param_map": KNOBMAP.to_record(),
                           "state_dict": model.state_dict(), "config": {"seed": seed}})
    return path


@pytest.mark.parametrize("backbone, variant, head, conditioning", CASES)
def test_streaming_equals_offline(tmp_path, backbone, variant, head, conditioning):
    r = NeuralRenderer.load(_checkpoint(tmp_path / "m.pt", backbone, variant, head, conditioning))
    assert r.variant == variant and r.head == head and r.name == f"{backbone} {variant}"
    assert 100 < r.num_parameters < 10000
    x = _signal()
    offline = r.render(x, SR, la2a_setting("limit", 65))
    assert offline.shape == x.shape and offline.dtype == np.float32 and np.isfinite(offline).all()
    for block in (1000, 4093):
        proc = r.block_processor(SR, la2a_setting("limit", 65))
        parts = [proc(x[None, i:i + block])[0] for i in range(0, len(x), block)]
        np.testing.assert_allclose(np.concatenate(parts), offline, rtol=0, atol=1e-5)
    # stereo: the channels run as a batch on a linked DSP gain; equal channels give the mono result
    proc = r.block_processor(SR, la2a_setting("limit", 65))
    stereo = np.concatenate([proc(np.stack([x, x])[:, i:i + 2048]) for i in range(0, len(x), 2048)], axis=1)
    np.testing.assert_allclose(stereo[0], offline, atol=1e-5)
    np.testing.assert_allclose(stereo[1], offline, atol=1e-5)
    # the knobs matter
    assert np.abs(r.render(x, SR, la2a_setting("compress", 65)) - offline).max() > 1e-4


def test_hybrid_gain_is_the_dsp_model_corrected(tmp_path):
    r = NeuralRenderer.load(_checkpoint(tmp_path / "m.pt", "s6", "hybrid", "hybrid_gain", "fitted"))
    x = _signal()
    x[: SR // 10] = 0.0
    y = r.render(x, SR, la2a_setting("compress", 70))
    assert np.all(y[: SR // 10] == 0.0)  # silence stays silent
    y_dsp = render(x, SR, KNOBMAP.at(la2a_setting("compress", 70)))
    ratio_db = 20 * np.log10(np.abs(y[SR // 10:]) / np.maximum(np.abs(y_dsp[SR // 10:]), 1e-12) + 1e-12)
    assert np.median(np.abs(ratio_db)) < 6.0  # a correction of the DSP output, not another signal
    # an untrained hybrid (zero output layer) is exactly the DSP model
    torch.manual_seed(0)
    spec = model_spec("s6", "hybrid_gain", "fitted", {"width": 8})
    save_checkpoint(tmp_path / "zero.pt", {"model": spec, "variant": "hybrid", "sample_rate": SR,
                                           "param_map": KNOBMAP.to_record(),
                                           "state_dict": build_model(spec).state_dict()})
    y0 = NeuralRenderer.load(tmp_path / "zero.pt").render(x, SR, la2a_setting("compress", 70))
    np.testing.assert_allclose(y0, y_dsp, rtol=1e-5, atol=1e-6)


def test_bad_settings_and_rates(tmp_path):
    r = NeuralRenderer.load(_checkpoint(tmp_path / "m.pt", "s6", "hybrid", "hybrid_gain", "fitted"))
    x = _signal(0.05)
    with pytest.raises(UserError, match="48000 Hz"):   # streaming needs the model's rate
        r.block_processor(48000, la2a_setting("compress", 50))
    with pytest.raises(UserError, match="mode"):
        r.block_processor(SR, la2a_setting("squash", 50))
    with pytest.raises(UserError, match="outside 0..100"):
        r.render(x, SR, la2a_setting("compress", 120))
    with pytest.raises(UserError, match="NaN"):
        r.render(np.full(100, np.nan, np.float32), SR, la2a_setting("compress", 50))


@pytest.mark.parametrize("content", ["garbage", "truncated", "yaml", "other_dict", "bad_weights", "missing"])
def test_bad_checkpoints(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "truncated":
        good = _checkpoint(tmp_path / "good.pt", "s6", "hybrid", "hybrid_gain", "fitted").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif content == "yaml":
        path.write_text("kind: dsp-compressor\nparams: {}\n")
    elif content == "other_dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif content == "bad_weights":
        _checkpoint(path, "s6", "hybrid", "hybrid_gain", "fitted")
        data = torch.load(path, weights_only=True)
        data["model"]["hyperparameters"]["width"] = 12
        torch.save(data, path)
    with pytest.raises(UserError, match="bad.pt"):
        NeuralRenderer.load(path)


def test_format_1_checkpoints_still_load(tmp_path):
    """An LA-2A checkpoint of format 1 (a ``knobmap`` table, no ``param_map``) renders as
    the same model written in the current format."""
    new = _checkpoint(tmp_path / "new.pt", "s6", "hybrid", "hybrid_gain", "fitted")
    data = torch.load(new, weights_only=True)
    record = KNOBMAP.to_record()
    data.pop("param_map")
    data.update(format=1, knobmap=record["modes"])
    torch.save(data, tmp_path / "old.pt")
    x = _signal(0.1)
    old_r = NeuralRenderer.load(tmp_path / "old.pt")
    assert old_r.param_map.table == KNOBMAP.table
    np.testing.assert_array_equal(old_r.render(x, SR, la2a_setting("limit", 65)),
                                  NeuralRenderer.load(new).render(x, SR, la2a_setting("limit", 65)))


@pytest.mark.parametrize("variant, head, conditioning", [("hybrid", "hybrid_gain", "fitted"),
                                                         ("blackbox", "blackbox", "knobs")])
def test_audio_path_checkpoints_rebuild_and_stream_exactly(tmp_path, variant, head, conditioning):
    torch.manual_seed(0)
    hp = {"width": 8, "state": 3, "frame": 32}
    spec = model_spec("s6", head, conditioning, hp, audio_path={"fir_taps": 8, "poles": 2})
    assert spec["audio_path"] == {"shaper": True, "fir_taps": 8, "poles": 2, "pole_hz": [2.0, 200.0]}
    model = build_model(spec)
    with torch.no_grad():
        model.backbone.out_proj.weight.normal_(0.0, 0.05)
        model.audio_path.fir.add_(0.1 * torch.randn(8))
        model.audio_path.branch.fill_(-0.5)
        model.audio_path.shaper_base.fill_(-0.1)
    save_checkpoint(tmp_path / "m.pt", {"model": spec, "variant": variant, "sample_rate": SR,
                                        "param_map": KNOBMAP.to_record(), "state_dict": model.state_dict()})
    r = NeuralRenderer.load(tmp_path / "m.pt")
    assert r.model.audio_path is not None and r.model.audio_path.fir_taps == 8
    x = _signal()
    setting = la2a_setting("limit", 65)
    offline = r.render(x, SR, setting)
    with torch.no_grad():
        xt = torch.from_numpy(x)[None]
        direct = model(xt, None, None, torch.from_numpy(r.conditioning(setting))[None]) if variant == "blackbox" \
            else None
    if direct is not None:
        np.testing.assert_allclose(offline, direct[0].numpy(), atol=1e-6)
    for block in (256, 1000):
        proc = r.block_processor(SR, setting)
        parts = [proc(x[None, i:i + block])[0] for i in range(0, len(x), block)]
        np.testing.assert_allclose(np.concatenate(parts), offline, rtol=0, atol=1e-5)


def test_specs_without_an_audio_path_build_the_model_as_before(tmp_path):
    spec = model_spec("s6", "hybrid_gain", "fitted", {"width": 8, "state": 3, "frame": 32})
    assert "audio_path" not in spec and model_spec("s6", "hybrid_gain", "fitted", {}, audio_path=None) == \
        model_spec("s6", "hybrid_gain", "fitted", {})
    model = build_model(spec)
    assert model.audio_path is None
    assert not any(k.startswith("audio_path") for k in model.state_dict())
    # weights of a model with the path do not load into its spec without it: a clear error
    with_path = build_model({**spec, "audio_path": {"fir_taps": 4}})
    save_checkpoint(tmp_path / "bad.pt", {"model": spec, "variant": "hybrid", "sample_rate": SR,
                                          "param_map": KNOBMAP.to_record(), "state_dict": with_path.state_dict()})
    with pytest.raises(UserError, match="do not fit the model"):
        NeuralRenderer.load(tmp_path / "bad.pt")


def test_render_at_another_rate_resamples(tmp_path):
    """48 kHz stereo renders through a 44.1 kHz model: length kept, equal channels equal,
    and the result is the 44.1 kHz render of the same material (resampled), away from the edges."""
    from scipy.signal import butter, resample_poly, sosfiltfilt
    r = NeuralRenderer.load(_checkpoint(tmp_path / "m.pt", "s6", "hybrid", "hybrid_gain", "fitted"))
    setting = la2a_setting("compress", 65)
    x44 = _signal(0.5)
    x48 = resample_poly(x44, 160, 147).astype(np.float32)
    y48 = r.render_channels(np.stack([x48, x48]), 48000, setting)
    assert y48.shape == (2, len(x48)) and y48.dtype == np.float32
    np.testing.assert_allclose(y48[0], y48[1], atol=1e-5)
    # the reference: the same band-limited material rendered at the model's rate (white noise
    # loses its top ~1 kHz in the resampler's transition band, on the way in)
    y44 = r.render(resample_poly(x48, 147, 160).astype(np.float32), SR, setting)
    back = resample_poly(y48[0], 147, 160)[: len(y44)]
    mid = slice(SR // 10, len(y44) - SR // 10)
    audible = butter(8, 18000, fs=SR, output="sos")   # the resamplers' transition bands left out
    diff = sosfiltfilt(audible, back - y44)[mid]
    err = np.sum(diff ** 2) / np.sum(sosfiltfilt(audible, y44)[mid] ** 2)
    assert err < 1e-3, err
    done = []
    r.render_channels(x48[None], 48000, setting, block=4096, progress=done.append)
    assert done and done[-1] == 1.0 and done == sorted(done)
