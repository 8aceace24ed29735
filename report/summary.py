"""Summary tables of the comparison rows: per kind and model, seen vs unseen levels;
on a manifest corpus also one row per knob setting (:func:`setting_table`)."""
from __future__ import annotations

import math

import numpy as np

from audio.devices import Device
from common.records import csv_text
from common.table import format_table
from audio.metrics import METRICS
from report.evaluate import columns, row_columns
from report.models import series_label

__all__ = ["summarise", "summary_columns", "summary_text", "markdown_table", "rows_to_csv", "setting_table",
           "level_table"]


def summarise(rows: list[dict]) -> list[dict]:
    """Per (model, kind, mode): the mean ESR over seen and over unseen levels, the mean of
    every other registered metric (:data:`audio.metrics.METRICS`), size, speed and training
    steps."""
    keys = sorted({(r["model"], r["kind"]) for r in rows}, key=lambda k: (not k[1].startswith("dsp"), k))
    out = []
    for model, kind in keys:
        for mode in sorted({r["mode"] for r in rows}):
            sel = [r for r in rows if r["model"] == model and r["kind"] == kind and r["mode"] == mode]
            if not sel:
                continue
            seen = [r["esr"] for r in sel if r["split"] == "seen"]
            unseen = [r["esr"] for r in sel if r["split"] == "unseen"]
            line = {"model": model, "kind": kind, "mode": mode,
                    "esr_seen": float(np.mean(seen)) if seen else math.nan,
                    "esr_unseen": float(np.mean(unseen)) if unseen else math.nan}
            for name in METRICS:
                if name != "esr":
                    values = [float(r[name]) for r in sel if r.get(name) is not None]
                    line[name] = float(np.nanmean(values)) if values and not np.all(np.isnan(values)) else math.nan
            out.append({**line, "params": sel[0]["params"], "rtf_256": sel[0]["rtf_256"],
                        "steps": sel[0].get("steps"), "best_step": sel[0].get("best_step")})
    return out


def summary_columns() -> list[tuple]:
    """``(key, header, format)`` of the summary: ESR seen and unseen, every other registered
    metric, size, speed, training steps."""
    metrics = [(m.name, m.label, m.fmt) for m in METRICS.values() if m.name != "esr"]
    return ([("model", "model", ""), ("kind", "kind", ""), ("mode", "mode", ""),
             ("esr_seen", "ESR seen", ".4f"), ("esr_unseen", "ESR unseen", ".4f")] + metrics
            + [("params", "params", "d"), ("rtf_256", "RTF@256", ".1f"), ("steps", "steps", "d"),
               ("best_step", "best step", "d")])


def summary_text(summary: list[dict]) -> str:
    return format_table(summary, summary_columns())


def _cell(text) -> str:
    """A table cell's text with ``|`` escaped (``|dLUFS|`` would otherwise split the cell)."""
    return str(text).replace("|", "\\|")


def markdown_table(rows: list[dict], columns=None) -> str:
    columns = summary_columns() if columns is None else columns
    head = "| " + " | ".join(_cell(h) for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(format(r[k], f)) if r.get(k) is not None else "" for k, _, f in columns)
            + " |" for r in rows]
    return "\n".join([head, sep, *body])


def rows_to_csv(rows: list[dict], device: Device) -> str:
    """CSV text: :func:`report.evaluate.columns`, then one column per knob of a device other
    than the LA-2A (whose knobs are the ``mode`` and ``peak_reduction`` columns)."""
    known = columns()
    knob_columns = [c for c in row_columns(device, dict.fromkeys(device.knobs)) if c not in known]
    return csv_text(rows, known + knob_columns)


def setting_table(rows: list[dict], knobs: list[str]) -> tuple[list[dict], list[tuple]]:
    """Manifest rows as one line per knob setting: the knob values, seen/unseen, and the
    ESR of every model (files at one setting averaged). Returns ``(lines, columns)`` for
    :func:`markdown_table` / :func:`common.table.format_table`."""
    series = sorted({(r["model"], r["kind"]) for r in rows}, key=lambda k: (not k[1].startswith("dsp"), k))
    name = {s: series_label(*s) for s in series}
    settings: dict[tuple, dict] = {}
    for r in rows:
        key = tuple(r["setting"][k] for k in knobs)
        line = settings.setdefault(key, {"split": r["split"], "_esr": {}})
        line["_esr"].setdefault(name[(r["model"], r["kind"])], []).append(r["esr"])
    lines = []
    for key, line in sorted(settings.items()):
        out = {f"knob:{k}": v for k, v in zip(knobs, key)}
        out["split"] = line["split"]
        out.update({f"esr:{n}": float(np.mean(v)) for n, v in line["_esr"].items()})
        lines.append(out)
    columns = ([(f"knob:{k}", k, ".4g") for k in knobs] + [("split", "setting", "")]
               + [(f"esr:{name[s]}", f"ESR {name[s]}", ".4f") for s in series])
    return lines, columns


def level_table(rows: list[dict], mode: str) -> tuple[list[dict], list[tuple]]:
    """ESR per level of one mode: a line per (model, kind), a column per peak reduction
    (an unseen level's header is starred; files at one level averaged). Returns
    ``(lines, columns)`` for :func:`markdown_table`."""
    sel = [r for r in rows if r["mode"] == mode]
    series = sorted({(r["model"], r["kind"]) for r in sel}, key=lambda k: (not k[1].startswith("dsp"), k))
    levels = sorted({int(r["peak_reduction"]) for r in sel}, reverse=True)
    unseen = {int(r["peak_reduction"]) for r in sel if r["split"] == "unseen"}
    lines = []
    for model, kind in series:
        line = {"series": series_label(model, kind)}
        for pr in levels:
            v = [r["esr"] for r in sel if (r["model"], r["kind"]) == (model, kind) and int(r["peak_reduction"]) == pr]
            line[f"pr{pr}"] = float(np.mean(v)) if v else None
        lines.append(line)
    columns = [("series", mode, "")] + [(f"pr{pr}", f"{pr}{'*' if pr in unseen else ''}", ".4f") for pr in levels]
    return lines, columns
