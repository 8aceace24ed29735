"""Evaluating every candidate on the Test takes, at every setting of the compared device."""
from __future__ import annotations

from typing import Callable

import numpy as np
from tqdm import tqdm

from audio.devices import Device
from audio.pairs import read_aligned_pair
from audio.metrics import METRICS, all_metrics
from common.errors import UserError
from report.models import Candidate, real_time_factor

__all__ = ["MIN_SCORED", "check_scored_length", "columns", "evaluate", "row_columns"]


def columns() -> list[str]:
    """The comparison's row columns: the model, the setting, every registered metric
    (:data:`audio.metrics.METRICS`), the real-time factor and the training steps."""
    return ["model", "kind", "mode", "peak_reduction", "split", "params", *METRICS, "rtf_256", "steps", "best_step"]


def row_columns(device: Device, setting: dict) -> dict:
    """A setting as the comparison's columns: the LA-2A's are ``mode`` and
    ``peak_reduction``; another device's ``mode`` is its name, ``peak_reduction`` empty,
    and its knobs follow in one column each (``knob_<name>`` where a name is taken)."""
    return {"mode": device.name, "peak_reduction": None, **device.columns(setting, columns())}


# the fewest samples a take is scored on after its warm-up (the multi-resolution STFT's
# longest window is 2048)
MIN_SCORED = 4096


def check_scored_length(path, frames: int, sample_rate: int, skip_s: float) -> None:
    """UserError unless a take of ``frames`` samples keeps :data:`MIN_SCORED` after its warm-up."""
    if frames - int(skip_s * sample_rate) < MIN_SCORED:
        raise UserError(f"{path}: {frames / sample_rate:.2f} s long, but its first skip_s={skip_s:g} s are left out "
                        f"of the metrics and at least {MIN_SCORED} samples must remain; lower skip_s or give longer "
                        "takes")


def evaluate(candidates: list[Candidate], takes: list, device: Device, seen: Callable[[dict], bool],
             skip_s: float = 1.0, quiet: bool = False, align: str = "auto", rtf_seconds: float = 2.0,
             listener=None) -> list[dict]:
    """One row per (candidate, take): the setting's columns (:func:`row_columns`), the
    ``setting`` itself, ``split`` "seen" where ``seen(setting)`` (trained at) or "unseen",
    the candidate's size, every metric and the real-time factor (measured once per
    candidate, on ``rtf_seconds`` of noise). Multichannel files are scored on their channel mean. ``align``: the
    target's latency and polarity corrected as at fit time (``"auto"``) or not (``"off"``).
    ``listener`` (e.g. :class:`report.compare_page.ExcerptCollector`): told of every take
    (``begin_take(take, x, y, sr) -> bool``) and, where it answered True, of every model's
    output (``add(model, kind, output)``): the samples scored, rendered once."""
    rows = []
    rtf: dict[tuple[str, str], float] = {}
    bar = tqdm(total=len(candidates) * len(takes), desc="evaluate", unit="run", disable=quiet)
    for take in takes:
        x, y, sr, _ = read_aligned_pair(take.input, take.target, align)
        x, y = x.mean(axis=0), y.mean(axis=0)
        skip = int(skip_s * sr)
        check_scored_length(take.target, y.shape[0], sr, skip_s)
        setting = take.setting
        keep = bool(listener is not None and listener.begin_take(take, x, y, sr))
        for c in candidates:
            pred = np.asarray(c.render(x, sr, setting), dtype=np.float64).reshape(-1)
            if keep:
                listener.add(c.name, c.kind, pred)
            key = (c.name, c.kind)
            if key not in rtf:
                rtf[key] = real_time_factor(c, sr, setting, seconds=rtf_seconds)
            rows.append({"model": c.name, "kind": c.kind, **row_columns(device, setting), "setting": dict(setting),
                         "split": "seen" if seen(setting) else "unseen", "params": c.params,
                         **all_metrics(pred, y, sr, skip, input=x), "rtf_256": rtf[key],
                         "steps": c.steps, "best_step": c.best_step})
            bar.update(1)
    bar.close()
    return rows
