"""The knob table: DSP parameters of a device with arbitrary knobs, at any knob setting.

The :class:`dsp.knobs.parammap.ParamMap` of a device described by its takes (a CSV,
:mod:`audio.manifest`): ``train_comp.py data=manifest`` fits the 5-parameter
compressor to every Train take; the table holds one fit per distinct knob setting.

- At a fitted setting (the same knob values as a Train take) the parameters are that
  take's fit (with several Train takes at one setting, the first one listed).
- At a setting never fitted, they are those of the **nearest** fitted setting in knob
  space, each knob scaled by its range over the fitted settings (a knob constant over
  them is scaled by ``max(|value|, 1)``). No interpolation: the knobs of an arbitrary
  device need not map smoothly or monotonically onto the 5 parameters.
- A setting farther than :data:`FAR` (in those scaled units) outside the fitted range
  of any knob is refused (:class:`UserError`): nothing was fitted anywhere near it.

The fits themselves lie one per take in ``DSP_DIR/rows/<index>_<label>/ckpt.yaml``
(:mod:`dsp.storage.take_fits`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from audio.devices import KnobDevice
from common.errors import UserError
from dsp.knobs.parammap import ParamMap
from dsp.models.classes import CLASS_KEY, ModelParams, model_class

__all__ = ["FAR", "KnobTable"]

FAR = 0.5  # scaled distance outside the fitted range beyond which a setting is refused


class KnobTable(ParamMap):
    """Fitted DSP parameters per knob setting.

    Args:
        knobs: the knob names, in the device's order.
        settings: ``[(knob values dict, params dict), ...]``; a repeated setting keeps
            its first entry.
        name: the device's name (see :class:`audio.devices.KnobDevice`).
        compressor: the model class of every entry.
    """

    form = "knobtable"   # the record's "kind" key
    between = "nearest"

    def __init__(self, knobs: list[str], settings: list[tuple[dict, dict]], name: str = "manifest",
                 compressor: str = "ff5"):
        if not list(knobs):
            raise UserError("knob table: no knobs")
        self.device = KnobDevice(knobs, name)
        self.compressor = model_class(compressor).name
        table: dict[tuple, dict] = {}
        for values, params in settings:
            key = self._key(values)
            table.setdefault(key, {k: float(params[k]) for k in self.model_class.param_names})
        if not table:
            raise UserError("knob table: no fitted setting")
        self.table = table
        pts = np.asarray(list(table), dtype=float)
        self.lo, self.hi = pts.min(0), pts.max(0)
        span = self.hi - self.lo
        self.scale = np.where(span > 0, span, np.maximum(np.abs(self.lo), 1.0))
        self._points = pts

    def _key(self, setting: dict) -> tuple:
        self.device.check(setting)
        return self.device.key(setting)

    def fitted(self) -> list[tuple[dict, dict]]:
        return [(self.device.setting(key), self._params(p)) for key, p in self.table.items()]

    def has(self, setting: dict) -> bool:
        """Whether ``setting`` is a fitted setting."""
        return self._key(setting) in self.table

    def check(self, setting: dict, where: str = "") -> None:
        """UserError when ``setting`` lies more than :data:`FAR` outside the fitted range."""
        prefix = f"{where}: " if where else ""
        try:
            q = np.asarray(self._key(setting))
        except UserError as exc:
            raise UserError(f"{prefix}{exc}") from None
        excess = np.maximum(np.maximum(self.lo - q, q - self.hi), 0.0) / self.scale
        if np.any(excess > FAR):
            i = int(np.argmax(excess))
            raise UserError(f"{prefix}knob {self.knobs[i]} = {q[i]:g} lies far outside the fitted range "
                            f"{self.lo[i]:g}..{self.hi[i]:g} (no fitted setting near {dict(setting)})")

    def nearest(self, setting: dict, exclude_self: bool = False) -> dict:
        """The nearest fitted setting (scaled knob space) as a knob dict.

        ``exclude_self``: leave the setting itself out (leave-one-out), unless it is the
        only one.
        """
        q = np.asarray(self._key(setting))
        d = np.sqrt((((self._points - q) / self.scale) ** 2).sum(1))
        if exclude_self and len(d) > 1:
            d = np.where(d == 0.0, np.inf, d)
        return self.device.setting(float(v) for v in self._points[int(np.argmin(d))])

    def at(self, setting: dict) -> ModelParams:
        """DSP parameters at a setting: its fit, or the nearest fitted setting's."""
        self.check(setting)
        return self._params(self.table[self._key(self.nearest(setting))])

    def at_without(self, setting: dict) -> ModelParams:
        """The nearest *other* fitted setting's parameters (leave-one-out)."""
        self.check(setting)
        return self._params(self.table[self._key(self.nearest(setting, exclude_self=True))])

    def check_fitted(self, setting: dict, where: str = "") -> None:
        """:meth:`check`, the error naming the nearest fitted setting."""
        try:
            self.check(setting, where)
        except UserError as exc:
            try:
                hint = f"; the nearest fitted setting is {self.device.label(self.nearest(setting))}"
            except (UserError, KeyError, ValueError):
                hint = ""
            raise UserError(f"{exc}{hint}") from None

    def subset(self, keep: Callable[[dict], bool]) -> "KnobTable":
        return KnobTable(self.knobs, [(s, p) for s, p in self.fitted() if keep(s)], self.device.name, self.compressor)

    @classmethod
    def of_settings(cls, knobs: list[str], settings: list[dict]) -> "KnobTable":
        """A table of the settings alone (placeholder parameters): to :meth:`check`
        settings against the fitted range before anything is fitted."""
        return cls(knobs, [(k, _PLACEHOLDER) for k in settings])

    def to_record(self) -> dict:
        return {"kind": self.form, CLASS_KEY: self.compressor, "name": self.device.name, "knobs": list(self.knobs),
                "settings": [{"knobs": s, "params": dict(p)} for s, p in self.fitted()]}

    @classmethod
    def from_record(cls, record: dict) -> "KnobTable":
        if CLASS_KEY not in record:
            raise ValueError(f"knob table names no model class (a '{CLASS_KEY}:' entry)")
        return cls(list(record["knobs"]), [(s["knobs"], s["params"]) for s in record["settings"]],
                   str(record.get("name", "manifest")), str(record[CLASS_KEY]))


_PLACEHOLDER = {"threshold_db": 0.0, "ratio": 1.0, "attack_ms": 1.0, "release_ms": 1.0, "make_up_db": 0.0}
