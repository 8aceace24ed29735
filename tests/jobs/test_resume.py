"""Which changes refuse a resume (jobs/resume.py)."""
from __future__ import annotations

import pytest

from common.errors import UserError
from jobs.resume import changed_settings, check_resumable

SAVED = {"model": {"backbone": "s6", "hyperparameters": {"width": 4}}, "variant": "hybrid",
         "train_settings": {"lr": 3e-3, "batch_size": 16, "max_steps": 100, "max_minutes": 12.0},
         "param_map": {"kind": "knobmap", "modes": {"compress": {"100": {"ratio": 2.0}}}},
         "config": {"seed": 0, "unseen_levels": [45], "quiet": False, "test": True,
                    "data": {"name": "standin", "cache_dir": "cache", "corpus": {"seed": 0}}}}


def _with(**changes):
    import copy
    out = copy.deepcopy(SAVED)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = out
        for p in path:
            node = node[p]
        node[last] = value
    return out


def test_the_same_run_and_a_longer_one_may_resume():
    assert changed_settings(SAVED, SAVED) == []
    longer = _with(train_settings__max_steps=400, train_settings__max_minutes=60.0, config__quiet=True,
                   config__test=False, config__data__cache_dir="elsewhere", config__crossfit=False)
    assert changed_settings(SAVED, longer) == []


@pytest.mark.parametrize("changes,keys", [
    ({"train_settings__batch_size": 3, "train_settings__lr": 0.1}, ["train.batch_size", "train.lr"]),
    ({"config__data__corpus__seed": 9}, ["data.corpus.seed"]),
    ({"config__seed": 1}, ["seed"]),
    ({"config__unseen_levels": [45, 65]}, ["unseen_levels"]),
    ({"model__hyperparameters__width": 8}, ["model.hyperparameters.width"]),
    ({"variant": "blackbox"}, ["variant"]),
    ({"config__crossfit": True}, ["crossfit"]),   # other DSP features; absent (an older run) is off
    ({"param_map__modes__compress__100__ratio": 3.0}, ["the DSP fit (dsp_dir)"]),
])
def test_a_changed_setting_is_named(changes, keys):
    now = _with(**changes)
    assert changed_settings(SAVED, now) == keys
    with pytest.raises(UserError) as err:
        check_resumable("run/last.pt", SAVED, now)
    assert "run/last.pt" in str(err.value) and "resume=false" in str(err.value)
    assert all(k in str(err.value) for k in keys)


def test_a_cosine_run_may_not_change_its_length():
    """Under the cosine schedule the learning rate at every step depends on max_steps."""
    cosine = _with(train_settings__schedule="cosine")
    assert changed_settings(cosine, _with(train_settings__schedule="cosine", train_settings__max_minutes=60.0)) == []
    longer = _with(train_settings__schedule="cosine", train_settings__max_steps=400)
    assert changed_settings(cosine, longer) == ["train.max_steps (the cosine schedule decays over it)"]
    # a run saved before the schedule existed (plateau) does not resume as a cosine one
    assert changed_settings(SAVED, longer) == ["train.schedule"]
