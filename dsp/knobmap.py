"""The knob map: fitted parameters against peak reduction, interpolated at any PR.

Interpolation follows how each parameter behaves: threshold and make-up linearly
in dB, ratio linearly in log-ratio, attack and release with a monotone cubic
(PCHIP) in log-time. Outside the fitted range the end values are held.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml
from scipy.interpolate import PchipInterpolator

from common.atomic import write_text_atomic
from common.errors import UserError
from dsp.params import PARAM_NAMES

__all__ = ["KnobMap"]


class KnobMap:
    """Per mode, sorted PR levels and the parameters fitted there."""

    def __init__(self, table: dict[str, dict[int, dict[str, float]]]):
        self.table = {m: dict(sorted(levels.items())) for m, levels in table.items() if levels}

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "KnobMap":
        table: dict[str, dict[int, dict[str, float]]] = {}
        for r in rows:
            table.setdefault(r["mode"], {})[int(r["peak_reduction"])] = {k: float(r[k]) for k in PARAM_NAMES}
        return cls(table)

    @property
    def modes(self) -> list[str]:
        return list(self.table)

    def levels(self, mode: str) -> list[int]:
        return list(self.table[mode])

    def at(self, mode: str, peak_reduction: float) -> dict[str, float]:
        """Parameters at any ``peak_reduction`` in ``mode``."""
        if mode not in self.table:
            raise UserError(f"knob map has no {mode!r} mode (has {', '.join(self.table)})")
        pr = np.asarray(list(self.table[mode]), dtype=float)
        q = float(np.clip(peak_reduction, pr.min(), pr.max()))
        col = {k: np.asarray([v[k] for v in self.table[mode].values()]) for k in PARAM_NAMES}
        if len(pr) == 1:
            return {k: float(col[k][0]) for k in PARAM_NAMES}
        out = {
            "threshold_db": float(np.interp(q, pr, col["threshold_db"])),
            "make_up_db": float(np.interp(q, pr, col["make_up_db"])),
            "ratio": float(math.exp(np.interp(q, pr, np.log(col["ratio"])))),
        }
        for k in ("attack_ms", "release_ms"):
            out[k] = float(np.exp(PchipInterpolator(pr, np.log(col[k]))(q)))
        return {k: out[k] for k in PARAM_NAMES}

    def subset(self, keep) -> "KnobMap":
        """Knob map built from only the levels for which ``keep(pr)`` is true."""
        return KnobMap({m: {pr: v for pr, v in lv.items() if keep(pr)} for m, lv in self.table.items()})

    def save(self, path: str | Path) -> None:
        data = {"kind": "knobmap", "interpolation": {
                    "threshold_db": "linear", "make_up_db": "linear", "ratio": "linear in log",
                    "attack_ms": "monotone cubic in log", "release_ms": "monotone cubic in log"},
                "modes": {m: {int(pr): {k: float(v[k]) for k in PARAM_NAMES} for pr, v in lv.items()}
                          for m, lv in self.table.items()}}
        write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "KnobMap":
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: knob map not found (run a chain with train_comp.py first)")
        try:
            data = yaml.safe_load(p.read_text())
            table = {str(m): {int(pr): {k: float(v[k]) for k in PARAM_NAMES} for pr, v in lv.items()}
                     for m, lv in data["modes"].items()}
        except Exception:
            raise UserError(f"{p}: not a valid knob map") from None
        if not table or not all(all(math.isfinite(x) for v in lv.values() for x in v.values())
                                for lv in table.values()):
            raise UserError(f"{p}: knob map is empty or holds non-finite values")
        return cls(table)
