"""Regression: the one conditioning function gives, bit for bit, the vectors the two
former tables gave (LA-2A: fitted, knobs, fitted+knobs; a device with its own knobs:
the parameters then the raw knob values, or the knob values alone)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from audio.devices import LA2A, KnobDevice, la2a_setting
from neural.conditioning import conditioning, conditioning_size

PARAMS = {"threshold_db": -27.3, "ratio": 3.7, "attack_ms": 4.1, "release_ms": 333.0, "make_up_db": 2.9}


def _features(p):
    return [p["threshold_db"] / 40.0, math.log(p["ratio"]), math.log10(p["attack_ms"]),
            math.log10(p["release_ms"]) - 2.0, p["make_up_db"] / 10.0]


@pytest.mark.parametrize("mode, switch", [("compress", 0.0), ("limit", 1.0)])
@pytest.mark.parametrize("pr", [40, 65, 100])
def test_la2a_vectors_are_the_former_ones(mode, switch, pr):
    setting = la2a_setting(mode, pr)
    fitted = np.asarray(_features(PARAMS) + [switch], np.float32)
    knobs = np.asarray([pr / 100.0, switch], np.float32)
    expected = {"fitted": fitted, "knobs": knobs, "fitted+knobs": np.concatenate([fitted, knobs[:1]])}
    for name, want in expected.items():
        got = conditioning(name, PARAMS, setting, LA2A)
        assert got.dtype == np.float32 and got.shape == (conditioning_size(name, LA2A),)
        np.testing.assert_array_equal(got, want)


def test_knob_device_vectors_are_the_former_ones():
    device = KnobDevice(["threshold", "ratio", "attack"])
    setting = {"threshold": -20.0, "ratio": 4.0, "attack": 5.5}
    values = [-20.0, 4.0, 5.5]
    np.testing.assert_array_equal(conditioning("fitted+knobs", PARAMS, setting, device),
                                  np.asarray(_features(PARAMS) + values, np.float32))
    np.testing.assert_array_equal(conditioning("knobs", PARAMS, setting, device), np.asarray(values, np.float32))
    assert conditioning_size("fitted+knobs", device) == 8 and conditioning_size("knobs", device) == 3
    with pytest.raises(ValueError, match="unknown conditioning"):
        conditioning("fitted", PARAMS, setting, device)
