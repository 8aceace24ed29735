"""Regression: a tiny chain, a short neural training and a comparison give the same
numbers as the stored baseline (``tests/data/regression_baseline.json``).

The baseline was written by this test (``REGRESSION_UPDATE=1 python -m pytest
tests/test_regression.py``) before a refactoring; a restructuring of the code must not
move any of these numbers. A change that is meant to change results (a new stand-in,
a new protocol default) regenerates the baseline in the same commit and says why.

Every run pins the settings it relies on, so later defaults do not change it.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

from dsp.models.classes import model_class
from support import CAPPED_ITERATIONS

pytestmark = pytest.mark.slow  # a chain, a training and a comparison, end to end

BASELINE = Path(__file__).parent / "data" / "regression_baseline.json"
LEVELS = "[100,90,80]"
DIGITS = 6   # the CSVs store 6 significant digits (common.records)


def _tiny(cache):
    # the default model class, named: the gray-box of the whole unit
    return [f"data.cache_dir={cache}", "data.corpus.train_seconds=3", "data.corpus.eval_seconds=2",
            f"data.corpus.levels={LEVELS}", "data.corpus.modes=[compress,limit]", "compressor=graybox", "quiet=true"]


def _floats(row: dict, keys) -> dict:
    return {k: float(row[k]) if row[k] != "" else None for k in keys}


@pytest.fixture(scope="module")
def measured(tmp_path_factory, run_cli) -> dict:
    tmp = tmp_path_factory.mktemp("regression")
    cache, dsp_dir, runs, out = tmp / "cache", tmp / "dsp", tmp / "runs", tmp / "report"
    # the protocol: the DSP fit the hybrid and the comparison use holds the unseen level 90 out
    res = run_cli(["train_comp.py", f"ckpt_dir={dsp_dir}", f"levels={LEVELS}", "modes=[compress,limit]",
                   "unseen_levels=[90]", "data.fit_splits=[Train]", CAPPED_ITERATIONS, *_tiny(cache)],
                  cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    chain = {f"{r['mode']}/{r['peak_reduction']}":
             _floats(r, [*model_class("graybox").param_names, "esr"])
             for r in csv.DictReader((dsp_dir / "summary.csv").open())}
    train = ["train.max_steps=3", "train.val_every=1", "train.val_warmup_s=0.25", "train.val_seconds=1.5",
             "train.episode=2", "train.warmup_s=0.5", "train.batch_size=4", "train.stft_weight=0.1",
             "train.schedule=plateau", "unseen_levels=[90]", "seed=0", "max_minutes=30"]
    res = run_cli(["train_neural.py", "model=s6", "variant=hybrid", f"out_dir={runs}/s6_hybrid",
                   f"dsp_dir={dsp_dir}", "test=false", *train, *_tiny(cache)], cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    log = [_floats(r, ["train_loss", "val_esr"]) for r in csv.DictReader((runs / "s6_hybrid" / "log.csv").open())]
    res = run_cli(["compare.py", f"out_dir={out}", f"dsp_dir={dsp_dir}", f"runs_dir={runs}", "models=[s6]",
                   "variants=[hybrid]", "unseen_levels=[90]", "plots.peak_reduction=90", "train_missing=false", "rtf_seconds=0.25",
                   "dsp_fits=[]",
                   *_tiny(cache)], cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    compare = {f"{r['model']}/{r['kind']}/{r['mode']}/{r['peak_reduction']}": _floats(r, ["esr", "mae", "stft"])
               for r in csv.DictReader((out / "compare.csv").open())}
    return {"chain": chain, "training_log": log, "compare": compare}


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif a is None or b is None:
        assert a is b, f"{path}: {a} != baseline {b}"
    else:
        assert abs(a - b) <= _last_digit(a, b), f"{path}: {a} != baseline {b}"


def _last_digit(a: float, b: float) -> float:
    """One unit in the last stored digit: two values rounded to :data:`DIGITS` significant
    digits from nearly equal numbers can differ by that much (a rounding boundary between
    them), and by no more unless the numbers themselves moved."""
    big = max(abs(a), abs(b))
    if big == 0.0:
        return 0.0
    return 10.0 ** (math.floor(math.log10(big)) - (DIGITS - 1)) * (1 + 1e-9)


def test_same_numbers_as_the_baseline(measured):
    if os.environ.get("REGRESSION_UPDATE") == "1":
        BASELINE.parent.mkdir(exist_ok=True)
        BASELINE.write_text(json.dumps(measured, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"wrote {BASELINE}")
    baseline = json.loads(BASELINE.read_text())
    _close(measured, baseline)
