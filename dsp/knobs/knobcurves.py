"""Knob curves: a device with arbitrary knobs, its five parameters smooth in every knob.

The :class:`dsp.knobs.parammap.ParamMap` of ``train_comp.py data=manifest method=joint``: one
joint fit (:func:`dsp.fitting.joint.fit_joint`) over every Train take of the device, each solver
coordinate an additive spline in the knobs (:class:`dsp.knobs.basis.KnobBasis`). Where the
per-take knob table (:class:`dsp.knobs.knobtable.KnobTable`) answers an unfitted setting with
the nearest fitted one, the curves answer every setting with their own value, smooth in
each knob.

- Settings farther than :data:`dsp.knobs.knobtable.FAR` (in knob units scaled by the fitted
  range) outside the fitted range of any knob are refused, as in the knob table; within
  that margin the curves hold their end values.
- A joint fit is one model for all settings, so leaving one setting out
  (:meth:`KnobCurves.at_without`) gives the same answer as :meth:`KnobCurves.at`.
"""
from __future__ import annotations

from typing import Callable

from audio.devices import KnobDevice
from common.errors import UserError
from dsp.knobs.joint_curves import JointResult
from dsp.knobs.knobtable import KnobTable
from dsp.knobs.parammap import ParamMap
from dsp.models.classes import CLASS_KEY, ModelParams

__all__ = ["KnobCurves"]


class KnobCurves(ParamMap):
    """A joint fit of a device with its own knobs, read as a parameter map.

    Args:
        fit: the joint fit (its basis names the knobs, in the device's order).
        name: the device's name (see :class:`audio.devices.KnobDevice`).
        settings: the fitted settings (knob dicts); default: the fit's own.
        protocol: what the fit read (``fit_splits``, ``data_key``: the identity of the
            fitted takes' files), kept in the record.
    """

    form = "knobcurves"   # the record's "kind" key
    between = "curves"
    compressor = "ff5"   # the curves are the five compressor parameters'

    def __init__(self, fit: JointResult, name: str = "manifest", settings: list[dict] | None = None,
                 protocol: dict | None = None):
        self.fit = fit
        self.protocol = dict(protocol or {})
        self.device = KnobDevice(list(fit.curves.knob_names), name)
        if settings is None:
            settings = [self.device.setting(s.knobs) for s in fit.settings]
        if not settings:
            raise UserError("knob curves: no fitted setting")
        self._settings = [dict(s) for s in settings]
        self._range = KnobTable.of_settings(self.knobs, self._settings)   # the fitted range, for check()

    def fitted(self) -> list[tuple[dict, dict]]:
        return [(dict(s), self.at(s)) for s in self._settings]

    def check(self, setting: dict, where: str = "") -> None:
        self._range.check(setting, where)

    def check_fitted(self, setting: dict, where: str = "") -> None:
        self._range.check_fitted(setting, where)

    def at(self, setting: dict) -> ModelParams:
        self.check(setting)
        return self._params(self.fit.curves.params_at({k: float(setting[k]) for k in self.knobs}))

    def at_without(self, setting: dict) -> ModelParams:
        """The curves at ``setting``: one model for every setting, nothing to leave out."""
        return self.at(setting)

    def subset(self, keep: Callable[[dict], bool]) -> "KnobCurves":
        return KnobCurves(self.fit, self.device.name, [s for s in self._settings if keep(s)], self.protocol)

    def to_record(self) -> dict:
        return {"kind": self.form, CLASS_KEY: self.compressor, "name": self.device.name, "knobs": self.knobs,
                "settings": [dict(s) for s in self._settings], "protocol": dict(self.protocol),
                "fit": self.fit.to_record()}

    @classmethod
    def from_record(cls, record: dict) -> "KnobCurves":
        if record.get(CLASS_KEY) != cls.compressor:
            raise ValueError(f"knob curves hold {cls.compressor} parameters; the record names "
                             f"{CLASS_KEY}: {record.get(CLASS_KEY)!r}")
        fit = JointResult.from_record(record["fit"])
        if list(record["knobs"]) != list(fit.curves.knob_names):
            raise ValueError(f"knobs {record['knobs']} differ from the curves' {list(fit.curves.knob_names)}")
        return cls(fit, str(record.get("name", "manifest")), [dict(s) for s in record["settings"]],
                   dict(record.get("protocol") or {}))
