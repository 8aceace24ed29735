"""The knob map: exact at fitted levels, monotone between them for monotone fits, held
at the ends, threshold/make-up linear in dB, ratio linear in log-ratio; save/load."""
from __future__ import annotations

import math

import numpy as np
import pytest

from audio.devices import la2a_setting
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from dsp.storage.open_fit import load_param_map
from dsp.models.parameters import PARAM_NAMES

LEVELS = [40, 50, 60, 80, 100]


def _params(pr: float) -> dict:
    """Monotone in PR: more reduction (lower threshold, higher ratio, faster) at higher PR."""
    t = pr / 100.0
    return {"threshold_db": -10.0 - 30.0 * t, "ratio": 2.0 * 4.0 ** t, "attack_ms": 20.0 * 0.05 ** t,
            "release_ms": 80.0 + 400.0 * t ** 2, "make_up_db": 1.0 + 9.0 * t}


def _rows(levels=LEVELS, modes=("compress", "limit")) -> list[dict]:
    return [{"mode": m, "peak_reduction": pr, **_params(pr + (5 if m == "limit" else 0))}
            for m in modes for pr in levels]


@pytest.fixture
def kmap() -> KnobMap:
    return KnobMap.from_rows(_rows(), "ff5")


def test_levels_sorted_and_modes(kmap):
    assert kmap.modes == ["compress", "limit"]
    assert kmap.levels("compress") == sorted(LEVELS)


def test_exact_at_fitted_levels(kmap):
    for pr in LEVELS:
        got, want = kmap.at(la2a_setting("compress", pr)), _params(pr)
        assert list(got) == list(PARAM_NAMES)
        for k in PARAM_NAMES:
            assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12)


def test_monotone_between_levels(kmap):
    grid = np.linspace(40, 100, 241)
    table = {k: np.array([kmap.at(la2a_setting("compress", q))[k] for q in grid]) for k in PARAM_NAMES}
    assert np.all(np.diff(table["threshold_db"]) <= 0)
    assert np.all(np.diff(table["ratio"]) >= 0)
    assert np.all(np.diff(table["attack_ms"]) <= 0)
    assert np.all(np.diff(table["release_ms"]) >= 0)
    assert np.all(np.diff(table["make_up_db"]) >= 0)
    # and stays within the neighbouring fitted values (no overshoot)
    for lo, hi in zip(LEVELS[:-1], LEVELS[1:]):
        for q in np.linspace(lo, hi, 7):
            for k in PARAM_NAMES:
                a, b = sorted((_params(lo)[k], _params(hi)[k]))
                assert a - 1e-9 <= kmap.at(la2a_setting("compress", q))[k] <= b + 1e-9


def test_held_at_the_ends(kmap):
    assert kmap.at(la2a_setting("compress", 0)) == kmap.at(la2a_setting("compress", 40))
    assert kmap.at(la2a_setting("compress", 39.9)) == kmap.at(la2a_setting("compress", 40))
    with pytest.raises(UserError, match="outside 0..100"):   # past the knob is an error, not a hold
        kmap.at(la2a_setting("compress", 100.5))


def test_interpolation_laws():
    rows = [{"mode": "compress", "peak_reduction": 40, "threshold_db": -10.0, "ratio": 2.0, "attack_ms": 1.0,
             "release_ms": 100.0, "make_up_db": 0.0},
            {"mode": "compress", "peak_reduction": 60, "threshold_db": -30.0, "ratio": 8.0, "attack_ms": 4.0,
             "release_ms": 400.0, "make_up_db": 6.0}]
    km = KnobMap.from_rows(rows, "ff5")
    mid = km.at(la2a_setting("compress", 50))
    assert mid["threshold_db"] == pytest.approx(-20.0)              # linear in dB
    assert mid["make_up_db"] == pytest.approx(3.0)
    assert mid["ratio"] == pytest.approx(4.0)                       # linear in log-ratio
    assert mid["attack_ms"] == pytest.approx(2.0)                   # log-time (two points: linear in log)
    assert mid["release_ms"] == pytest.approx(200.0)
    q = km.at(la2a_setting("compress", 45))
    assert q["threshold_db"] == pytest.approx(-15.0)
    assert q["ratio"] == pytest.approx(2.0 * 4.0 ** 0.25)


def test_single_level_is_constant():
    km = KnobMap.from_rows(_rows(levels=[70], modes=("limit",)), "ff5")
    assert km.at(la2a_setting("limit", 10)) == km.at(la2a_setting("limit", 95)) == pytest.approx(_params(75))


def test_unknown_mode(kmap):
    km = KnobMap.from_rows(_rows(modes=("compress",)), "ff5")
    with pytest.raises(UserError, match="no 'limit' mode"):
        km.at(la2a_setting("limit", 50))


def test_subset(kmap):
    sparse = kmap.subset(lambda s: s["peak_reduction"] % 20 == 0)
    assert sparse.levels("compress") == [40, 60, 80, 100]


def test_save_load_round_trip(tmp_path, kmap):
    path = tmp_path / "knobmap.yaml"
    kmap.save(path)
    back = load_param_map(path, "knobmap")
    assert back.table == kmap.table and back.compressor == "ff5"
    for q in (42.5, 55, 77.7):
        assert back.at(la2a_setting("limit", q)) == kmap.at(la2a_setting("limit", q))


@pytest.mark.parametrize("content,words", [
    (None, "not found"),
    ("kind: knobmap\ncompressor: ff5\n", "not a valid knobmap"),
    ("compressor: ff5\nmodes: {compress: {50: {threshold_db: -10}}}\n", "ff5 parameters lack ratio"),
    ("{[", "not a readable YAML fit"),
    ("compressor: ff5\nmodes: {}\n", "no fitted setting"),
    ("compressor: ff5\nmodes: {compress: {50: {threshold_db: .nan, ratio: 2, attack_ms: 1, release_ms: 100, "
     "make_up_db: 0}}}\n", "non-finite"),
    ("modes: {compress: {50: {threshold_db: -10, ratio: 2, attack_ms: 1, release_ms: 100, make_up_db: 0}}}\n",
     "names no model class"),                           # the class is read from the record, never guessed
    ("compressor: gray-box\nmodes: {compress: {50: {threshold_db: -10, ratio: 2, attack_ms: 1, release_ms: 100, "
     "make_up_db: 0}}}\n", "unknown model class 'gray-box'"),
    ("compressor: graybox\nmodes: {compress: {50: {threshold_db: -10, ratio: 2, attack_ms: 1, release_ms: 100, "
     "make_up_db: 0}}}\n", "graybox parameters lack input_highpass_hz"),
])
def test_load_rejects_bad_files(tmp_path, content, words):
    path = tmp_path / "knobmap.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as err:
        load_param_map(path, "knobmap")
    assert str(path) in str(err.value) and words in str(err.value), str(err.value)


def _one_level(mode="compress", pr=50, **over) -> str:
    params = {"threshold_db": -10, "ratio": 2, "attack_ms": 1, "release_ms": 100, "make_up_db": 0, **over}
    inner = ", ".join(f"{k}: {v}" for k, v in params.items())
    return f"kind: knobmap\ncompressor: ff5\nmodes: {{{mode}: {{{pr}: {{{inner}}}}}}}\n"


@pytest.mark.parametrize("content,words", [
    (_one_level(ratio=0.5), "ratio = 0.5"),                 # an expander
    (_one_level(attack_ms=-5), "attack_ms = -5"),
    (_one_level(release_ms=0), "release_ms = 0"),
    (_one_level(attack_ms=".inf"), "attack_ms = inf"),
    (_one_level(threshold_db=900), "threshold_db = 900"),
    (_one_level(make_up_db="loud"), "make_up_db = 'loud' is non-numeric"),
    (_one_level(pr=150), "peak reduction 150"),
    (_one_level(mode="squash"), "unknown mode 'squash'"),
])
def test_load_validates_every_entry_like_a_checkpoint(tmp_path, content, words):
    """A knob map is range-checked on load with the checkpoints' check: one UserError
    naming the file and the bad entry, before anything renders with it."""
    path = tmp_path / "knobmap.yaml"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        load_param_map(path, "knobmap")
    assert str(path) in str(err.value) and words in str(err.value), str(err.value)


def test_pchip_in_log_time_is_not_linear():
    """Attack/release use a monotone cubic in log-time: with three uneven levels it differs
    from piecewise linear but stays between the neighbours."""
    rows = [{"mode": "compress", "peak_reduction": pr, "threshold_db": -10.0, "ratio": 2.0, "attack_ms": a,
             "release_ms": 100.0, "make_up_db": 0.0} for pr, a in ((40, 10.0), (50, 5.0), (90, 1.0))]
    km = KnobMap.from_rows(rows, "ff5")
    q = km.at(la2a_setting("compress", 70))["attack_ms"]
    linear = math.exp(np.interp(70, [40, 50, 90], np.log([10.0, 5.0, 1.0])))
    assert 1.0 < q < 5.0 and q != pytest.approx(linear, rel=1e-6)
