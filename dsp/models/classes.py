"""The DSP model classes (``compressor=ff5|graybox|opto``) behind one set of functions.

Everything downstream of a fit (records, knob maps, rendering, streaming, neural
hybrids, comparison) takes a parameter dict of one class: the five compressor
parameters (``ff5``), or those plus the gray-box blocks' (``graybox``,
:data:`dsp.models.graybox.BLOCK_NAMES`), or the optical cell's and the blocks' (``opto``,
:data:`dsp.models.opto.OPTO_NAMES`).
"""
from __future__ import annotations

import numpy as np

from dsp.models.ff5_streaming import StreamingCompressor
from dsp.models.ff5_streaming import render as render_ff5
from dsp.models.graybox import BLOCK_NAMES, GRAYBOX_NAMES
from dsp.models.graybox_streaming import StreamingGraybox
from dsp.models.graybox_streaming import render as render_graybox
from dsp.models.opto import CORE_NAMES as OPTO_CORE_NAMES
from dsp.models.opto import OPTO_NAMES
from dsp.models.parameters import PARAM_NAMES

__all__ = ["KINDS", "kind_of", "param_names", "renderer_for", "render_any"]

KINDS = ("ff5", "graybox", "opto")
_NAMES = {"ff5": PARAM_NAMES, "graybox": GRAYBOX_NAMES, "opto": OPTO_NAMES}


def kind_of(params: dict) -> str:
    """``opto`` when ``params`` holds every cell parameter, ``graybox`` when it holds every
    block parameter, else ``ff5``."""
    if all(k in params for k in OPTO_CORE_NAMES):
        return "opto"
    return "graybox" if all(k in params for k in BLOCK_NAMES) else "ff5"


def param_names(kind: str) -> tuple[str, ...]:
    """The parameter names of a model class, in their stored order."""
    if kind not in _NAMES:
        raise ValueError(f"compressor must be one of {', '.join(KINDS)}, got {kind!r}")
    return _NAMES[kind]


def renderer_for(params: dict, sample_rate: int):
    """A stateful block processor (``.process((channels, n)) -> (channels, n)``) for ``params``."""
    if kind_of(params) == "opto":
        from dsp.models.opto_streaming import StreamingOpto
        return StreamingOpto(params, sample_rate)
    if kind_of(params) == "graybox":
        return StreamingGraybox(params, sample_rate)
    return StreamingCompressor(params, sample_rate)


def render_any(x: np.ndarray, sample_rate: int, params: dict, block: int = 1 << 18) -> np.ndarray:
    """Render a whole ``(channels, samples)`` or 1-D signal with either model class."""
    if kind_of(params) == "opto":
        from dsp.models.opto_streaming import render as render_opto
        return render_opto(x, sample_rate, params, block=block)
    render = render_graybox if kind_of(params) == "graybox" else render_ff5
    return render(x, sample_rate, params, block=block)
