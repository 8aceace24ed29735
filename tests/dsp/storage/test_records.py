"""Checkpoints: a save/load round trip, and every kind of damaged file rejected with a
UserError that names it."""
from __future__ import annotations

import math

import pytest
import yaml

from common.errors import UserError
from dsp.storage.records import KIND, REQUIRED_KEYS, load_checkpoint, save_checkpoint
from dsp.models.parameters import PARAM_NAMES

PARAMS = {"threshold_db": -23.25, "ratio": 3.125, "attack_ms": 0.8716, "release_ms": 123.456,
          "make_up_db": 1.5}


def _record(**over) -> dict:
    rec = {"compressor": "ff5", "params": dict(PARAMS), "esr": 0.0123, "loss": 4.5, "iterations": 17, "converged": True,
           "seconds": 0.91, "sample_rate": 44100, "mode": "compress", "peak_reduction": 70}
    rec.update(over)
    return rec


def test_round_trip(tmp_path):
    import numpy as np
    path = tmp_path / "ckpt.yaml"
    # numpy scalars (what a fit returns) are stored as plain numbers
    save_checkpoint(path, _record(esr=np.float64(0.0123), iterations=np.int64(17),
                                  params={k: np.float64(v) for k, v in PARAMS.items()}))
    text = path.read_text()
    assert "!!python" not in text
    raw = yaml.safe_load(text)
    assert raw["kind"] == KIND and list(raw["params"]) == list(PARAM_NAMES)
    assert set(REQUIRED_KEYS) <= set(raw)
    ck = load_checkpoint(path)
    assert ck["params"] == PARAMS  # exact: floats survive YAML unchanged
    assert (ck["esr"], ck["loss"], ck["iterations"], ck["converged"], ck["seconds"], ck["sample_rate"]) == \
        (0.0123, 4.5, 17, True, 0.91, 44100)
    assert ck["mode"] == "compress" and ck["peak_reduction"] == 70


def test_exact_float_round_trip(tmp_path):
    params = {k: v * (1 + 1e-15) + 1e-17 for k, v in PARAMS.items()}
    params["release_ms"] = math.pi * 100
    save_checkpoint(tmp_path / "c.yaml", _record(params=params))
    assert load_checkpoint(tmp_path / "c.yaml")["params"] == params


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.yaml"
    save_checkpoint(path, _record())
    before = path.read_bytes()
    with pytest.raises(ValueError, match="ff5 parameters lack ratio"):
        save_checkpoint(path, _record(params={"threshold_db": -10.0}))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.yaml"]


def _write(tmp_path, text: str | bytes):
    path = tmp_path / "ckpt.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _dump(record: dict) -> str:
    return yaml.safe_dump(record, sort_keys=False)


def _without(key: str) -> dict:
    rec = _record()
    del rec[key]
    return rec


def _params_without(key: str) -> dict:
    rec = _record()
    del rec["params"][key]
    return rec


BAD = {
    "binary garbage": (bytes(range(256)) * 4, "not a readable YAML"),
    "broken yaml": ("params: {threshold_db: [\n", "not a readable YAML"),
    "a list": ("- 1\n- 2\n", "expected a YAML mapping"),
    "empty file": ("", "expected a YAML mapping"),
    "a number": ("42\n", "expected a YAML mapping"),
    "neural kind": (_dump({"kind": "neural", **_record()}), "'neural'"),
    "no params": (_dump(_without("params")), "lacks params"),
    "no esr": (_dump(_without("esr")), "lacks esr"),
    "no sample rate": (_dump(_without("sample_rate")), "lacks sample_rate"),
    "params not a mapping": (_dump(_record(params=[1, 2, 3, 4, 5])), "parameters must be a mapping"),
    "parameters lack ratio": (_dump(_params_without("ratio")), "parameters lack ratio"),
    "non-numeric": (_dump(_record(params={**PARAMS, "ratio": "fast"})), "non-numeric"),
    "non-numeric esr": (_dump(_record(esr=[1])), "non-numeric"),
    "nan": (_dump(_record(params={**PARAMS, "threshold_db": float("nan")})), "NaN"),
    "inf": (_dump(_record(params={**PARAMS, "make_up_db": float("inf")})), "NaN or infinite"),
    "ratio below 1": (_dump(_record(params={**PARAMS, "ratio": 0.5})), "ratio = 0.5 is outside"),
    "negative attack": (_dump(_record(params={**PARAMS, "attack_ms": -1.0})), "attack_ms = -1 is outside"),
    "zero release": (_dump(_record(params={**PARAMS, "release_ms": 0.0})), "release_ms = 0 is outside"),
    "absurd threshold": (_dump(_record(params={**PARAMS, "threshold_db": -500.0})), "threshold_db"),
    "zero sample rate": (_dump(_record(sample_rate=0)), "sample_rate must be positive"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_checkpoint(tmp_path, case):
    content, words = BAD[case]
    path = _write(tmp_path, content)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and words in msg, msg


def test_missing_and_folder(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_wider_fitted_ranges_still_load(tmp_path):
    """A checkpoint fitted with ranges wider than the defaults (ratio 50) is valid."""
    save_checkpoint(tmp_path / "c.yaml", _record(params={**PARAMS, "ratio": 50.0, "attack_ms": 0.01}))
    assert load_checkpoint(tmp_path / "c.yaml")["params"]["ratio"] == 50.0
