"""The one check of the command line's list and count settings, for every entry point.

Hydra accepts any value for any key (``levels=abc`` is the string "abc",
``levels=[100.5]`` a float), so each job calls :func:`check_overrides` on its config
first: peak-reduction lists hold whole numbers in 0..100 without repeats, modes are
the switch's positions, seeds and counts are whole numbers, durations are seconds
above 0. Keys a config does not have are skipped. Each problem is one :class:`UserError` naming the key and the value.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from audio.devices import MODES
from common.errors import UserError

__all__ = ["check_overrides", "level_list", "mode_list", "whole_number", "duration"]

# key -> (what it holds, may it be null); counts: (key, smallest allowed)
_LEVEL_LISTS = {"levels": True, "unseen_levels": False}
_COUNTS = (("seed", 0), ("threads", 0), ("train_jobs", 1))
_SEED_LISTS = ("seeds",)
_DURATIONS = ("rtf_seconds",)   # seconds, above 0
_WARMUPS = ("skip_s",)          # seconds, 0 or more


def _as_list(key: str, values) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise UserError(f"{key}: expected a list such as {key}=[100,90], got {values!r}")
    return list(values)


def whole_number(key: str, value, minimum: int | None = None) -> int:
    """``value`` as an int; a UserError if it is not a whole number (or below ``minimum``)."""
    if isinstance(value, bool):
        raise UserError(f"{key}: expected a whole number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{key}: expected a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise UserError(f"{key}: expected a whole number, got {value!r}")
    if minimum is not None and number < minimum:
        raise UserError(f"{key}: must be at least {minimum}, got {int(number)}")
    return int(number)


def duration(key: str, value, allow_zero: bool = False) -> float:
    """``value`` as seconds above 0 (or 0 with ``allow_zero``); a UserError otherwise."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not (math.isfinite(seconds) and (seconds > 0 or allow_zero and seconds == 0)):
        raise UserError(f"{key}: expected seconds {'of 0 or more' if allow_zero else 'above 0'}, got {value!r}")
    return seconds


def level_list(key: str, values) -> list[int]:
    """Peak-reduction levels: whole numbers in 0..100, each once."""
    levels = [whole_number(key, v) for v in _as_list(key, values)]
    outside = [v for v in levels if not 0 <= v <= 100]
    if outside:
        raise UserError(f"{key}: peak reduction {outside[0]} is outside 0..100")
    _each_once(key, levels, "level")
    return levels


def mode_list(key: str, values) -> list[str]:
    """Switch positions (compress, limit), each once, at least one."""
    modes = [str(m) for m in _as_list(key, values)]
    if not modes:
        raise UserError(f"{key}: give at least one of {', '.join(MODES)}")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UserError(f"{key}: unknown mode {bad[0]!r} (use {' and/or '.join(MODES)})")
    _each_once(key, modes, "mode")
    return modes


def _each_once(key: str, values: list, what: str) -> None:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UserError(f"{key}: {what} {repeated[0]!r} is given more than once")


def check_overrides(cfg) -> None:
    """Raise a UserError for the first malformed list or count setting in ``cfg``."""
    for key, nullable in _LEVEL_LISTS.items():
        if key in cfg:
            value = cfg.get(key)
            if value is None and nullable:
                continue
            level_list(key, [] if value is None else value)
    if "modes" in cfg:
        mode_list("modes", cfg.get("modes"))
    for key, minimum in _COUNTS:
        if key in cfg and cfg.get(key) is not None:
            whole_number(key, cfg.get(key), minimum)
    for key in _DURATIONS:
        if key in cfg:
            duration(key, cfg.get(key))
    for key in _WARMUPS:
        if key in cfg:
            duration(key, cfg.get(key), allow_zero=True)
    data = cfg.get("data")
    if data is not None and "frame_s" in data:   # the fit's frames: checked before any file is read
        frame = duration("data.frame_s", data.get("frame_s"))
        overlap = duration("data.overlap_s", data.get("overlap_s", 0.0), allow_zero=True)
        if overlap >= frame:
            raise UserError(f"data.overlap_s: the warm-up ({overlap:g} s) must be shorter than the frame "
                            f"(data.frame_s {frame:g} s)")
    for key in _SEED_LISTS:
        if key in cfg and cfg.get(key) is not None:
            seeds = [whole_number(key, v, 0) for v in _as_list(key, cfg.get(key))]
            if len(set(seeds)) != len(seeds):
                raise UserError(f"{key}: a seed is given more than once")
