"""The knob map: the LA-2A's fitted parameters against peak reduction, interpolated at any PR.

Interpolation follows how each parameter behaves: threshold and make-up linearly
in dB, ratio linearly in log-ratio, attack and release with a monotone cubic
(PCHIP) in log-time; a gray-box map's block parameters: frequencies linearly in
log-frequency, dB, drive and asymmetry linearly; an opto map's cell parameters: the slow
release and the memory time like the other times, the memory depth and the sidechain
shelf's corner linearly in log, the slow fraction, the shelf's gain and the input tap
linearly (compress mode's tap is 0 at every level). Outside the fitted range the end
values are held. The record names the model class (``compressor: ff5|graybox|opto``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.interpolate import PchipInterpolator

from audio.devices import LA2A, la2a_setting
from common.errors import UserError
from dsp.models.graybox import BLOCK_NAMES
from dsp.models.classes import kind_of, param_names
from dsp.models.parameters import PARAM_NAMES
from dsp.knobs.parammap import ParamMap, register

__all__ = ["KnobMap"]

_INTERPOLATION = {"threshold_db": "linear", "make_up_db": "linear", "ratio": "linear in log",
                  "attack_ms": "monotone cubic in log", "release_ms": "monotone cubic in log"}
_BLOCK_INTERPOLATION = {"input_highpass_hz": "linear in log", "input_shelf_hz": "linear in log",
                        "input_shelf_db": "linear", "tube_drive": "linear", "tube_asymmetry": "linear",
                        "output_highpass_hz": "linear in log"}
_OPTO_INTERPOLATION = {"release_slow_ms": "monotone cubic in log", "memory_ms": "monotone cubic in log",
                       "slow_fraction": "linear", "memory_depth": "linear in log",
                       "sidechain_shelf_hz": "linear in log", "sidechain_shelf_db": "linear", "input_mix": "linear"}


def _interpolate_blocks(q: float, pr: np.ndarray, levels: dict, rules: dict = _BLOCK_INTERPOLATION) -> dict[str, float]:
    """The gray-box block parameters (or others, by ``rules``) at ``q`` (see the module docstring)."""
    out = {}
    for k, rule in rules.items():
        col = np.asarray([v[k] for v in levels.values()], dtype=float)
        if rule == "linear in log":
            out[k] = float(math.exp(np.interp(q, pr, np.log(col))))
        elif rule == "monotone cubic in log":
            out[k] = float(np.exp(PchipInterpolator(pr, np.log(col))(q)))
        else:
            out[k] = float(np.interp(q, pr, col))
    return out


@register
class KnobMap(ParamMap):
    """Per mode, sorted PR levels and the parameters fitted there.

    Args:
        table: ``{mode: {peak_reduction: params}}``.
        protocol: how the parameters were obtained (method, the splits read, the levels
            held out and the levels actually fitted), as written by the fit job; None
            when unknown (a map made by hand, or by an older version).
    """

    kind = "knobmap"
    between = "interp"
    device = LA2A

    def __init__(self, table: dict[str, dict[int, dict[str, float]]], protocol: dict | None = None):
        self.table = {m: dict(sorted(levels.items())) for m, levels in table.items() if levels}
        self.protocol = protocol
        kinds = {kind_of(p) for lv in self.table.values() for p in lv.values()}
        if len(kinds) > 1:
            raise ValueError(f"knob map mixes model classes ({', '.join(sorted(kinds))})")
        self.compressor = kinds.pop() if kinds else "ff5"
        self.names = param_names(self.compressor)

    @classmethod
    def from_rows(cls, rows: list[dict], protocol: dict | None = None) -> "KnobMap":
        table: dict[str, dict[int, dict[str, float]]] = {}
        for r in rows:
            names = param_names(kind_of(r))
            table.setdefault(r["mode"], {})[int(r["peak_reduction"])] = {k: float(r[k]) for k in names}
        return cls(table, protocol)

    @property
    def modes(self) -> list[str]:
        return list(self.table)

    def levels(self, mode: str) -> list[int]:
        return list(self.table[mode])

    def fitted(self) -> list[tuple[dict, dict]]:
        return [(la2a_setting(m, pr), dict(p)) for m, lv in self.table.items() for pr, p in lv.items()]

    def check(self, setting: dict, where: str = "") -> None:
        """A mode the map has and a peak reduction in 0..100 (outside the fitted levels the
        end values hold)."""
        LA2A.check(setting)
        if setting["mode"] not in self.table:
            raise UserError(f"{where or 'knob map'}: has no {setting['mode']!r} mode (has {', '.join(self.table)})")

    def at(self, setting: dict) -> dict[str, float]:
        """Parameters at any ``peak_reduction`` in ``mode``."""
        mode, peak_reduction = setting["mode"], setting["peak_reduction"]
        if mode not in self.table:
            raise UserError(f"knob map has no {mode!r} mode (has {', '.join(self.table)})")
        pr = np.asarray(list(self.table[mode]), dtype=float)
        q = float(np.clip(peak_reduction, pr.min(), pr.max()))
        col = {k: np.asarray([v[k] for v in self.table[mode].values()]) for k in PARAM_NAMES}
        if len(pr) == 1:
            return {k: float(v[k]) for v in self.table[mode].values() for k in self.names}
        out = {
            "threshold_db": float(np.interp(q, pr, col["threshold_db"])),
            "make_up_db": float(np.interp(q, pr, col["make_up_db"])),
            "ratio": float(math.exp(np.interp(q, pr, np.log(col["ratio"])))),
        }
        for k in ("attack_ms", "release_ms"):
            out[k] = float(np.exp(PchipInterpolator(pr, np.log(col[k]))(q)))
        if self.compressor in ("graybox", "opto"):
            out.update(_interpolate_blocks(q, pr, self.table[mode]))
        if self.compressor == "opto":
            out.update(_interpolate_blocks(q, pr, self.table[mode], _OPTO_INTERPOLATION))
        return {k: out[k] for k in self.names}

    def at_without(self, setting: dict) -> dict[str, float]:
        """Interpolated from every other fitted level (the level itself left out)."""
        pr = setting["peak_reduction"]
        others = self.subset(lambda s: s["peak_reduction"] != pr)
        return others.at(setting) if setting["mode"] in others.table else self.at(setting)

    def subset(self, keep: Callable[[dict], bool]) -> "KnobMap":
        """Knob map built from only the levels where ``keep(setting)`` is true."""
        return KnobMap({m: {pr: v for pr, v in lv.items() if keep(la2a_setting(m, pr))}
                        for m, lv in self.table.items()}, self.protocol)

    def to_record(self) -> dict:
        interpolation = {**_INTERPOLATION, **(_BLOCK_INTERPOLATION if self.compressor in ("graybox", "opto") else {}),
                         **(_OPTO_INTERPOLATION if self.compressor == "opto" else {})}
        record = {"kind": self.kind, "compressor": self.compressor, "interpolation": interpolation,
                  "modes": {m: {int(pr): {k: float(v[k]) for k in self.names} for pr, v in lv.items()}
                            for m, lv in self.table.items()}}
        if self.protocol is not None:
            record["protocol"] = self.protocol
        return record

    @classmethod
    def from_record(cls, record: dict) -> "KnobMap":
        names = param_names(str(record.get("compressor", "ff5")))
        protocol = record.get("protocol")
        return cls({str(m): {int(pr): {k: float(v[k]) for k in names} for pr, v in lv.items()}
                    for m, lv in record["modes"].items()}, dict(protocol) if protocol is not None else None)
