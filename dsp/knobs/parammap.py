"""The parameter map: fitted DSP parameters of a device at any of its settings.

A setting is a knob dict (:mod:`audio.devices`). Fitting a device gives the
compressor's five parameters at some settings; a :class:`ParamMap` holds them and
answers at any setting. Three kinds implement it:

- :class:`dsp.knobs.knobmap.KnobMap` (the LA-2A): per switch position, the parameters
  **interpolated** over peak reduction;
- :class:`dsp.knobs.knobtable.KnobTable` (a device with arbitrary knobs): the **nearest**
  fitted setting's parameters;
- :class:`dsp.knobs.knobcurves.KnobCurves` (a device with arbitrary knobs, ``method=joint``):
  **curves** smooth in every knob.

All store themselves as a plain record with a ``kind`` (YAML on disk, inside a
neural checkpoint), which :func:`param_map_from_record` / :func:`load_param_map`
dispatch on.
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
from dsp.storage.records import check_params

__all__ = ["ParamMap", "register", "param_map_from_record", "load_param_map", "check_param_map"]

_KINDS: dict[str, type["ParamMap"]] = {}


def register(cls: type["ParamMap"]) -> type["ParamMap"]:
    """Class decorator: the kind ``cls.kind`` is read back as ``cls``."""
    _KINDS[cls.kind] = cls
    return cls


class ParamMap(ABC):
    """Fitted parameters of a device over its settings.

    Attributes:
        kind: what the stored record is (``knobmap``, ``knobtable``).
        between: how a setting that was not fitted is answered (``interp``, ``nearest``).
        device: the :class:`audio.devices.Device` whose settings these are.
    """

    kind: str
    between: str
    device: Device

    @property
    def knobs(self) -> list[str]:
        return list(self.device.knobs)

    @abstractmethod
    def fitted(self) -> list[tuple[dict, dict]]:
        """Every fitted setting (a knob dict) with its parameters."""

    def settings(self) -> list[dict]:
        """Every fitted setting, as knob dicts."""
        return [setting for setting, _ in self.fitted()]

    def finite(self) -> bool:
        return all(math.isfinite(v) for _, params in self.fitted() for v in params.values())

    @abstractmethod
    def at(self, setting: dict) -> dict[str, float]:
        """The five physical parameters at ``setting``."""

    @abstractmethod
    def at_without(self, setting: dict) -> dict[str, float]:
        """The parameters at ``setting`` as if it had not been fitted (leave-one-out)."""

    @abstractmethod
    def check(self, setting: dict, where: str = "") -> None:
        """UserError (prefixed ``where: ``) when ``setting`` lies outside what was fitted."""

    @abstractmethod
    def subset(self, keep: Callable[[dict], bool]) -> "ParamMap":
        """The map of only the fitted settings where ``keep(setting)``."""

    @abstractmethod
    def to_record(self) -> dict:
        """Plain types, ``kind`` included."""

    @classmethod
    @abstractmethod
    def from_record(cls, record: dict) -> "ParamMap":
        """Inverse of :meth:`to_record`; raises KeyError, TypeError or ValueError on a bad record."""

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_record(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "ParamMap":
        pm = load_param_map(path)
        if not isinstance(pm, cls):
            raise UserError(f"{path}: is a {pm.kind}, expected a {cls.kind}")
        return pm


_KIND_MODULES = ("dsp.knobs.knobmap", "dsp.knobs.knobtable", "dsp.knobs.knobcurves")   # each registers its kind on import


def param_map_from_record(record: dict) -> ParamMap:
    """The map a :meth:`ParamMap.to_record` dict describes (KeyError on an unknown kind)."""
    import importlib
    for name in _KIND_MODULES:   # here, not at the top: they import this module
        importlib.import_module(name)
    return _KINDS[record["kind"]].from_record(record)


def load_param_map(path: str | Path) -> ParamMap:
    """Read a parameter map file (``knobmap.yaml``, ``knobtable.yaml``), of either kind.

    Raises:
        UserError: a missing or unreadable file, an unknown kind, non-finite values.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: knob map not found (run a chain with train_comp.py first)")
    try:
        record = yaml.safe_load(p.read_text())
        pm = param_map_from_record({"kind": "knobmap", **record})   # the first knob maps had no kind
    except UserError:
        raise
    except Exception:
        raise UserError(f"{p}: not a valid knob map") from None
    if not pm.settings():
        raise UserError(f"{p}: knob map is empty")
    check_param_map(pm, str(p))
    return pm


def check_param_map(pm: ParamMap, where: str) -> None:
    """Every fitted entry of ``pm`` a valid setting of its device with valid parameters
    (the checkpoints' check, :func:`dsp.storage.records.check_params`).

    Raises:
        UserError: naming ``where`` and the bad entry.
    """
    for setting, params in pm.fitted():
        label = pm.device.label(setting) if _valid_setting(pm, setting, where) else str(setting)
        check_params(params, f"{where}: {label}")


def _valid_setting(pm: ParamMap, setting: dict, where: str) -> bool:
    try:
        pm.device.check(setting)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return True
