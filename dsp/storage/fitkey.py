"""The key of a fit: what it was fitted on and how, so that a finished fit is reused only
for the same data and settings.

A fit is keyed by the identity of its input and target files (their size and a digest
of their first and last megabyte: cheap on 20-minute recordings, and it survives copying
the corpus elsewhere) and by the settings that change its result (compressor, ranges,
start point, frames, solver, which files were chosen). The key is stored in the fit's
``ckpt.yaml`` (``fit_key``); :func:`key_change` says in words what differs.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

__all__ = ["file_identity", "fit_key", "fit_settings", "key_change", "files_change"]

_EDGE = 1 << 20   # bytes read from each end of a file


def file_identity(path: str | Path) -> dict:
    """``{"size": bytes, "digest": hex}`` of a file (digest of its size and first and last MB)."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_EDGE))
        if size > _EDGE:
            fh.seek(max(size - _EDGE, _EDGE))
            h.update(fh.read(_EDGE))
    return {"size": int(size), "digest": h.hexdigest()[:32]}


def fit_settings(options, **extra) -> dict:
    """The settings of a :class:`dsp.fitting.ff5.FitOptions` that change a fit's result, with ``extra``
    (start point, frames, data choices) added. Plain types only."""
    return _plain({"ranges": asdict(options.ranges), "hessian": options.hessian, "newton": asdict(options.newton),
                   "atol_esr": options.atol_esr, **extra})


def fit_key(inp: str | Path, tgt: str | Path, settings: dict) -> dict:
    """The key of a fit of target ``tgt`` from input ``inp`` with ``settings``."""
    return {"input": file_identity(inp), "target": file_identity(tgt), "settings": _plain(settings)}


def files_change(record: dict, inp: str | Path, tgt: str | Path) -> str | None:
    """What differs between the files a stored fit was keyed on and ``inp``/``tgt`` now;
    None when they are the same (or the record has no key to tell)."""
    old = record.get("fit_key")
    if not isinstance(old, dict):
        return None
    for name, path in (("input", inp), ("target", tgt)):
        if not os.path.isfile(path) or old.get(name) != file_identity(path):
            return f"the {name} file {path} is not the one it was fitted on"
    return None


def key_change(record: dict, key: dict) -> str | None:
    """What differs between a stored fit's ``fit_key`` and ``key``, in words; None when equal."""
    old = record.get("fit_key")
    if not isinstance(old, dict):
        return "it holds no data key (fitted by an earlier version)"
    for name in ("input", "target"):
        if old.get(name) != key[name]:
            return f"the {name} file is not the one it was fitted on"
    new, was = _flatten(key["settings"]), _flatten(old.get("settings") or {})
    changed = sorted(k for k in set(new) | set(was) if new.get(k, "<absent>") != was.get(k, "<absent>"))
    if changed:
        return f"it was fitted with other settings ({', '.join(changed)})"
    return None


def _flatten(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _plain(obj):
    """JSON types only (tuples as lists, numpy scalars as floats), as a YAML round trip gives back."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
