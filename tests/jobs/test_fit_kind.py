"""The fit job's kind: one explicit decision (``job=auto`` reads the data), and an
explicit ``job=`` key that overrides it."""
from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from common.config import load_config
from common.errors import UserError
from jobs.chain import fit_span, fit_span_setting
from jobs.fit import fit_job_name


@pytest.mark.parametrize("overrides, kind", [
    ([], "chain"),
    (["data=signaltrain", "data.root=/x"], "chain"),
    (["data=ff_a"], "digital"),
    (["data.input=a.wav", "data.target=b.wav"], "pair"),
    (["data=ff_b", "data.input=a.wav", "data.target=b.wav"], "digital"),
    (["data=manifest", "data.path=m.csv"], "manifest"),
    (["job=chain", "data.input=a.wav", "data.target=b.wav"], "chain"),
])
def test_auto_and_explicit_kinds(overrides, kind):
    assert fit_job_name(load_config("config", overrides)) == kind


@pytest.mark.parametrize("overrides, words", [
    (["data.input=a.wav"], "needs both data.input and data.target"),
    (["job=pair"], "needs both data.input and data.target"),
    (["job=everything"], "job must be auto or one of"),
])
def test_bad_kinds(overrides, words):
    with pytest.raises(UserError, match=words):
        fit_job_name(load_config("config", overrides))


def test_fit_span_cuts_each_take_and_is_checked():
    x = np.arange(20.0).reshape(2, 10)
    a, b = fit_span(x, -x, (0.5, 1.0))
    np.testing.assert_array_equal(a, x[:, 5:])
    np.testing.assert_array_equal(b, -x[:, 5:])
    assert fit_span(x, x, None)[0] is x
    assert fit_span_setting(OmegaConf.create({"fit_span": None})) is None
    assert fit_span_setting(OmegaConf.create({"fit_span": [0, 0.5]})) == (0.0, 0.5)
    for bad in ([0.5, 0.5], [0.7, 0.2], [-0.1, 0.5], [0.0, 1.5], "half", [0.1]):
        with pytest.raises(UserError, match="data.fit_span"):
            fit_span_setting(OmegaConf.create({"fit_span": bad}))
