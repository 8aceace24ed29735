"""Which fitted parameters ended at an end of their range (the solver's sigmoid saturated).

A parameter at a bound says the data wanted it further: the model is bending to make up for
something it lacks, or the range is too narrow. Bounded parameters are the ones the solver
maps through a sigmoid: ratio, attack and release, and a gray-box's six blocks (an opto fit:
its cell's ranges instead of the five-parameter ones); a time or a frequency is measured on a
log scale, dB and the shaper's terms on a linear one.
"""
from __future__ import annotations

import math

__all__ = ["TOLERANCE", "at_bounds"]

TOLERANCE = 0.01   # within 1 % of the range's (log) width of an end
_LOG = ("ratio", "attack_ms", "release_ms", "input_highpass_hz", "input_shelf_hz", "tube_drive",
        "output_highpass_hz", "release_slow_ms", "memory_ms", "memory_depth", "sidechain_shelf_hz", "input_mix")


def at_bounds(params: dict, options, tolerance: float = TOLERANCE) -> dict[str, str]:
    """``{name: "lower" | "upper"}`` for every bounded parameter of ``params`` within
    ``tolerance`` of an end of its range in the fit ``options`` (ranges, and a gray-box's
    block ranges)."""
    cell = getattr(options, "cell", None)   # an opto fit's cell ranges (dsp.models.opto.OptoRanges)
    ranges = [cell if cell is not None else options.ranges] + \
        ([options.blocks] if getattr(options, "blocks", None) is not None else [])
    out = {}
    for r in ranges:
        for name in r.__dataclass_fields__:
            if name not in params or (name == "input_mix" and float(params[name]) == 0.0):   # held: compress mode
                continue
            lo, hi = getattr(r, name)
            v = float(params[name])
            if name in _LOG:
                lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, 1e-300))
            width = hi - lo
            if v - lo <= tolerance * width:
                out[name] = "lower"
            elif hi - v <= tolerance * width:
                out[name] = "upper"
    return out
