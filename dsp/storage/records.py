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
from dsp.models.graybox import BlockRanges
from dsp.models.classes import KINDS, kind_of, param_names
from dsp.models.parameters import PARAM_NAMES, Ranges

__all__ = ["KIND", "save_checkpoint", "load_checkpoint", "check_params", "REQUIRED_KEYS"]

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
    data["compressor"] = compressor
    data["params"] = check_params(params, str(p), compressor)
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


def check_params(params, where: str, compressor: str | None = None) -> dict[str, float]:
    """The physical parameters of ``params`` (the model class ``compressor``'s, by default
    the one its keys show) as floats, checked: all present, finite, ratio >= 1, attack and
    release > 0, threshold and make-up within -200..200 dB, a gray-box's blocks in range.

    The one check of stored parameters (checkpoints, knob maps and knob tables).

    Raises:
        UserError: naming ``where`` and the bad entry.
    """
    if not isinstance(params, dict):
        raise UserError(f"{where}: parameters must be a mapping of {', '.join(PARAM_NAMES)}")
    names = param_names(compressor or kind_of(params))
    missing = [k for k in names if k not in params]
    if missing:
        raise UserError(f"{where}: params lack {', '.join(missing)}")
    out = {}
    for k in names:
        try:
            out[k] = float(params[k])
        except (TypeError, ValueError):
            raise UserError(f"{where}: {k} = {params[k]!r} is non-numeric") from None
        if not math.isfinite(out[k]):
            raise UserError(f"{where}: {k} = {out[k]} is non-finite (NaN or infinite parameter)")
    try:
        _LOAD_RANGES.check(out, where=where)
        if len(names) > len(PARAM_NAMES):
            _LOAD_BLOCK_RANGES.check(out, where=where)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return out


def _plain(obj):
    """Plain Python types only, so the YAML stays readable and safe to load."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
