"""The collapsed-fit check: a fit that found only silence is an error, not a result.

When the target is not the compressed input (latency, flipped polarity, the wrong
file), the best the compressor can do is to turn itself down: the solver drives the
make-up gain towards minus infinity and stops with an ESR near 1, which it reports
as converged. Such a result must never be written as a fit.
"""
from __future__ import annotations

import math
import os

from common.errors import UserError

__all__ = ["MIN_MAKE_UP_DB", "MAX_ESR", "is_collapsed", "check_fit_collapse"]

MIN_MAKE_UP_DB = -60.0   # a real leveller never needs this much less output than input
MAX_ESR = 0.9            # the output explains almost none of the target's energy


def is_collapsed(params: dict[str, float], esr: float) -> bool:
    """True when ``params`` (physical, with ``make_up_db``) and ``esr`` describe a collapsed fit."""
    make_up = float(params["make_up_db"])
    esr = float(esr)
    return not (math.isfinite(make_up) and math.isfinite(esr)) or make_up < MIN_MAKE_UP_DB or esr >= MAX_ESR


def check_fit_collapse(params: dict[str, float], esr: float, target: str | os.PathLike) -> None:
    """Raise a UserError naming ``target`` when the fit collapsed.

    Args:
        params: the fit's physical parameters (``make_up_db`` is read).
        esr: its pre-emphasised error-to-signal ratio.
        target: the target file (or a label for a set of them), for the message.
    """
    if is_collapsed(params, esr):
        raise UserError(
            f"{target}: the fit collapsed (make-up {float(params['make_up_db']):.1f} dB, ESR {float(esr):.3f}): "
            f"the compressor cannot reproduce this target; check that it is a recording of this input "
            f"(latency, polarity: align=auto) and not silent or unrelated")
