"""The two DSP model classes through checkpoints, knob maps and rendering."""
from __future__ import annotations

import math

import numpy as np
import pytest

from audio.material import synthesize
from common.errors import UserError
from dsp.storage.records import load_checkpoint, save_checkpoint
from dsp.models.graybox import GRAYBOX_NAMES
from dsp.models.graybox_streaming import render as render_graybox
from dsp.models.classes import kind_of, render_any, renderer_for
from dsp.knobs.knobmap import KnobMap
from dsp.models.parameters import PARAM_NAMES
from dsp.models.ff5_streaming import render as render_ff5

FIVE = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 120.0, "make_up_db": 2.0}
GB = {**FIVE, "input_highpass_hz": 40.0, "input_shelf_hz": 6000.0, "input_shelf_db": -6.0,
      "tube_drive": 1.5, "tube_asymmetry": 0.25, "output_highpass_hz": 25.0}


def test_kind_follows_the_keys():
    assert kind_of(FIVE) == "ff5" and kind_of(GB) == "graybox"


def test_checkpoint_round_trip_and_block_validation(tmp_path):
    path = tmp_path / "ckpt.yaml"
    record = {"params": GB, "esr": 0.01, "loss": 1.0, "iterations": 3, "converged": True, "seconds": 1.0,
              "sample_rate": 44100}
    save_checkpoint(path, record)
    back = load_checkpoint(path)
    assert back["compressor"] == "graybox" and list(back["params"]) == list(GRAYBOX_NAMES)
    assert back["params"] == pytest.approx(GB)
    save_checkpoint(path, {**record, "params": FIVE})
    assert load_checkpoint(path)["compressor"] == "ff5"
    text = path.read_text().replace("compressor: ff5", "compressor: graybox")
    path.write_text(text)
    with pytest.raises(UserError, match="params lack input_highpass_hz"):
        load_checkpoint(path)
    save_checkpoint(path, {**record, "params": {**GB, "tube_asymmetry": 3.0}})
    with pytest.raises(UserError, match="tube_asymmetry"):
        load_checkpoint(path)


def test_knobmap_interpolates_block_parameters(tmp_path):
    low = {**GB, "input_highpass_hz": 10.0, "tube_drive": 1.0, "input_shelf_db": -8.0}
    high = {**GB, "input_highpass_hz": 40.0, "tube_drive": 3.0, "input_shelf_db": -2.0}
    kmap = KnobMap({"compress": {40: low, 60: high}})
    mid = kmap.at({"mode": "compress", "peak_reduction": 50})
    assert list(mid) == list(GRAYBOX_NAMES)
    assert mid["input_highpass_hz"] == pytest.approx(20.0)       # linear in log frequency
    assert mid["tube_drive"] == pytest.approx(2.0)                # linear
    assert mid["input_shelf_db"] == pytest.approx(-5.0)
    path = tmp_path / "knobmap.yaml"
    kmap.save(path)
    assert "compressor: graybox" in path.read_text()
    assert KnobMap.load(path).at({"mode": "compress", "peak_reduction": 50}) == pytest.approx(mid)
    five = KnobMap({"compress": {40: FIVE, 60: FIVE}})
    assert list(five.at({"mode": "compress", "peak_reduction": 50})) == list(PARAM_NAMES)
    assert five.compressor == "ff5"


def test_rendering_dispatches_on_the_parameters():
    sr = 8000
    x = synthesize(0.5, sr, seed=3).astype(np.float64)
    gb = {**GB, "input_shelf_hz": 2500.0}
    assert np.array_equal(render_any(x, sr, gb), render_graybox(x, sr, gb))
    assert np.array_equal(render_any(x, sr, FIVE), render_ff5(x, sr, FIVE))
    proc = renderer_for(gb, sr)
    streamed = np.concatenate([proc.process(x[None, i:i + 100]) for i in range(0, x.size, 100)], axis=1)[0]
    assert np.allclose(streamed, render_graybox(x, sr, gb), atol=1e-12)
    assert not math.isclose(float(np.abs(render_any(x, sr, gb) - render_any(x, sr, FIVE)).max()), 0.0)
