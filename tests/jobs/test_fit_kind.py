"""The fit job's kind: one explicit decision (``job=auto`` reads the data), and an
explicit ``job=`` key that overrides it."""
from __future__ import annotations

import pytest

from common.config import load_config
from common.errors import UserError
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
