"""The collapsed-fit check."""
from __future__ import annotations

import math

import pytest

from common.errors import UserError
from dsp.fitting.collapse import check_fit_collapse, is_collapsed

GOOD = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 2.0}


@pytest.mark.parametrize("make_up,esr,collapsed", [
    (2.0, 0.01, False), (-59.9, 0.5, False), (0.0, 0.899, False),
    (-60.1, 0.01, True), (-101.0, 1.0, True), (0.0, 0.9, True), (0.0, math.nan, True), (-math.inf, 0.1, True),
])
def test_thresholds(make_up, esr, collapsed):
    assert is_collapsed({**GOOD, "make_up_db": make_up}, esr) is collapsed


def test_error_names_the_target_and_numbers():
    with pytest.raises(UserError, match=r"^pairs/t\.wav: the fit collapsed \(make-up -101\.0 dB, ESR 1\.000\)"):
        check_fit_collapse({**GOOD, "make_up_db": -101.0}, 1.0, "pairs/t.wav")
    check_fit_collapse(GOOD, 0.01, "pairs/t.wav")  # a good fit passes silently
