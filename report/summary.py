"""Summary tables of the comparison rows: per kind and model, seen vs unseen levels."""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from common.table import format_table
from report.evaluate import COLUMNS

__all__ = ["summarise", "summary_text", "markdown_table", "rows_to_csv"]


def summarise(rows: list[dict]) -> list[dict]:
    """Mean metrics per (model, kind, mode) over seen and unseen levels."""
    keys = sorted({(r["model"], r["kind"]) for r in rows}, key=lambda k: (not k[1].startswith("dsp"), k))
    out = []
    for model, kind in keys:
        for mode in sorted({r["mode"] for r in rows}):
            sel = [r for r in rows if r["model"] == model and r["kind"] == kind and r["mode"] == mode]
            if not sel:
                continue
            seen = [r["esr"] for r in sel if r["split"] == "seen"]
            unseen = [r["esr"] for r in sel if r["split"] == "unseen"]
            out.append({"model": model, "kind": kind, "mode": mode,
                        "esr_seen": float(np.mean(seen)) if seen else math.nan,
                        "esr_unseen": float(np.mean(unseen)) if unseen else math.nan,
                        "mae": float(np.mean([r["mae"] for r in sel])),
                        "stft": float(np.mean([r["stft"] for r in sel])),
                        "lufs_diff": float(np.nanmean([r["lufs_diff"] for r in sel])),
                        "params": sel[0]["params"], "rtf_256": sel[0]["rtf_256"]})
    return out


_SUMMARY_COLUMNS = [("model", "model", ""), ("kind", "kind", ""), ("mode", "mode", ""),
                    ("esr_seen", "ESR seen", ".4f"), ("esr_unseen", "ESR unseen", ".4f"),
                    ("mae", "MAE", ".2e"), ("stft", "STFT", ".3f"), ("lufs_diff", "|dLUFS|", ".2f"),
                    ("params", "params", "d"), ("rtf_256", "RTF@256", ".1f")]


def summary_text(summary: list[dict]) -> str:
    return format_table(summary, _SUMMARY_COLUMNS)


def markdown_table(rows: list[dict], columns=_SUMMARY_COLUMNS) -> str:
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(format(r[k], f) if r.get(k) is not None else "" for k, _, f in columns) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    return buf.getvalue()
