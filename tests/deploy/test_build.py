"""deploy.build: what a source is, both DSP classes (ff5, graybox), and refusing what the modules cannot hold."""
from __future__ import annotations

import pytest
import yaml

from common.errors import UserError
from deploy.build import build, resolve_source
from deploy.verify import max_difference
from dsp.storage.records import save_checkpoint
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable

P = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 2.0}
RECORD = {"compressor": "ff5", "esr": 0.01, "loss": 0.01, "iterations": 3, "converged": True, "seconds": 1.0, "sample_rate": 44100}
BLOCKS = {"input_highpass_hz": 25.0, "input_shelf_hz": 9000.0, "input_shelf_db": -6.0, "tube_drive": 2.5,
          "tube_asymmetry": 0.3, "output_highpass_hz": 12.0}
TABLE = KnobTable(["drive", "tone"], [({"drive": 0.0, "tone": 1.0}, P), ({"drive": 5.0, "tone": 1.0}, {**P, "ratio": 6.0})])


def _build(path):
    return build(*resolve_source(path))


def test_kinds(tmp_path):
    save_checkpoint(tmp_path / "ckpt.yaml", {"params": P, **RECORD})
    KnobMap({"compress": {50: P}}, "ff5").save(tmp_path / "knobmap.yaml")
    TABLE.save(tmp_path / "knobtable.yaml")
    assert resolve_source(tmp_path / "ckpt.yaml")[:2] == ("fit", tmp_path / "ckpt.yaml")
    assert resolve_source(tmp_path / "knobmap.yaml")[:2] == ("knobmap", tmp_path / "knobmap.yaml")
    assert resolve_source(tmp_path / "knobtable.yaml")[:2] == ("knobtable", tmp_path / "knobtable.yaml")
    assert resolve_source(tmp_path)[0] == "knobmap"  # a chain folder first


def test_knobtable_file_builds_and_matches(tmp_path):
    TABLE.save(tmp_path / "knobtable.yaml")
    ex = _build(tmp_path / "knobtable.yaml")
    assert ex.knobs == ("drive", "tone") and len(ex.settings) >= 3
    assert max_difference(ex.module, ex, seconds=0.1) < 1e-6


def test_graybox_fit_and_knob_map_build_and_match(tmp_path):
    """Both gray-box sources become gray-box modules that equal StreamingGraybox (the blocks kept)."""
    from deploy.graybox import FixedGraybox, KnobMapGraybox
    gray = {**P, **BLOCKS}
    save_checkpoint(tmp_path / "ckpt.yaml", {"params": gray, **RECORD, "compressor": "graybox"})
    ex = _build(tmp_path / "ckpt.yaml")
    assert isinstance(ex.module, FixedGraybox) and "graybox" in ex.description
    assert max_difference(ex.module, ex, seconds=0.1) < 1e-6
    KnobMap({"compress": {40: gray, 100: {**gray, "tube_drive": 0.5}}, "limit": {70: gray}}, "graybox").save(tmp_path / "km.yaml")
    ex = _build(tmp_path / "km.yaml")
    assert isinstance(ex.module, KnobMapGraybox) and ex.description.startswith("graybox knob map")
    assert max_difference(ex.module, ex, seconds=0.1) < 1e-6


def test_parameters_a_module_cannot_hold_are_refused(tmp_path):
    """Unknown parameters, a gray-box record without its blocks, and a gray-box knob table are refused by name."""
    path = tmp_path / "ckpt.yaml"
    path.write_text(yaml.safe_dump({"kind": "dsp-compressor", "params": {**P, "drive_db": 3.0, "hp_hz": 30.0},
                                    **RECORD}))
    with pytest.raises(UserError, match="drive_db, hp_hz are not a parameter of ff5"):
        _build(path)
    kmap = tmp_path / "knobmap.yaml"
    kmap.write_text(yaml.safe_dump({"kind": "knobmap", "compressor": "graybox", "modes": {"compress": {50: P}}}))
    with pytest.raises(UserError, match="knobmap.yaml: compress PR 50: graybox parameters lack input_highpass_hz"):
        _build(kmap)
    table = tmp_path / "knobtable.yaml"
    table.write_text(yaml.safe_dump({"kind": "knobtable", "compressor": "graybox", "knobs": ["drive"],
                                     "settings": [{"knobs": {"drive": 1.0}, "params": {**P, **BLOCKS}}]}))
    with pytest.raises(UserError, match="a graybox knob table has no exported form"):
        _build(table)


def test_manifest_folder_with_mixed_knobs_is_refused(tmp_path):
    for i, knobs in enumerate(({"drive": 1.0, "tone": 1.0}, {"drive": 1.0, "level": 2.0})):
        (tmp_path / "rows" / f"{i:04d}_t").mkdir(parents=True)
        save_checkpoint(tmp_path / "rows" / f"{i:04d}_t" / "ckpt.yaml", {"params": P, **RECORD, "knobs": knobs})
    with pytest.raises(UserError, match="knobs drive, level differ from drive, tone"):
        resolve_source(tmp_path)
