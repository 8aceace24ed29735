"""Evaluating every candidate on the Test material at every level and mode (LA-2A), or
at every knob setting of a manifest's Test rows (:func:`evaluate_manifest`)."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from audio.io import read_pair
from audio.metrics import all_metrics
from audio.signaltrain import Pair
from report.models import Candidate, real_time_factor

__all__ = ["COLUMNS", "MANIFEST_MODE", "evaluate", "evaluate_manifest"]

MANIFEST_MODE = "manifest"   # the ``mode`` of a manifest row (``peak_reduction`` is empty)

COLUMNS = ["model", "kind", "mode", "peak_reduction", "split", "params", "esr", "mae", "stft", "lufs_diff", "rtf_256"]


def _score(candidates: list[Candidate], items: list, skip_s: float, quiet: bool, render, rtf_of, describe) -> list[dict]:
    """The loop both corpora share: every candidate on every (input, target) item.

    ``render(c, x, sr, item)`` is the candidate's output, ``rtf_of(c, sr, item)`` its
    real-time factor (measured once per candidate), ``describe(item)`` the row's setting
    columns. Multichannel files are scored on their channel mean.
    """
    rows = []
    rtf: dict[tuple[str, str], float] = {}
    bar = tqdm(total=len(candidates) * len(items), desc="evaluate", unit="run", disable=quiet)
    for item in items:
        x, y, sr = read_pair(item.input, item.target)
        x, y = x.mean(axis=0), y.mean(axis=0)
        skip = int(skip_s * sr)
        for c in candidates:
            pred = np.asarray(render(c, x, sr, item), dtype=np.float64).reshape(-1)
            key = (c.name, c.kind)
            if key not in rtf:
                rtf[key] = rtf_of(c, sr, item)
            rows.append({"model": c.name, "kind": c.kind, **describe(item), "params": c.params,
                         **all_metrics(pred, y, sr, skip), "rtf_256": rtf[key]})
            bar.update(1)
    bar.close()
    return rows


def evaluate(candidates: list[Candidate], pairs: list[Pair], unseen: set[int], skip_s: float = 1.0,
             quiet: bool = False) -> list[dict]:
    """One row per (candidate, Test pair); ``split`` says whether the level was
    seen in neural training ("seen") or held out ("unseen")."""
    return _score(candidates, pairs, skip_s, quiet,
                  lambda c, x, sr, p: c.render(x, sr, p.mode, p.peak_reduction),
                  lambda c, sr, p: real_time_factor(c, sr, p.mode, p.peak_reduction),
                  lambda p: {"mode": p.mode, "peak_reduction": p.peak_reduction,
                             "split": "unseen" if p.peak_reduction in unseen else "seen"})


def evaluate_manifest(candidates: list[Candidate], rows: list, seen, skip_s: float = 1.0,
                      quiet: bool = False) -> list[dict]:
    """One row per (candidate, manifest row): ``mode`` is ``"manifest"``, ``peak_reduction``
    None, ``knobs`` the row's knob dict, and ``split`` "seen" where ``seen(knobs)`` (the
    setting was trained at and fitted) or "unseen"."""
    return _score(candidates, rows, skip_s, quiet,
                  lambda c, x, sr, r: c.render(x, sr, r.knobs),
                  lambda c, sr, r: real_time_factor(c, sr, r.knobs),
                  lambda r: {"mode": MANIFEST_MODE, "peak_reduction": None, "knobs": dict(r.knobs),
                             "split": "seen" if seen(r.knobs) else "unseen"})
