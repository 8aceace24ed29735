"""The slow-error diagnostic's inputs: the cell's state per frame is the streaming model's, and its
weighted regression recovers a gain that is a function of the inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from dsp.models.graybox import TRANSPARENT  # noqa: E402
from dsp.models.opto import OPTO_START  # noqa: E402
from dsp.models.opto_streaming import StreamingOpto  # noqa: E402
from slow_error_predictability import FRAME, cell_states, fit  # noqa: E402

SR = 44100
PARAMS = {**OPTO_START, **TRANSPARENT}   # the cell reads the input itself: the blocks do not matter here


def test_cell_states_carry_the_streaming_gain_at_each_frame_end():
    rng = np.random.default_rng(3)
    env = np.repeat(10 ** (rng.uniform(-30, 0, 40) / 20), 1100)
    x = rng.standard_normal(len(env)) * env * 0.3
    gain = StreamingOpto(PARAMS, SR).gain(x[None, :])   # the gain of each sample, before its update
    states = cell_states(x, PARAMS, SR)
    assert states.shape == (len(x) // FRAME, 4)
    # the state after frame f holds the gain the next sample gets
    ends = np.arange(1, len(states)) * FRAME
    np.testing.assert_allclose(states[:-1, 0], gain[ends], rtol=1e-12)
    assert states[:, 0].min() < 0.9            # the cell compressed this material: the check is not of unity
    assert np.all(states[:, 1] >= 0.0)         # light


def test_weighted_regression_recovers_a_function_of_its_inputs():
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):
        h = rng.standard_normal((500, 3))
        w = rng.uniform(0.0, 1.0, 500)
        frames.append({"history": h, "target": 2.0 * h[:, 0] - h[:, 2] + 0.5, "weight": w / w.sum()})
    predict = fit(frames, "history", "ridge")
    probe = {"history": rng.standard_normal((50, 3))}
    # the ridge's small penalty shrinks the coefficients by about 1e-3 of their size
    np.testing.assert_allclose(predict(probe), 2.0 * probe["history"][:, 0] - probe["history"][:, 2] + 0.5,
                               atol=2e-2)
