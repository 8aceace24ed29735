"""The model-class registry: records name their class, parameters know theirs, rendering follows it."""
from __future__ import annotations

import math

import numpy as np
import pytest

from audio.material import synthesize
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from dsp.models.classes import (MODEL_CLASSES, ModelParams, class_of, model_class, params_of, processor,
                                record_class, render)
from dsp.models.ff5_streaming import render as render_ff5
from dsp.models.graybox import GRAYBOX_NAMES
from dsp.models.graybox_streaming import render as render_graybox
from dsp.models.parameters import PARAM_NAMES
from dsp.storage.open_fit import load_param_map
from dsp.storage.records import load_checkpoint, save_checkpoint

FIVE = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 120.0, "make_up_db": 2.0}
GB = {**FIVE, "input_highpass_hz": 40.0, "input_shelf_hz": 6000.0, "input_shelf_db": -6.0,
      "tube_drive": 1.5, "tube_asymmetry": 0.25, "output_highpass_hz": 25.0}
RECORD = {"esr": 0.01, "loss": 1.0, "iterations": 3, "converged": True, "seconds": 1.0, "sample_rate": 44100}


def test_the_registry_names_every_class_and_its_parameters():
    assert set(MODEL_CLASSES) >= {"ff5", "graybox"}
    assert model_class("ff5").param_names == PARAM_NAMES and model_class("graybox").param_names == GRAYBOX_NAMES
    with pytest.raises(ValueError, match="unknown model class 'ff6'"):
        model_class("ff6")


def test_a_record_is_read_by_the_class_it_names_never_by_its_keys():
    assert record_class({"compressor": "graybox"}, "r").name == "graybox"
    with pytest.raises(ValueError, match="r: names no model class"):
        record_class({"params": GB}, "r")        # eleven gray-box keys do not make it a gray-box
    with pytest.raises(ValueError, match="r: unknown model class 'gray-box'"):
        record_class({"compressor": "gray-box"}, "r")


def test_check_refuses_missing_extra_and_impossible_parameters():
    gb = params_of("graybox", GB)
    assert isinstance(gb, ModelParams) and gb.model_class == "graybox" and gb == GB
    with pytest.raises(ValueError, match="graybox parameters lack tube_drive"):
        params_of("graybox", {k: v for k, v in GB.items() if k != "tube_drive"})
    with pytest.raises(ValueError, match="input_highpass_hz, .* are not a parameter of ff5"):
        params_of("ff5", GB)
    for bad, words in (({"ratio": 0.5}, "ratio = 0.5"), ({"attack_ms": -5.0}, "attack_ms = -5"),
                       ({"attack_ms": 0.0}, "attack_ms = 0"), ({"ratio": float("nan")}, "non-finite"),
                       ({"ratio": "abc"}, "non-numeric"), ({"threshold_db": True}, "non-numeric")):
        with pytest.raises(ValueError, match=words):
            params_of("ff5", {**FIVE, **bad})


def test_checkpoint_round_trip_and_refusals(tmp_path):
    path = tmp_path / "ckpt.yaml"
    save_checkpoint(path, {**RECORD, "compressor": "graybox", "params": GB})
    back = load_checkpoint(path)
    assert back["compressor"] == "graybox" and back["params"].model_class == "graybox"
    assert list(back["params"]) == list(GRAYBOX_NAMES) and back["params"] == pytest.approx(GB)
    text = path.read_text()
    for edit, words in ((lambda s: s.replace("compressor: graybox\n", ""), "names no model class"),
                        (lambda s: s.replace("compressor: graybox", "compressor: greybox"), "unknown model class"),
                        (lambda s: s.replace("  tube_drive: 1.5\n", ""), "graybox parameters lack tube_drive"),
                        (lambda s: s.replace("tube_asymmetry: 0.25", "tube_asymmetry: 3.0"), "tube_asymmetry")):
        path.write_text(edit(text))
        with pytest.raises(UserError, match=words):
            load_checkpoint(path)


def test_knobmap_interpolates_block_parameters(tmp_path):
    low = {**GB, "input_highpass_hz": 10.0, "tube_drive": 1.0, "input_shelf_db": -8.0}
    high = {**GB, "input_highpass_hz": 40.0, "tube_drive": 3.0, "input_shelf_db": -2.0}
    kmap = KnobMap({"compress": {40: low, 60: high}}, "graybox")
    mid = kmap.at({"mode": "compress", "peak_reduction": 50})
    assert list(mid) == list(GRAYBOX_NAMES) and mid.model_class == "graybox"
    assert mid["input_highpass_hz"] == pytest.approx(20.0)       # linear in log frequency
    assert mid["tube_drive"] == pytest.approx(2.0)                # linear
    assert mid["input_shelf_db"] == pytest.approx(-5.0)
    path = tmp_path / "knobmap.yaml"
    kmap.save(path)
    assert "compressor: graybox" in path.read_text()
    assert load_param_map(path).at({"mode": "compress", "peak_reduction": 50}) == pytest.approx(mid)
    five = KnobMap({"compress": {40: FIVE, 60: FIVE}}, "ff5")
    assert list(five.at({"mode": "compress", "peak_reduction": 50})) == list(PARAM_NAMES)
    with pytest.raises(KeyError):
        KnobMap({"compress": {40: FIVE}}, "graybox")              # five parameters are not a gray-box's


def test_rendering_follows_the_parameters_class():
    sr = 8000
    x = synthesize(0.5, sr, seed=3).astype(np.float64)
    gb = params_of("graybox", {**GB, "input_shelf_hz": 2500.0})
    assert np.array_equal(render(x, sr, gb), render_graybox(x, sr, gb))
    assert np.array_equal(render(x, sr, FIVE), render_ff5(x, sr, FIVE))   # a plain dict of exactly ff5's keys
    proc = processor(gb, sr)
    streamed = np.concatenate([proc.process(x[None, i:i + 100]) for i in range(0, x.size, 100)], axis=1)[0]
    assert np.allclose(streamed, render_graybox(x, sr, gb), atol=1e-12)
    assert not math.isclose(float(np.abs(render(x, sr, gb) - render(x, sr, FIVE)).max()), 0.0)
    with pytest.raises(ValueError, match="no model class's set"):
        class_of({k: v for k, v in GB.items() if k != "tube_drive"})   # never silently the five-parameter model
    with pytest.raises(ValueError, match="sample rate"):
        render(x, -8000, FIVE)
