"""Fit records (``ckpt.yaml``): writing atomically, reading with validation.

A record holds the parameters in physical units, so it works at any sample rate, and
names its model class in its ``compressor`` key (:mod:`dsp.models.classes`): the five
parameters of ``ff5``, those and the blocks' of ``graybox``. Around them: the fit's
figures (esr on the fitting audio, loss, iterations, converged, seconds, sample_rate).
Reading checks that the file is a mapping with those keys, a known class and every
parameter of it in range; any problem is a :class:`UserError` naming the file.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from common.atomic import write_text_atomic
from common.errors import UserError
from dsp.models.classes import CLASS_KEY, model_class, record_class

__all__ = ["KIND", "save_checkpoint", "load_checkpoint", "REQUIRED_KEYS"]

KIND = "dsp-compressor"
REQUIRED_KEYS = ("params", "esr", "loss", "iterations", "converged", "seconds", "sample_rate")


def save_checkpoint(path: str | Path, record: dict) -> None:
    """Write ``record`` (``params`` in physical units, its class in ``compressor``) as YAML, atomically."""
    cls = model_class(record[CLASS_KEY])
    data = {"kind": KIND, CLASS_KEY: cls.name, **record}
    data["params"] = cls.check(record["params"], str(path)).plain()
    write_text_atomic(path, yaml.safe_dump(plain(data), sort_keys=False))


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a record; its ``params`` come back as :class:`dsp.models.classes.ModelParams`.

    Raises:
        UserError: on any problem, naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: checkpoint not found")
    if p.is_dir():
        raise UserError(f"{p}: is a folder; expected a ckpt.yaml file")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{p}: not a readable YAML checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: not a compressor checkpoint (expected a YAML mapping)")
    kind = data.get("kind", KIND)
    if kind != KIND:
        raise UserError(f"{p}: is a {kind!r} checkpoint, expected a {KIND!r} checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise UserError(f"{p}: checkpoint lacks {', '.join(missing)}")
    try:
        cls = record_class(data, str(p))
        data["params"] = cls.check(data["params"], str(p))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        for key in ("esr", "loss", "seconds"):
            data[key] = float(data[key])
        data["iterations"] = int(data["iterations"])
        data["sample_rate"] = int(data["sample_rate"])
    except (TypeError, ValueError):
        raise UserError(f"{p}: checkpoint holds a non-numeric value") from None
    if data["sample_rate"] <= 0:
        raise UserError(f"{p}: sample_rate must be positive")
    return data


def plain(obj):
    """Plain Python types only, so the YAML stays readable and safe to load."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
