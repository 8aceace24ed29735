"""The knob table: DSP parameters of a device with arbitrary knobs, at any knob setting.

The :class:`dsp.parammap.ParamMap` of a device described by its takes (a CSV,
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
(:func:`take_dir`); :func:`take_fit` reads one back, :func:`load_take_fits` makes the table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from audio.devices import KnobDevice
from common.errors import UserError
from dsp.checkpoint import load_checkpoint
from dsp.fitkey import files_change, key_change
from dsp.params import PARAM_NAMES
from dsp.parammap import ParamMap, register

__all__ = ["FAR", "KnobTable", "take_dir", "take_fit", "fit_matches", "load_take_fits"]

FAR = 0.5  # scaled distance outside the fitted range beyond which a setting is refused


@register
class KnobTable(ParamMap):
    """Fitted DSP parameters per knob setting.

    Args:
        knobs: the knob names, in the device's order.
        settings: ``[(knob values dict, params dict), ...]``; a repeated setting keeps
            its first entry.
        name: the device's name (see :class:`audio.devices.KnobDevice`).
    """

    kind = "knobtable"
    between = "nearest"

    def __init__(self, knobs: list[str], settings: list[tuple[dict, dict]], name: str = "manifest"):
        if not list(knobs):
            raise UserError("knob table: no knobs")
        self.device = KnobDevice(knobs, name)
        table: dict[tuple, dict] = {}
        for values, params in settings:
            key = self._key(values)
            table.setdefault(key, {k: float(params[k]) for k in PARAM_NAMES})
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
        return [(self.device.setting(key), dict(p)) for key, p in self.table.items()]

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

    def at(self, setting: dict) -> dict:
        """DSP parameters at a setting: its fit, or the nearest fitted setting's."""
        self.check(setting)
        return dict(self.table[self._key(self.nearest(setting))])

    def at_without(self, setting: dict) -> dict:
        """The nearest *other* fitted setting's parameters (leave-one-out)."""
        self.check(setting)
        return dict(self.table[self._key(self.nearest(setting, exclude_self=True))])

    def subset(self, keep: Callable[[dict], bool]) -> "KnobTable":
        return KnobTable(self.knobs, [(s, p) for s, p in self.fitted() if keep(s)], self.device.name)

    @classmethod
    def of_settings(cls, knobs: list[str], settings: list[dict]) -> "KnobTable":
        """A table of the settings alone (placeholder parameters): to :meth:`check`
        settings against the fitted range before anything is fitted."""
        return cls(knobs, [(k, _PLACEHOLDER) for k in settings])

    def to_record(self) -> dict:
        return {"kind": self.kind, "knobs": list(self.knobs),
                "settings": [{"knobs": s, "params": p} for s, p in self.fitted()]}

    @classmethod
    def from_record(cls, record: dict) -> "KnobTable":
        return cls(list(record["knobs"]), [(s["knobs"], s["params"]) for s in record["settings"]])


_PLACEHOLDER = {"threshold_db": 0.0, "ratio": 1.0, "attack_ms": 1.0, "release_ms": 1.0, "make_up_db": 0.0}


# --- the fits of the takes, one folder each ------------------------------------------------
def take_dir(dsp_dir: str | Path, take) -> Path:
    """The folder of one take's fit: ``DSP_DIR/rows/<index>_<label>``."""
    return Path(dsp_dir) / "rows" / f"{take.index:04d}_{take.label()}"


def fit_matches(record: dict, take) -> bool:
    """Whether a take's checkpoint was fitted on this take's files at its knobs."""
    knobs = record.get("knobs") or {}
    same_knobs = set(knobs) == set(take.knobs) and all(float(knobs[k]) == float(v) for k, v in take.knobs.items())

    def same(a, b) -> bool:
        return a is not None and Path(str(a)).resolve() == Path(b).resolve()
    return (same_knobs and same(record.get("input"), take.input) and same(record.get("target"), take.target)
            and files_change(record, take.input, take.target) is None)


def take_fit(dsp_dir: str | Path, take, key: dict | None = None, on_stale=None) -> dict | None:
    """The take's own fit in ``dsp_dir`` (its ``ckpt.yaml`` record), or None where there is
    none, it is unreadable, or it was fitted on other files (paths or contents) or knobs
    (another corpus's take), or, given its :mod:`dsp.fitkey` ``key``, with other settings.

    ``on_stale(ckpt, reason)`` is called when a fit exists but is not this take's.
    """
    ckpt = take_dir(dsp_dir, take) / "ckpt.yaml"
    if not ckpt.is_file():
        return None
    try:
        record = load_checkpoint(ckpt)
    except UserError:
        return None
    reason = None if fit_matches(record, take) else (files_change(record, take.input, take.target)
                                                     or "it is the fit of other files or knobs")
    if reason is None and key is not None:
        reason = key_change(record, key)
    if reason is not None:
        if on_stale is not None:
            on_stale(ckpt, reason)
        return None
    return record


def load_take_fits(takes, dsp_dir: str | Path, name: str = "manifest") -> KnobTable:
    """The table of the fits ``train_comp.py data=manifest ckpt_dir=DSP_DIR`` wrote for ``takes``.

    Raises:
        UserError: a take without its fit (``dsp_dir/rows/<index>_<label>/ckpt.yaml``),
            or a fit of other files or knobs than the take's.
    """
    settings = []
    for take in takes:
        ckpt = take_dir(dsp_dir, take) / "ckpt.yaml"
        if not ckpt.is_file():
            raise UserError(f"{ckpt}: no fit of manifest line {take.index}; run "
                            f"`python train_comp.py data=manifest data.path=... ckpt_dir={dsp_dir}` first")
        record = load_checkpoint(ckpt)
        if not fit_matches(record, take):
            raise UserError(f"{ckpt}: is the fit of other files or knobs than manifest line {take.index} "
                            f"(refit with train_comp.py into another ckpt_dir)")
        settings.append((take.knobs, record["params"]))
    if not settings:
        raise UserError(f"{dsp_dir}: no fitted manifest rows")
    return KnobTable(list(takes[0].knobs), settings, name)
