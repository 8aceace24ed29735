"""Compressor checkpoints (``ckpt.yaml``): writing atomically, reading with validation.

A checkpoint holds the parameters in physical units, so it works at any sample
rate: the five of ``compressor: ff5``, or those and the blocks' of ``compressor:
graybox`` (the record's ``compressor`` key; an older record without it is ``ff5``), plus the fit's record (esr, loss, iterations, converged, seconds,
sample_rate). Reading checks that the file is a mapping with those keys and
values in range; any problem is a :class:`UserError` naming the file.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from common.atomic import write_text_atomic
from common.errors import UserError
from dsp.graybox import BLOCK_NAMES, BlockRanges
from dsp.kinds import KINDS, kind_of, param_names
from dsp.params import PARAM_NAMES, Ranges

__all__ = ["KIND", "save_checkpoint", "load_checkpoint", "REQUIRED_KEYS"]

KIND = "dsp-compressor"
REQUIRED_KEYS = ("params", "esr", "loss", "iterations", "converged", "seconds", "sample_rate")
# a loaded checkpoint may have been fitted with wider ranges than the defaults
_LOAD_RANGES = Ranges(ratio=(1.0, 1000.0), attack_ms=(1e-3, 1e5), release_ms=(1e-3, 1e6))
_LOAD_BLOCK_RANGES = BlockRanges(input_highpass_hz=(1e-3, 1e5), input_shelf_hz=(1.0, 1e6),
                                 input_shelf_db=(-60.0, 40.0), tube_drive=(1e-6, 1e3),
                                 tube_asymmetry=(-1.0, 1.0), output_highpass_hz=(1e-3, 1e5))


def save_checkpoint(path: str | Path, record: dict) -> None:
    """Write ``record`` (with ``params`` in physical units) as YAML, atomically."""
    data = {"kind": KIND, "compressor": kind_of(record["params"]), **record}
    data["params"] = {k: float(data["params"][k]) for k in param_names(data["compressor"])}
    write_text_atomic(path, yaml.safe_dump(_plain(data), sort_keys=False))


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a checkpoint; raises UserError on any problem."""
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
    params = data["params"]
    if not isinstance(params, dict):
        raise UserError(f"{p}: 'params' must be a mapping of the five parameters")
    compressor = data.get("compressor", kind_of(params))
    if compressor not in KINDS:
        raise UserError(f"{p}: compressor must be one of {', '.join(KINDS)}, got {compressor!r}")
    names = param_names(compressor)
    missing = [k for k in names if k not in params]
    if missing:
        raise UserError(f"{p}: params lack {', '.join(missing)}")
    data["compressor"] = compressor
    try:
        data["params"] = {k: float(params[k]) for k in names}
        for key in ("esr", "loss", "seconds"):
            data[key] = float(data[key])
        data["iterations"] = int(data["iterations"])
        data["sample_rate"] = int(data["sample_rate"])
    except (TypeError, ValueError):
        raise UserError(f"{p}: checkpoint holds a non-numeric value") from None
    if not all(math.isfinite(v) for v in data["params"].values()):
        raise UserError(f"{p}: checkpoint holds a NaN or infinite parameter")
    try:
        _LOAD_RANGES.check(data["params"], where=str(p))
        if compressor == "graybox":
            _LOAD_BLOCK_RANGES.check(data["params"], where=str(p))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if data["sample_rate"] <= 0:
        raise UserError(f"{p}: sample_rate must be positive")
    return data


def _plain(obj):
    """Plain Python types only, so the YAML stays readable and safe to load."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
