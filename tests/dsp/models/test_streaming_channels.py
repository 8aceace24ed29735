"""Channel linking in block rendering: linked (the default) vs dual mono."""
from __future__ import annotations

import numpy as np
import pytest

from audio.material import synthesize
from dsp.models.ff5_streaming import StreamingCompressor, render

SR = 44100
PARAMS = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 80.0, "make_up_db": 2.0}


@pytest.fixture(scope="module")
def stereo() -> np.ndarray:
    x = synthesize(1.5, SR, seed=8).astype(np.float64)
    x *= 0.7 / np.max(np.abs(x))                      # peaks at -3 dBFS, well over the threshold
    return np.stack([x, 0.03 * np.roll(x, 5000)])     # and a quiet (under it), different channel


def test_linked_is_the_default_and_one_gain_for_all(stereo):
    out = render(stereo, SR, PARAMS, block=10000)
    np.testing.assert_array_equal(out, render(stereo, SR, PARAMS, block=10000, linked=True))
    live = np.all(np.abs(stereo) > 1e-4, axis=0)
    gains = out[:, live] / stereo[:, live]
    np.testing.assert_allclose(gains[1], gains[0], rtol=1e-9)  # the image is kept


def test_unlinked_compresses_each_channel_on_its_own(stereo):
    out = render(stereo, SR, PARAMS, block=7777, linked=False)
    for ch in range(2):
        np.testing.assert_allclose(out[ch], render(stereo[ch], SR, PARAMS), rtol=1e-12, atol=1e-15)
    # linked, the loud channel turns the quiet one down by more than 3 dB somewhere
    live = np.abs(stereo[1]) > 1e-4
    apart_db = 20 * np.log10(out[1, live] / render(stereo, SR, PARAMS)[1, live])
    assert np.max(apart_db) > 3.0


def test_unlinked_mono_equals_linked_mono(stereo):
    np.testing.assert_array_equal(render(stereo[0], SR, PARAMS, linked=False), render(stereo[0], SR, PARAMS))


def test_gain_shapes_and_a_changed_channel_count_is_refused(stereo):
    linked, dual = StreamingCompressor(PARAMS, SR), StreamingCompressor(PARAMS, SR, linked=False)
    assert linked.gain(stereo[:, :100]).shape == (100,)
    assert dual.gain(stereo[:, :100]).shape == (2, 100)
    with pytest.raises(ValueError, match="detector channels"):
        dual.gain(stereo[:1, 100:200])
