"""The parameter-map interface: both kinds answer at a setting, leave one out, subset,
and come back from a file or a record of their own kind."""
from __future__ import annotations

import pytest

from audio.devices import LA2A, KnobDevice, la2a_setting
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable
from dsp.knobs.parammap import ParamMap
from dsp.storage.open_fit import load_param_map, param_map_from_record


def _p(threshold, ratio=4.0):
    return {"threshold_db": threshold, "ratio": ratio, "attack_ms": 5.0, "release_ms": 100.0, "make_up_db": 0.0}


@pytest.fixture
def kmap():
    return KnobMap({"compress": {40: _p(-10.0), 70: _p(-20.0), 100: _p(-30.0)}}, "ff5")


@pytest.fixture
def table():
    return KnobTable(["threshold", "ratio"], [({"threshold": -40, "ratio": 2}, _p(-41)),
                                              ({"threshold": -20, "ratio": 2}, _p(-21)),
                                              ({"threshold": -20, "ratio": 8}, _p(-22))])


def test_both_kinds_share_the_interface(kmap, table):
    for pm in (kmap, table):
        assert isinstance(pm, ParamMap)
        for setting in pm.settings():
            pm.check(setting)
    assert kmap.device == LA2A and kmap.knobs == ["mode", "peak_reduction"]
    assert table.device == KnobDevice(["threshold", "ratio"])
    assert kmap.settings()[0] == la2a_setting("compress", 40)


def test_leave_one_out(kmap, table):
    # interpolated from 40 and 100 without 70: halfway
    assert kmap.at_without(la2a_setting("compress", 70))["threshold_db"] == pytest.approx(-20.0)
    assert kmap.at(la2a_setting("compress", 70))["threshold_db"] == -20.0
    kmap2 = KnobMap({"compress": {40: _p(-10.0), 100: _p(-30.0)}}, "ff5")
    assert kmap2.at_without(la2a_setting("compress", 40))["threshold_db"] == -30.0
    assert table.at_without({"threshold": -20, "ratio": 2})["threshold_db"] in (-41, -22)
    assert table.at({"threshold": -20, "ratio": 2})["threshold_db"] == -21


def test_subset(kmap, table):
    assert kmap.subset(lambda s: s["peak_reduction"] != 70).levels("compress") == [40, 100]
    small = table.subset(lambda s: s["ratio"] == 2)
    assert len(small.settings()) == 2 and isinstance(small, KnobTable)


def test_files_and_records_dispatch_on_kind(tmp_path, kmap, table):
    for pm, name in ((kmap, "knobmap.yaml"), (table, "knobtable.yaml")):
        pm.save(tmp_path / name)
        back = load_param_map(tmp_path / name)
        assert type(back) is type(pm) and back.settings() == pm.settings()
        assert type(param_map_from_record(pm.to_record())) is type(pm)
    with pytest.raises(UserError, match="expected a knobmap"):
        load_param_map(tmp_path / "knobtable.yaml", "knobmap")


def test_check_refuses_what_was_not_fitted(kmap, table):
    with pytest.raises(UserError, match="where: has no 'limit' mode"):
        kmap.check(la2a_setting("limit", 50), "where")
    with pytest.raises(UserError, match="outside 0..100"):
        kmap.check(la2a_setting("compress", 120))
    with pytest.raises(UserError, match="here: knob ratio = 80 lies far outside"):
        table.check({"threshold": -30, "ratio": 80}, "here")
    with pytest.raises(UserError, match="here: .*missing ratio"):
        table.check({"threshold": -30}, "here")
