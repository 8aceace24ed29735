"""Reading a pair for a fit or a training: the files, cross-checked and aligned.

Every place that fits or trains on an input/target pair reads it here, so latency and
polarity are checked the same way everywhere (``align: auto`` in ``cfg/data/base.yaml``,
:func:`audio.align.align_pair`). With alignment on, the target may be longer or
shorter than the input by up to the largest latency searched (a recording padded or cut
by the interface's latency): the pair is trimmed to its common span. A larger
difference, or any with ``align: off``, is an error (most likely the wrong file).
"""
from __future__ import annotations

import os

import numpy as np

from audio.align import ALIGN_MODES, AlignInfo, align_pair
from audio.io import check_pair, read_audio
from common.errors import UserError

__all__ = ["align_mode", "read_aligned_pair", "alignment_note", "MAX_LATENCY_S"]
MAX_LATENCY_S = 0.1   # the largest latency searched, and the largest length difference accepted


def align_mode(data) -> str:
    """The alignment mode of a data config (``data.align``; ``auto`` when absent)."""
    mode = str(data.get("align", "auto") if hasattr(data, "get") else "auto")
    if mode not in ALIGN_MODES:
        raise UserError(f"data.align must be one of {', '.join(ALIGN_MODES)}; got {mode!r}")
    return mode


def read_aligned_pair(input_path: str | os.PathLike, target_path: str | os.PathLike, mode: str = "auto",
                      stop: int | None = None) -> tuple[np.ndarray, np.ndarray, int, AlignInfo]:
    """Read a pair, check rate and channels, and correct the target's latency and polarity.

    Args:
        input_path, target_path: the files.
        mode: ``"auto"`` (estimate and correct) or ``"off"`` (lengths must then match).
        stop: read only the first ``stop`` samples of each file.

    Returns:
        ``(x, y, sample_rate, info)``; ``x`` and ``y`` float32 ``(channels, samples)`` of one length.

    Raises:
        UserError: naming the target, for a rate, channel or length mismatch or a pair
            that cannot be aligned.
    """
    x, sr_x = read_audio(input_path, stop=stop)
    y, sr_y = read_audio(target_path, stop=stop)
    if mode == "auto" and 0 < abs(x.shape[1] - y.shape[1]) <= MAX_LATENCY_S * sr_x:
        n = min(x.shape[1], y.shape[1])   # alignment trims to the common span anyway
        check_pair(input_path, target_path, x[:, :n], sr_x, y[:, :n], sr_y)
    else:
        check_pair(input_path, target_path, x, sr_x, y, sr_y)
    x, y, info = align_pair(x, y, sr_x, mode, MAX_LATENCY_S, target=str(target_path))
    n = min(x.shape[1], y.shape[1])
    return np.ascontiguousarray(x[:, :n]), np.ascontiguousarray(y[:, :n]), sr_x, info


def alignment_note(info: AlignInfo) -> str | None:
    """A compact note for a corrected pair (chains, manifests), None when nothing was changed."""
    if not info.corrected:
        return None
    pol = ", polarity inverted" if info.polarity < 0 else ""
    return f"latency {info.latency_samples:+.2f} samples{pol}"
