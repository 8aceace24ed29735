"""The knob map: the LA-2A's fitted parameters against peak reduction, interpolated at any PR.

Interpolation follows how each parameter behaves (:data:`INTERPOLATION`): threshold and
make-up linearly in dB, ratio linearly in log-ratio, attack and release with a monotone
cubic (PCHIP) in log-time; a gray-box map's block parameters: frequencies linearly in
log-frequency, dB, drive and asymmetry linearly; an opto map's cell parameters: the slow
release and the memory time like the other times, the memory depth and the sidechain
shelf's corner linearly in log, the slow fraction, the shelf's gain and the input tap
linearly (compress mode's tap is 0 at every level). Outside the fitted range the end values
are held by :meth:`KnobMap.at`; renderers refuse such settings first
(:meth:`KnobMap.check_fitted`). The record names the model class (``compressor``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.interpolate import PchipInterpolator

from audio.devices import LA2A, la2a_setting
from common.errors import UserError
from dsp.knobs.parammap import ParamMap
from dsp.models.classes import CLASS_KEY, ModelParams, model_class

__all__ = ["KnobMap", "INTERPOLATION"]

# How each parameter is interpolated between fitted levels; every parameter of a class
# that a knob map holds needs a rule here.
INTERPOLATION = {"threshold_db": "linear", "make_up_db": "linear", "ratio": "linear in log",
                 "attack_ms": "monotone cubic in log", "release_ms": "monotone cubic in log",
                 "input_highpass_hz": "linear in log", "input_shelf_hz": "linear in log",
                 "input_shelf_db": "linear", "tube_drive": "linear", "tube_asymmetry": "linear",
                 "output_highpass_hz": "linear in log",
                 "release_slow_ms": "monotone cubic in log", "memory_ms": "monotone cubic in log",
                 "memory_depth": "linear in log", "sidechain_shelf_hz": "linear in log",
                 "slow_fraction": "linear", "sidechain_shelf_db": "linear", "input_mix": "linear"}


def _interpolate(rule: str, q: float, pr: np.ndarray, col: np.ndarray) -> float:
    if rule == "linear":
        return float(np.interp(q, pr, col))
    if rule == "linear in log":
        return float(math.exp(np.interp(q, pr, np.log(col))))
    if rule == "monotone cubic in log":
        return float(np.exp(PchipInterpolator(pr, np.log(col))(q)))
    raise ValueError(f"unknown interpolation {rule!r}")


class KnobMap(ParamMap):
    """Per mode, sorted PR levels and the parameters fitted there.

    Args:
        table: ``{mode: {peak_reduction: params}}``.
        compressor: the model class of every entry (:mod:`dsp.models.classes`).
        protocol: how the parameters were obtained (method, the splits read, the levels
            held out and the levels actually fitted), as written by the fit job; None
            when unknown (a map made by hand).
    """

    form = "knobmap"   # the record's "kind" key
    between = "interp"
    device = LA2A

    def __init__(self, table: dict[str, dict[int, dict[str, float]]], compressor: str,
                 protocol: dict | None = None):
        self.compressor = model_class(compressor).name
        self.names = self.model_class.param_names
        missing = [k for k in self.names if k not in INTERPOLATION]
        if missing:
            raise ValueError(f"knob map: no interpolation rule for {', '.join(missing)}")
        self.table = {m: {int(pr): {k: float(v[k]) for k in self.names} for pr, v in sorted(levels.items())}
                      for m, levels in table.items() if levels}
        self.protocol = protocol

    @classmethod
    def from_rows(cls, rows: list[dict], compressor: str, protocol: dict | None = None) -> "KnobMap":
        """From summary rows (``mode``, ``peak_reduction`` and the class's parameters)."""
        table: dict[str, dict[int, dict[str, float]]] = {}
        for r in rows:
            table.setdefault(r["mode"], {})[int(r["peak_reduction"])] = r
        return cls(table, compressor, protocol)

    @property
    def modes(self) -> list[str]:
        return list(self.table)

    def levels(self, mode: str) -> list[int]:
        return list(self.table[mode])

    def fitted(self) -> list[tuple[dict, dict]]:
        return [(la2a_setting(m, pr), self._params(p)) for m, lv in self.table.items() for pr, p in lv.items()]

    def check(self, setting: dict, where: str = "") -> None:
        """A valid LA-2A setting of a mode the map has (outside the fitted levels :meth:`at`
        holds the end values)."""
        LA2A.check(setting)
        if setting["mode"] not in self.table:
            raise UserError(f"{where or 'knob map'}: has no {setting['mode']!r} mode (has {', '.join(self.table)})")

    def check_fitted(self, setting: dict, where: str = "") -> None:
        """:meth:`check`, and the peak reduction within the mode's fitted levels; the error
        names the nearest fitted setting."""
        self.check(setting, where)
        mode, pr = setting["mode"], float(setting["peak_reduction"])
        lo, hi = min(self.table[mode]), max(self.table[mode])
        if not lo <= pr <= hi:
            nearest = lo if pr < lo else hi
            raise UserError(f"{where or 'knob map'}: {LA2A.label(setting)} lies outside the fitted levels {lo}..{hi} "
                            f"of {mode}; the nearest fitted setting is {mode} PR {nearest} "
                            f"(choose --peak-reduction in {lo}..{hi})")

    def at(self, setting: dict) -> ModelParams:
        """Parameters at a valid setting (:meth:`check`: a mode the map has, PR a number in
        0..100); between the fitted levels interpolated, outside them the end level's."""
        self.check(setting)
        mode, peak_reduction = setting["mode"], float(setting["peak_reduction"])
        levels = self.table[mode]
        if len(levels) == 1:
            return self._params(next(iter(levels.values())))
        pr = np.asarray(list(levels), dtype=float)
        q = float(np.clip(peak_reduction, pr.min(), pr.max()))
        return self._params({k: _interpolate(INTERPOLATION[k], q, pr, np.asarray([v[k] for v in levels.values()]))
                             for k in self.names})

    def at_without(self, setting: dict) -> ModelParams:
        """Interpolated from every other fitted level (the level itself left out)."""
        pr = setting["peak_reduction"]
        others = self.subset(lambda s: s["peak_reduction"] != pr)
        return others.at(setting) if setting["mode"] in others.table else self.at(setting)

    def subset(self, keep: Callable[[dict], bool]) -> "KnobMap":
        """Knob map built from only the levels where ``keep(setting)`` is true."""
        return KnobMap({m: {pr: v for pr, v in lv.items() if keep(la2a_setting(m, pr))}
                        for m, lv in self.table.items()}, self.compressor, self.protocol)

    def to_record(self) -> dict:
        record = {"kind": self.form, CLASS_KEY: self.compressor,
                  "interpolation": {k: INTERPOLATION[k] for k in self.names},
                  "modes": {m: {int(pr): dict(v) for pr, v in lv.items()} for m, lv in self.table.items()}}
        if self.protocol is not None:
            record["protocol"] = self.protocol
        return record

    @classmethod
    def from_record(cls, record: dict) -> "KnobMap":
        if CLASS_KEY not in record:
            raise ValueError(f"knob map names no model class (a '{CLASS_KEY}:' entry)")
        protocol = record.get("protocol")
        return cls({str(m): {int(pr): v for pr, v in lv.items()} for m, lv in record["modes"].items()},
                   str(record[CLASS_KEY]), dict(protocol) if protocol is not None else None)
