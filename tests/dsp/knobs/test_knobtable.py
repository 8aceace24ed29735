"""The knob table of a manifest corpus: a fitted setting's parameters, the nearest
fitted setting's elsewhere (knobs scaled by their range), settings far outside refused."""
from __future__ import annotations

import pytest

from common.errors import UserError
from dsp.knobs.knobtable import KnobTable


def _p(threshold):
    return {"threshold_db": threshold, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0, "make_up_db": 0.0}


@pytest.fixture
def table():
    # release spans 50..1000 ms, threshold -40..-20 dB; "mode" is constant (0)
    return KnobTable(["threshold", "release", "mode"], [
        ({"threshold": -40, "release": 50, "mode": 0}, _p(-41)),
        ({"threshold": -20, "release": 50, "mode": 0}, _p(-21)),
        ({"threshold": -40, "release": 1000, "mode": 0}, _p(-42)),
        ({"threshold": -40, "release": 50, "mode": 0}, _p(-99)),   # a repeated setting keeps the first fit
    ])


def test_fitted_setting_and_nearest(table):
    assert table.at({"threshold": -40, "release": 50, "mode": 0})["threshold_db"] == -41
    assert table.has({"threshold": -20, "release": 50, "mode": 0})
    assert not table.has({"threshold": -30, "release": 50, "mode": 0})
    # distances in units of each knob's range (threshold 20 dB, release 950 ms)
    assert table.at({"threshold": -38, "release": 300, "mode": 0})["threshold_db"] == -41
    assert table.at({"threshold": -24, "release": 100, "mode": 0})["threshold_db"] == -21
    # leave-one-out: the nearest other setting
    assert table.at_without({"threshold": -40, "release": 50, "mode": 0})["threshold_db"] in (-21, -42)


def test_far_and_mismatched_settings_are_refused(table):
    with pytest.raises(UserError, match="release = 3000 lies far outside"):
        table.at({"threshold": -30, "release": 3000, "mode": 0})
    table.check({"threshold": -30, "release": 1200, "mode": 0.3})   # near enough (constant knob: scale 1)
    with pytest.raises(UserError, match="mode"):
        table.check({"threshold": -30, "release": 100, "mode": 2})
    with pytest.raises(UserError, match="missing mode"):
        table.at({"threshold": -30, "release": 100})
    with pytest.raises(UserError, match="unknown ratio"):
        table.at({"threshold": -30, "release": 100, "mode": 0, "ratio": 2})


def test_record_round_trip(table):
    again = KnobTable.from_record(table.to_record())
    assert again.knobs == table.knobs and again.table == table.table
    assert len(again.settings()) == 3
