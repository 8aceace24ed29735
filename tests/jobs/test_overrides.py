"""The one check of list and count overrides (jobs/overrides.py)."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from common.errors import UserError
from jobs.overrides import check_overrides, level_list, mode_list


@pytest.mark.parametrize("values,words", [
    ("abc", "expected a list"),
    ([100.5], "whole number, got 100.5"),
    (["x"], "whole number, got 'x'"),
    ([100, 100], "level 100 is given more than once"),
    ([101], "outside 0..100"),
    ([-5], "outside 0..100"),
    ([True], "whole number"),
])
def test_bad_levels_are_refused(values, words):
    with pytest.raises(UserError, match="levels: ") as err:
        level_list("levels", values)
    assert words in str(err.value)


def test_good_lists_pass_through():
    assert level_list("levels", [100, 95.0, "40"]) == [100, 95, 40]
    assert mode_list("modes", ["limit", "compress"]) == ["limit", "compress"]


@pytest.mark.parametrize("cfg,words", [
    ({"modes": ["squash"]}, "modes: unknown mode 'squash'"),
    ({"modes": []}, "modes: give at least one"),
    ({"modes": ["limit", "limit"]}, "more than once"),
    ({"unseen_levels": [45, 45]}, "unseen_levels: level 45"),
    ({"unseen_levels": "x"}, "unseen_levels: expected a list"),
    ({"seed": 1.5}, "seed: expected a whole number"),
    ({"seed": -1}, "seed: must be at least 0"),
    ({"threads": "many"}, "threads: expected a whole number"),
    ({"train_jobs": 0}, "train_jobs: must be at least 1"),
    ({"seeds": [1, 1]}, "seeds: a seed is given more than once"),
])
def test_config_checks(cfg, words):
    with pytest.raises(UserError) as err:
        check_overrides(OmegaConf.create(cfg))
    assert words in str(err.value)


def test_a_null_levels_means_every_level():
    check_overrides(OmegaConf.create({"levels": None, "modes": ["compress"], "seed": 0, "unseen_levels": []}))
