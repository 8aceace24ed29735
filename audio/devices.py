"""What a device's settings are: its knobs, how a setting reads, what a model sees of it.

A **setting** is a knob dict. The LA-2A's is ``{"mode": "compress"|"limit",
"peak_reduction": 65}``; a device described by a corpus of its own (a CSV of takes,
:mod:`audio.manifest`) has its own numeric knobs, e.g. ``{"threshold": -20.0,
"ratio": 4.0}``. A :class:`Device` says, for its settings:

- ``knobs``: the knob names, in their order;
- :meth:`Device.key`: a setting as a hashable tuple (knob order);
- :meth:`Device.check`: a one-line error for a setting the device does not have;
- :meth:`Device.label`: a setting as people read it (``compress PR 65``);
- :meth:`Device.feature`: a knob's value as a number about unit range, what a neural
  model is conditioned on (:data:`Device.conditionings` names the vectors);
- :meth:`Device.columns`: a setting as table columns (CSV and printed tables).

The same code then fits, trains, scores and renders any device.
"""
from __future__ import annotations

import math

from common.errors import UserError

__all__ = ["MODES", "SWITCH", "knob_number", "Device", "LA2A", "KnobDevice", "la2a_setting", "knob_columns"]

MODES = ("compress", "limit")           # the LA-2A's switch; the index is the switch value
SWITCH = {m: i for i, m in enumerate(MODES)}

# conditioning name -> (with the fitted DSP parameters first, knobs whose features follow)
Conditionings = dict[str, tuple[bool, tuple[str, ...]]]


def knob_columns(knobs, taken) -> dict[str, str]:
    """Column name of every knob in a table: its own name, or ``knob_<name>`` where that
    is already one of the ``taken`` columns."""
    return {k: (f"knob_{k}" if k in taken else k) for k in knobs}


def knob_number(knob: str, value) -> float:
    """A knob's value as a finite float; UserError naming the knob otherwise (text, None,
    NaN, infinity)."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise UserError(f"knob {knob} = {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"knob {knob} = {value!r} is not a number") from None
    if not math.isfinite(number):
        raise UserError(f"knob {knob} = {number} is not finite")
    return number


class Device:
    """The settings of one device (see the module doc)."""

    name: str
    knobs: tuple[str, ...]
    conditionings: Conditionings
    # variant -> (the conditioning it takes by default, the ones it may take)
    variants: dict[str, tuple[str, tuple[str, ...]]]

    def key(self, setting: dict) -> tuple:
        return tuple(setting[k] for k in self.knobs)

    def setting(self, key) -> dict:
        """The knob dict of a :meth:`key` tuple."""
        return dict(zip(self.knobs, key))

    def check(self, setting: dict) -> None:
        """UserError unless ``setting`` names exactly the device's knobs, each a valid value."""
        missing = [k for k in self.knobs if k not in setting]
        extra = [k for k in setting if k not in self.knobs]
        if missing or extra:
            raise UserError(f"knob setting {dict(setting)} does not match the knobs {', '.join(self.knobs)}"
                            + (f" (missing {', '.join(missing)})" if missing else "")
                            + (f" (unknown {', '.join(extra)})" if extra else ""))

    def label(self, setting: dict) -> str:
        raise NotImplementedError

    def feature(self, knob: str, value) -> float:
        raise NotImplementedError

    def columns(self, setting: dict, taken=()) -> dict:
        """The setting as table cells (``taken``: the table's other columns)."""
        raise NotImplementedError

    def sort_key(self, setting: dict):
        return self.key(setting)

    def conditioning_size(self, name: str) -> int:
        with_params, knobs = self.conditionings[name]
        return (5 if with_params else 0) + len(knobs)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.knobs == other.knobs

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.knobs))


class _LA2A(Device):
    """The LA-2A: the compress/limit switch and the peak-reduction knob (0..100)."""

    name = "la2a"
    knobs = ("mode", "peak_reduction")
    conditionings = {
        "fitted": (True, ("mode",)),                          # the fit and the switch
        "knobs": (False, ("peak_reduction", "mode")),         # PR / 100 and the switch
        "fitted+knobs": (True, ("mode", "peak_reduction")),   # the fit, the switch, PR / 100
    }
    variants = {"hybrid": ("fitted+knobs", ("fitted+knobs", "fitted", "knobs")),
                "blackbox": ("knobs", ("knobs",))}

    def check(self, setting: dict) -> None:
        super().check(setting)
        mode = setting["mode"]
        if not isinstance(mode, str) or mode not in SWITCH:
            raise UserError(f"unknown mode {mode!r} (use compress or limit)")
        pr = knob_number("peak_reduction", setting["peak_reduction"])
        if not 0 <= pr <= 100:
            raise UserError(f"peak reduction {pr:g} is outside 0..100")

    def label(self, setting: dict) -> str:
        return f"{setting['mode']} PR {float(setting['peak_reduction']):g}"

    def feature(self, knob: str, value) -> float:
        if knob == "mode":
            if value not in SWITCH:
                raise UserError(f"unknown mode {value!r} (use compress or limit)")
            return float(SWITCH[value])
        return float(value) / 100.0

    def columns(self, setting: dict, taken=()) -> dict:
        return {"mode": setting["mode"], "peak_reduction": setting["peak_reduction"]}

    def sort_key(self, setting: dict):
        return setting["mode"], -setting["peak_reduction"]


LA2A = _LA2A()


def la2a_setting(mode: str, peak_reduction) -> dict:
    """The LA-2A setting ``{"mode": mode, "peak_reduction": peak_reduction}``."""
    return {"mode": mode, "peak_reduction": peak_reduction}


class KnobDevice(Device):
    """A device with numeric knobs of any names (its takes listed in a CSV).

    Its knob features are the raw values (the conditioning is standardised over the
    trained settings downstream). ``name`` is what the ``mode`` column of a comparison
    shows for it.
    """

    variants = {"hybrid": ("fitted+knobs", ("fitted+knobs", "knobs")), "blackbox": ("knobs", ("knobs",))}

    def __init__(self, knobs, name: str = "manifest"):
        self.knobs = tuple(str(k) for k in knobs)
        if not self.knobs:
            raise UserError("a device needs at least one knob")
        self.name = name
        self.conditionings = {"fitted+knobs": (True, self.knobs), "knobs": (False, self.knobs)}

    def check(self, setting: dict) -> None:
        super().check(setting)
        for k in self.knobs:
            knob_number(k, setting[k])

    def key(self, setting: dict) -> tuple:
        return tuple(float(setting[k]) for k in self.knobs)

    def label(self, setting: dict) -> str:
        return ", ".join(f"{k} {float(setting[k]):g}" for k in self.knobs)

    def feature(self, knob: str, value) -> float:
        return float(value)

    def columns(self, setting: dict, taken=()) -> dict:
        names = knob_columns(self.knobs, taken)
        return {names[k]: setting[k] for k in self.knobs}
