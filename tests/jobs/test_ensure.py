"""The one "ensure the DSP fit": an existing map is read as it is, a missing one is an
error when fitting is off (nothing is fitted or written)."""
from __future__ import annotations

import pytest

from audio.manifest import ManifestRow
from common.config import load_config
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from jobs.ensure import ensure_dsp_fit

PARAMS = {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0, "make_up_db": 0.0}


def test_an_existing_chain_is_read_not_refitted(tmp_path):
    protocol = {"method": "per_level", "fit_splits": ["Train"], "held_out": [], "fitted": {"compress": [40, 100]}}
    kmap = KnobMap({"compress": {100: PARAMS, 40: {**PARAMS, "ratio": 2.0}}}, "ff5", protocol)
    kmap.save(tmp_path / "knobmap.yaml")
    got = ensure_dsp_fit(load_config("config", []).data, tmp_path, fit=False)
    assert isinstance(got, KnobMap) and got.table == kmap.table and got.protocol == protocol


def test_missing_chain_without_fitting_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no DSP chain; run `python train_comp.py"):
        ensure_dsp_fit(load_config("config", []).data, tmp_path / "nothing", fit=False)
    assert not (tmp_path / "nothing").exists()


def test_missing_take_fits_without_fitting_is_an_error(tmp_path):
    takes = [ManifestRow(2, "Train", tmp_path / "in.wav", tmp_path / "out.wav", {"threshold": -20.0})]
    data = load_config("config", ["data=manifest", f"data.path={tmp_path / 'm.csv'}"]).data
    with pytest.raises(UserError, match="no DSP fit of manifest line 2"):
        ensure_dsp_fit(data, tmp_path / "fits", takes, fit=False)
    assert not (tmp_path / "fits").exists()


def test_a_fit_of_half_takes_is_refused_where_whole_takes_are_wanted(tmp_path):
    """A fold of crossfit=true (data.fit_span) is not the DSP fit of a hybrid or a comparison."""
    protocol = {"method": "per_level", "fit_splits": ["Train"], "held_out": [], "fitted": {"compress": [40, 100]},
                "fit_span": [0.0, 0.5]}
    KnobMap({"compress": {100: PARAMS, 40: {**PARAMS, "ratio": 2.0}}}, "ff5", protocol).save(tmp_path / "knobmap.yaml")
    with pytest.raises(UserError, match="fitted on part of each take"):
        ensure_dsp_fit(load_config("config", []).data, tmp_path, fit=False, compressor="ff5")
    half = load_config("config", ["data.fit_span=[0.0,0.5]"]).data
    assert ensure_dsp_fit(half, tmp_path, fit=False, compressor="ff5").protocol == protocol
