"""Scoring on held-out material: ESR per setting for the DSP model and a neural model.

ESR here is the standard one: after the pre-emphasis ``(1 - z^-1) / (1 - 0.995 z^-1)``,
the sum of squared error over the sum of squared target, over the whole file (not a
per-sample mean of ratios).

A manifest corpus (a device with arbitrary knobs) is scored by knob setting:
:func:`score_manifest_tracks`, :func:`format_manifest_results`,
:func:`write_manifest_csv` (one column per knob, then ``seen, esr_dsp, esr_model``;
``seen``: the setting is one the model was trained at).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from audio.manifest import knob_columns
from common.atomic import write_text_atomic
from common.table import format_table
from dsp.preemphasis import preemphasis_np

__all__ = ["esr", "score_tracks", "summarise", "format_results", "write_results_csv", "RESULT_COLUMNS",
           "score_manifest_tracks", "format_manifest_results", "write_manifest_csv"]

RESULT_COLUMNS = ["mode", "peak_reduction", "seen", "esr_dsp", "esr_model"]


def esr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Pre-emphasised error-to-signal ratio of two 1-D signals."""
    p = preemphasis_np(np.asarray(prediction, dtype=np.float64))
    t = preemphasis_np(np.asarray(target, dtype=np.float64))
    return float(np.sum((p - t) ** 2) / max(np.sum(t * t), 1e-30))


def score_tracks(tracks: Sequence, predict: Callable, unseen: Iterable[int], quiet: bool = False) -> list[dict]:
    """ESR of the DSP output and of ``predict(track)`` on every track.

    Tracks at the same setting (several files) are pooled: their errors and energies add.

    Returns:
        rows ``{mode, peak_reduction, seen, esr_dsp, esr_model}`` sorted by mode then PR.
    """
    unseen = {int(v) for v in unseen}
    sums = _pooled(tracks, predict, quiet)
    rows = []
    for (mode, pr), (e_dsp, e_model, energy) in sorted(sums.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        energy = max(energy, 1e-30)
        rows.append({"mode": mode, "peak_reduction": pr, "seen": pr not in unseen,
                     "esr_dsp": e_dsp / energy, "esr_model": e_model / energy})
    return rows


def _pooled(tracks: Sequence, predict: Callable, quiet: bool) -> dict[tuple, list[float]]:
    """Per setting (``track.level``): summed DSP error, model error and target energy."""
    sums: dict[tuple, list[float]] = {}
    for t in tqdm(tracks, desc="test", unit="pair", disable=quiet, leave=False):
        target = preemphasis_np(t.y.astype(np.float64))
        energy = float(np.sum(target * target))
        errs = [float(np.sum((preemphasis_np(np.asarray(out, dtype=np.float64)) - target) ** 2))
                for out in (t.y_dsp(), predict(t))]
        acc = sums.setdefault(t.level, [0.0, 0.0, 0.0])
        acc[0] += errs[0]
        acc[1] += errs[1]
        acc[2] += energy
    return sums


def score_manifest_tracks(tracks: Sequence, predict: Callable, seen: Callable[[dict], bool],
                          quiet: bool = False) -> list[dict]:
    """ESR of the DSP output and of ``predict(track)`` per knob setting (files pooled).

    Returns:
        rows ``{mode: "manifest", knobs: {...}, seen, esr_dsp, esr_model}`` sorted by the
        knob values; ``seen(knobs)`` says whether the model was trained at the setting.
    """
    sums = _pooled(tracks, predict, quiet)
    names = {t.level: list(t.knobs) for t in tracks}
    rows = []
    for level, (e_dsp, e_model, energy) in sorted(sums.items(), key=lambda kv: kv[0][1]):
        knobs = dict(zip(names[level], level[1]))
        energy = max(energy, 1e-30)
        rows.append({"mode": level[0], "knobs": knobs, "seen": bool(seen(knobs)),
                     "esr_dsp": e_dsp / energy, "esr_model": e_model / energy})
    return rows


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Mean ESR per mode over seen and over unseen levels (and both modes together)."""
    out = []
    for mode in sorted({r["mode"] for r in rows}) + ["all"]:
        for seen in (True, False):
            sel = [r for r in rows if (mode == "all" or r["mode"] == mode) and r["seen"] == seen]
            if sel:
                dsp = float(np.mean([r["esr_dsp"] for r in sel]))
                model = float(np.mean([r["esr_model"] for r in sel]))
                out.append({"mode": mode, "levels": "seen" if seen else "unseen", "n": len(sel),
                            "esr_dsp": dsp, "esr_model": model, "ratio": model / max(dsp, 1e-30)})
    return out


def format_results(rows: Sequence[dict], model_name: str) -> str:
    """The per-setting table and the seen/unseen means, as text."""
    shown = [{**r, "seen": "seen" if r["seen"] else "UNSEEN", "ratio": r["esr_model"] / max(r["esr_dsp"], 1e-30)}
             for r in rows]
    table = format_table(shown, [("mode", "mode", ""), ("peak_reduction", "PR", "d"), ("seen", "levels", ""),
                                 ("esr_dsp", "ESR DSP", ".4f"), ("esr_model", f"ESR {model_name}", ".4f"),
                                 ("ratio", "model/DSP", ".2f")])
    means = format_table(summarise(rows), [("mode", "mode", ""), ("levels", "levels", ""), ("n", "n", "d"),
                                           ("esr_dsp", "mean ESR DSP", ".4f"),
                                           ("esr_model", f"mean ESR {model_name}", ".4f"),
                                           ("ratio", "model/DSP", ".2f")])
    return f"{table}\n\n{means}"


def format_manifest_results(rows: Sequence[dict], model_name: str) -> str:
    """The per-knob-setting table and the means over trained and new settings, as text."""
    knobs = list(rows[0]["knobs"]) if rows else []
    cols = knob_columns(knobs, ["settings", "ratio", "esr_dsp", "esr_model"])
    shown = [{**{cols[k]: v for k, v in r["knobs"].items()}, "settings": "trained" if r["seen"] else "NEW",
              "esr_dsp": r["esr_dsp"], "esr_model": r["esr_model"],
              "ratio": r["esr_model"] / max(r["esr_dsp"], 1e-30)} for r in rows]
    table = format_table(shown, [(cols[k], k, ".4g") for k in knobs] + [
        ("settings", "setting", ""), ("esr_dsp", "ESR DSP", ".4f"), ("esr_model", f"ESR {model_name}", ".4f"),
        ("ratio", "model/DSP", ".2f")])
    means = [{**m, "levels": "trained" if m["levels"] == "seen" else "new"} for m in summarise(rows)
             if m["mode"] != "all"]
    means = format_table(means, [("levels", "settings", ""), ("n", "n", "d"),
                                 ("esr_dsp", "mean ESR DSP", ".4f"),
                                 ("esr_model", f"mean ESR {model_name}", ".4f"), ("ratio", "model/DSP", ".2f")])
    return f"{table}\n\n{means}"


def write_manifest_csv(path: str | Path, rows: Sequence[dict]) -> None:
    """``test_esr.csv`` of a manifest model: the knob columns, then ``seen, esr_dsp, esr_model``."""
    knobs = list(rows[0]["knobs"]) if rows else []
    tail = ["seen", "esr_dsp", "esr_model"]
    cols = knob_columns(knobs, tail)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[cols[k] for k in knobs] + tail, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**{cols[k]: f"{v:.6g}" for k, v in r["knobs"].items()}, "seen": r["seen"],
                    "esr_dsp": f"{r['esr_dsp']:.6g}", "esr_model": f"{r['esr_model']:.6g}"})
    write_text_atomic(path, buf.getvalue())


def write_results_csv(path: str | Path, rows: Sequence[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in RESULT_COLUMNS})
    write_text_atomic(path, buf.getvalue())
