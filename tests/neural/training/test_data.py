"""Out-of-fold DSP features (``train_neural.py crossfit=true``): each half of a take carries the
features of the fit of the other half, each rendered over the whole take."""
from __future__ import annotations

import numpy as np

from audio.devices import la2a_setting
from audio.material import synthesize
from dsp.knobs.knobmap import KnobMap
from dsp.models.opto import OPTO_START
from neural.conditioning import dsp_features
from neural.training.data import out_of_fold_features

SR = 44100
BLOCKS = {"input_highpass_hz": 30.0, "input_shelf_hz": 2500.0, "input_shelf_db": -3.0, "tube_drive": 1.2,
          "tube_asymmetry": -0.15, "output_highpass_hz": 15.0}
CELL = {**OPTO_START, **BLOCKS, "input_mix": 0.0, "make_up_db": 4.0}


def _fits():
    first = KnobMap({"compress": {100: {**CELL, "threshold_db": -34.0}}}, "opto").at(la2a_setting("compress", 100))
    second = KnobMap({"compress": {100: {**CELL, "threshold_db": -28.0, "make_up_db": 2.0}}},
                     "opto").at(la2a_setting("compress", 100))
    return first, second


def test_each_half_carries_the_other_halfs_fit():
    x = (0.5 * synthesize(0.5, SR, seed=3)).astype(np.float32)
    first, second = _fits()
    split = 9000
    g_db, y = out_of_fold_features(x, first, second, split, SR)
    g_second, y_second = dsp_features(x, second, SR)
    g_first, y_first = dsp_features(x, first, SR)
    assert g_db.shape == y.shape == x.shape
    np.testing.assert_array_equal(g_db[:split], g_second[:split])
    np.testing.assert_array_equal(g_db[split:], g_first[split:])
    np.testing.assert_array_equal(y[:split], y_second[:split])
    np.testing.assert_array_equal(y[split:], y_first[split:])
    assert np.abs(g_first - g_second).max() > 1.0   # the two fits differ: the join is not a no-op
