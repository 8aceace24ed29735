"""The parameter map: fitted DSP parameters of a device at any of its settings.

A setting is a knob dict (:mod:`audio.devices`). Fitting a device gives a model class's
parameters at some settings; a :class:`ParamMap` holds them and answers at any setting.
Three forms implement it:

- :class:`dsp.knobs.knobmap.KnobMap` (the LA-2A): per switch position, the parameters
  **interpolated** over peak reduction;
- :class:`dsp.knobs.knobtable.KnobTable` (a device with arbitrary knobs): the
  **nearest** fitted setting's parameters;
- :class:`dsp.knobs.knobcurves.KnobCurves` (a device with arbitrary knobs,
  ``method=joint``): **curves** smooth in every knob.

Each stores itself as a plain record naming its form (key ``kind``) and its model class
(``compressor``); :mod:`dsp.storage.open_fit` reads any of them back.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import yaml

from audio.devices import Device
from common.atomic import write_text_atomic
from common.errors import UserError
from dsp.models.classes import ModelClass, ModelParams, model_class

__all__ = ["ParamMap", "check_param_map"]


class ParamMap(ABC):
    """Fitted parameters of a device over its settings.

    Attributes:
        form: what the stored record is (``knobmap``, ``knobtable``, ``knobcurves``; its ``kind`` key).
        between: how a setting that was not fitted is answered (``interp``, ``nearest``, ``curves``).
        device: the :class:`audio.devices.Device` whose settings these are.
        compressor: the model class's name (:mod:`dsp.models.classes`).
    """

    form: str
    between: str
    device: Device
    compressor: str

    @property
    def knobs(self) -> list[str]:
        return list(self.device.knobs)

    @property
    def model_class(self) -> ModelClass:
        return model_class(self.compressor)

    def _params(self, values: dict) -> ModelParams:
        return ModelParams(self.compressor, {k: float(values[k]) for k in self.model_class.param_names})

    @abstractmethod
    def fitted(self) -> list[tuple[dict, dict]]:
        """Every fitted setting (a knob dict) with its parameters."""

    def settings(self) -> list[dict]:
        """Every fitted setting, as knob dicts."""
        return [setting for setting, _ in self.fitted()]

    def finite(self) -> bool:
        return all(math.isfinite(v) for _, params in self.fitted() for v in params.values())

    @abstractmethod
    def at(self, setting: dict) -> ModelParams:
        """The model's physical parameters at ``setting``."""

    @abstractmethod
    def at_without(self, setting: dict) -> ModelParams:
        """The parameters at ``setting`` as if it had not been fitted (leave-one-out)."""

    @abstractmethod
    def check(self, setting: dict, where: str = "") -> None:
        """UserError (prefixed ``where: ``) when ``setting`` is no setting this map answers."""

    def check_fitted(self, setting: dict, where: str = "") -> None:
        """The one out-of-range policy of every renderer (command line, API, neural models):
        UserError unless ``setting`` lies within what was fitted; the error names the
        nearest fitted setting. By default the same as :meth:`check`."""
        self.check(setting, where)

    @abstractmethod
    def subset(self, keep: Callable[[dict], bool]) -> "ParamMap":
        """The map of only the fitted settings where ``keep(setting)``."""

    @abstractmethod
    def to_record(self) -> dict:
        """Plain types, ``kind`` and ``compressor`` included."""

    @classmethod
    @abstractmethod
    def from_record(cls, record: dict) -> "ParamMap":
        """Inverse of :meth:`to_record`; raises KeyError, TypeError or ValueError on a bad record."""

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_record(), sort_keys=False))


def check_param_map(pm: ParamMap, where: str) -> None:
    """Every fitted entry of ``pm`` a valid setting of its device with valid parameters of
    its class (:meth:`dsp.models.classes.ModelClass.check`).

    Raises:
        UserError: naming ``where`` and the bad entry.
    """
    for setting, params in pm.fitted():
        try:
            pm.device.check(setting)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        try:
            pm.model_class.check(params, f"{where}: {pm.device.label(setting)}")
        except ValueError as exc:
            raise UserError(str(exc)) from None
