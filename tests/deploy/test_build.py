"""deploy.build: what a source is, and refusing what the modules cannot hold (other compressor kinds)."""
from __future__ import annotations

import pytest
import yaml

from common.errors import UserError
from deploy.build import build, resolve_source
from deploy.verify import max_difference
from dsp.checkpoint import save_checkpoint
from dsp.knobmap import KnobMap
from dsp.knobtable import KnobTable

P = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 2.0}
RECORD = {"esr": 0.01, "loss": 0.01, "iterations": 3, "converged": True, "seconds": 1.0, "sample_rate": 44100}
TABLE = KnobTable(["drive", "tone"], [({"drive": 0.0, "tone": 1.0}, P), ({"drive": 5.0, "tone": 1.0}, {**P, "ratio": 6.0})])


def test_kinds(tmp_path):
    save_checkpoint(tmp_path / "ckpt.yaml", {"params": P, **RECORD})
    KnobMap({"compress": {50: P}}).save(tmp_path / "knobmap.yaml")
    TABLE.save(tmp_path / "knobtable.yaml")
    assert resolve_source(tmp_path / "ckpt.yaml") == ("fit", tmp_path / "ckpt.yaml")
    assert resolve_source(tmp_path / "knobmap.yaml") == ("knobmap", tmp_path / "knobmap.yaml")
    assert resolve_source(tmp_path / "knobtable.yaml") == ("knobtable", tmp_path / "knobtable.yaml")
    assert resolve_source(tmp_path)[0] == "knobmap"  # a chain folder first


def test_knobtable_file_builds_and_matches(tmp_path):
    TABLE.save(tmp_path / "knobtable.yaml")
    ex = build("knobtable", tmp_path / "knobtable.yaml")
    assert ex.knobs == ("drive", "tone") and len(ex.settings) >= 3
    assert max_difference(ex.module, ex, seconds=0.1) < 1e-6


def test_graybox_params_are_refused_by_kind(tmp_path):
    """A fit whose params hold more than the five (a gray-box compressor) is not exported without its blocks."""
    path = tmp_path / "ckpt.yaml"
    path.write_text(yaml.safe_dump({"kind": "dsp-compressor", "params": {**P, "drive_db": 3.0, "hp_hz": 30.0},
                                    **RECORD}))
    with pytest.raises(UserError, match="graybox compressor cannot be exported.*drive_db, hp_hz"):
        build("fit", path)
    kmap = tmp_path / "knobmap.yaml"
    kmap.write_text(yaml.safe_dump({"kind": "knobmap", "compressor": "graybox", "modes": {"compress": {50: P}}}))
    with pytest.raises(UserError, match="knobmap.yaml: a fit of the graybox compressor"):
        build("knobmap", kmap)


def test_manifest_folder_with_mixed_knobs_is_refused(tmp_path):
    for i, knobs in enumerate(({"drive": 1.0, "tone": 1.0}, {"drive": 1.0, "level": 2.0})):
        (tmp_path / "rows" / f"{i:04d}_t").mkdir(parents=True)
        save_checkpoint(tmp_path / "rows" / f"{i:04d}_t" / "ckpt.yaml", {"params": P, **RECORD, "knobs": knobs})
    assert resolve_source(tmp_path) == ("knobtable", tmp_path)
    with pytest.raises(UserError, match="knobs drive, level differ from drive, tone"):
        build("knobtable", tmp_path)
