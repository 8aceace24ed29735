"""Scoring on held-out material: ESR per setting for the DSP model and a neural model.

ESR is the Test ESR of :mod:`audio.metrics` (the comparison's): after the pre-emphasis, the
sum of squared error over the sum of squared target over the whole take, its first second
unscored; the takes at one setting pooled (their errors and energies add).

One path for every device: :func:`score_tracks` gives a row per setting
(``{setting, seen, esr_dsp, esr_model}``; ``seen``: the model was trained at the
setting), :func:`format_results` prints them, :func:`write_results_csv` writes
``test_esr.csv`` (the device's setting columns, then ``seen, esr_dsp, esr_model``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from audio.devices import LA2A, Device
from audio.metrics import TEST_SKIP_S, PooledESR
from common.records import write_csv
from common.table import format_table

__all__ = ["score_tracks", "summarise", "format_results", "write_results_csv", "RESULT_COLUMNS"]

RESULT_COLUMNS = ["seen", "esr_dsp", "esr_model"]   # after the setting's columns
# how a table names a setting trained at and one never trained at: by device
_WORDS = {True: ("levels", "seen", "UNSEEN", "seen", "unseen"),            # a device with modes (LA-2A)
          False: ("setting", "trained", "NEW", "trained", "new")}


def _words(device: Device) -> tuple:
    return _WORDS[device == LA2A]


def score_tracks(tracks: Sequence, predict: Callable, seen: Callable[[dict], bool],
                 quiet: bool = False, skip_s: float = TEST_SKIP_S) -> list[dict]:
    """The Test ESR (:func:`audio.metrics.esr`'s estimator: the first ``skip_s`` unscored) of
    the DSP output and of ``predict(track)`` per setting, the takes of a setting pooled.

    Returns:
        rows ``{setting, seen, esr_dsp, esr_model}`` in the device's order of settings.
    """
    pooled: dict[tuple, tuple] = {}
    for t in tqdm(tracks, desc="test", unit="pair", disable=quiet, leave=False):
        _, _, dsp, model = pooled.setdefault(t.level, (t.setting, t.device, PooledESR(), PooledESR()))
        skip = int(round(skip_s * t.sample_rate))
        dsp.add_signals(t.y_dsp(), t.y, skip)
        model.add_signals(predict(t), t.y, skip)
    rows = []
    for setting, device, dsp, model in sorted(pooled.values(), key=lambda v: v[1].sort_key(v[0])):
        rows.append({"setting": setting, "seen": bool(seen(setting)),
                     "esr_dsp": _value(dsp), "esr_model": _value(model)})
    return rows


def _value(pooled: PooledESR) -> float:
    return pooled.value if pooled.value is not None else float("nan")


def summarise(rows: Sequence[dict], device: Device = LA2A) -> list[dict]:
    """Mean ESR over seen and over unseen settings: per mode (the LA-2A's switch) and over
    all (``mode`` "all")."""
    out = []
    groups = sorted({r["setting"]["mode"] for r in rows}) if device == LA2A else []
    for mode in groups + ["all"]:
        for seen in (True, False):
            sel = [r for r in rows if (mode == "all" or r["setting"].get("mode") == mode) and r["seen"] == seen]
            if sel:
                dsp = float(np.mean([r["esr_dsp"] for r in sel]))
                model = float(np.mean([r["esr_model"] for r in sel]))
                out.append({"mode": mode, "levels": "seen" if seen else "unseen", "n": len(sel),
                            "esr_dsp": dsp, "esr_model": model, "ratio": model / max(dsp, 1e-30)})
    return out


def _setting_columns(device: Device, taken) -> list[tuple]:
    if device is LA2A:
        return [("mode", "mode", ""), ("peak_reduction", "PR", "d")]
    names = device.columns(dict.fromkeys(device.knobs), taken)
    return [(col, knob, ".4g") for knob, col in zip(device.knobs, names)]


def format_results(rows: Sequence[dict], model_name: str, device: Device = LA2A) -> str:
    """The per-setting table and the seen/unseen means, as text."""
    header, seen_word, unseen_word, mean_seen, mean_unseen = _words(device)
    taken = ["seen", "ratio", "esr_dsp", "esr_model"]
    shown = [{**device.columns(r["setting"], taken), "seen": seen_word if r["seen"] else unseen_word,
              "esr_dsp": r["esr_dsp"], "esr_model": r["esr_model"],
              "ratio": r["esr_model"] / max(r["esr_dsp"], 1e-30)} for r in rows]
    table = format_table(shown, _setting_columns(device, taken) + [
        ("seen", header, ""), ("esr_dsp", "ESR DSP", ".4f"), ("esr_model", f"ESR {model_name}", ".4f"),
        ("ratio", "model/DSP", ".2f")])
    means = summarise(rows, device)
    mode_column = [("mode", "mode", "")] if device == LA2A else []
    means = [{**m, "levels": mean_seen if m["levels"] == "seen" else mean_unseen} for m in means]
    means = format_table(means, mode_column + [("levels", "levels" if mode_column else "settings", ""),
                                               ("n", "n", "d"), ("esr_dsp", "mean ESR DSP", ".4f"),
                                               ("esr_model", f"mean ESR {model_name}", ".4f"),
                                               ("ratio", "model/DSP", ".2f")])
    return f"{table}\n\n{means}"


def write_results_csv(path: str | Path, rows: Sequence[dict], device: Device = LA2A) -> None:
    """``test_esr.csv``: the setting's columns, then ``seen, esr_dsp, esr_model``."""
    setting_columns = list(device.columns(dict.fromkeys(device.knobs), RESULT_COLUMNS))
    write_csv(path, [{**device.columns(r["setting"], RESULT_COLUMNS), **{k: r[k] for k in RESULT_COLUMNS}}
                     for r in rows], setting_columns + RESULT_COLUMNS)
