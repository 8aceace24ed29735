"""Corpora of devices with arbitrary knobs, described by a CSV manifest.

Columns ``split,input,target`` and one numeric column per knob (any names), e.g.
a CL 1B-style corpus with ``threshold,ratio,attack,release``. Relative paths are
taken relative to the manifest's folder. Every problem (missing column or file,
non-numeric knob, unknown split, duplicate row) is a :class:`UserError` naming
the manifest and the row.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from audio.devices import KnobDevice
from audio.signaltrain import SPLITS
from common.errors import UserError
from common.names import plain_name

__all__ = ["ManifestRow", "read_manifest", "knob_names", "manifest_device", "DEVICE_NAME"]

DEVICE_NAME = "manifest"   # what the mode column of a comparison shows for such a device
_REQUIRED = ("split", "input", "target")


@dataclass(frozen=True)
class ManifestRow:
    index: int
    split: str
    input: Path
    target: Path
    knobs: dict[str, float] = field(hash=False)

    @property
    def id(self) -> int:
        return self.index

    @property
    def setting(self) -> dict:
        """The row's knob dict (a setting of its device)."""
        return self.knobs

    def label(self) -> str:
        return "_".join(f"{k}{v:g}" for k, v in self.knobs.items())


def read_manifest(path: str | Path) -> list[ManifestRow]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: manifest not found")
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{p}: not a readable CSV manifest ({type(exc).__name__})") from None
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise UserError(f"{p}: manifest lacks the column(s) {', '.join(missing)} "
                        "(expected split,input,target and one column per knob)")
    knobs = [h for h in header if h not in _REQUIRED]
    if not knobs:
        raise UserError(f"{p}: manifest has no knob columns")
    for k in knobs:   # a knob's name is part of its takes' fit folders (rows/<index>_<knob><value>)
        plain_name(k, "knob column", str(p))
    if len(set(knobs)) != len(knobs):
        raise UserError(f"{p}: a knob column is named twice")
    rows, seen = [], set()
    for i, r in enumerate(raw, start=2):  # line numbers as a spreadsheet shows them
        r = {k.strip(): (v or "").strip() for k, v in r.items() if k is not None}
        split = r["split"]
        if split not in SPLITS:
            raise UserError(f"{p}: line {i}: unknown split {split!r} (use Train, Val or Test)")
        values = {}
        for k in knobs:
            try:
                values[k] = float(r[k])
            except ValueError:
                raise UserError(f"{p}: line {i}: knob {k} = {r[k]!r} is not a number") from None
            if not math.isfinite(values[k]):
                raise UserError(f"{p}: line {i}: knob {k} is not finite")
        inp, tgt = (p.parent / r["input"]), (p.parent / r["target"])
        for f in (inp, tgt):
            if not f.is_file():
                raise UserError(f"{p}: line {i}: {f} not found")
        key = (split, str(inp), tuple(values.values()))
        if key in seen:
            raise UserError(f"{p}: line {i}: duplicate row (same split, input and knobs)")
        seen.add(key)
        rows.append(ManifestRow(i, split, inp, tgt, values))
    if not rows:
        raise UserError(f"{p}: manifest has no rows")
    return rows


def knob_names(rows: list[ManifestRow]) -> list[str]:
    return list(rows[0].knobs)


def manifest_device(rows: list[ManifestRow]) -> KnobDevice:
    """The device whose takes the manifest lists: its knob columns, in order."""
    return KnobDevice(knob_names(rows), name=DEVICE_NAME)
