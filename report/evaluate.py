"""Evaluating every candidate on the Test material at every level and mode (LA-2A), or
at every knob setting of a manifest's Test rows (:func:`evaluate_manifest`)."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from audio.io import read_pair
from audio.metrics import all_metrics
from audio.signaltrain import Pair
from report.models import Candidate, knob_real_time_factor, real_time_factor

__all__ = ["COLUMNS", "MANIFEST_MODE", "evaluate", "evaluate_manifest"]

MANIFEST_MODE = "manifest"   # the ``mode`` of a manifest row (``peak_reduction`` is empty)

COLUMNS = ["model", "kind", "mode", "peak_reduction", "split", "params", "esr", "mae", "stft", "lufs_diff", "rtf_256"]


def evaluate(candidates: list[Candidate], pairs: list[Pair], unseen: set[int], skip_s: float = 1.0,
             quiet: bool = False) -> list[dict]:
    """One row per (candidate, Test pair); ``split`` says whether the level was
    seen in neural training ("seen") or held out ("unseen")."""
    rows = []
    rtf: dict[tuple[str, str], float] = {}
    bar = tqdm(total=len(candidates) * len(pairs), desc="evaluate", unit="run", disable=quiet)
    for pair in pairs:
        x, y, sr = read_pair(pair.input, pair.target)
        x, y = x.mean(axis=0), y.mean(axis=0)
        skip = int(skip_s * sr)
        for c in candidates:
            pred = np.asarray(c.render(x, sr, pair.mode, pair.peak_reduction), dtype=np.float64).reshape(-1)
            key = (c.name, c.kind)
            if key not in rtf:
                rtf[key] = real_time_factor(c, sr, pair.mode, pair.peak_reduction)
            rows.append({"model": c.name, "kind": c.kind, "mode": pair.mode,
                         "peak_reduction": pair.peak_reduction,
                         "split": "unseen" if pair.peak_reduction in unseen else "seen",
                         "params": c.params, **all_metrics(pred, y, sr, skip), "rtf_256": rtf[key]})
            bar.update(1)
    bar.close()
    return rows


def evaluate_manifest(candidates: list[Candidate], rows: list, seen, skip_s: float = 1.0,
                      quiet: bool = False) -> list[dict]:
    """One row per (candidate, manifest row): ``mode`` is ``"manifest"``, ``peak_reduction``
    None, ``knobs`` the row's knob dict, and ``split`` "seen" where ``seen(knobs)`` (the
    setting was trained at and fitted) or "unseen"."""
    out = []
    rtf: dict[tuple[str, str], float] = {}
    bar = tqdm(total=len(candidates) * len(rows), desc="evaluate", unit="run", disable=quiet)
    for row in rows:
        x, y, sr = read_pair(row.input, row.target)
        x, y = x.mean(axis=0), y.mean(axis=0)
        skip = int(skip_s * sr)
        for c in candidates:
            pred = np.asarray(c.render(x, sr, row.knobs), dtype=np.float64).reshape(-1)
            key = (c.name, c.kind)
            if key not in rtf:
                rtf[key] = knob_real_time_factor(c, sr, row.knobs)
            out.append({"model": c.name, "kind": c.kind, "mode": MANIFEST_MODE, "peak_reduction": None,
                        "knobs": dict(row.knobs), "split": "seen" if seen(row.knobs) else "unseen",
                        "params": c.params, **all_metrics(pred, y, sr, skip), "rtf_256": rtf[key]})
            bar.update(1)
    bar.close()
    return out
