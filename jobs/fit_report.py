"""The fit jobs' ``report.html``: what each job hands to :func:`report.fit_page.write_fit_report`.

``report.html`` in the config (``cfg/config.yaml``): ``html`` (on by default) and
``excerpt_s`` (the excerpt per fitted setting). Each helper returns the report written,
or None when the page is off; the time it took is said on the console.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from audio.align import apply_alignment
from audio.devices import la2a_setting
from audio.io import read_audio
from audio.pairs import align_mode, read_aligned_pair
from common.errors import UserError
from dsp.fitting.by_class import options_class
from dsp.knobs.knobmap import KnobMap
from dsp.storage.open_fit import open_fit
from jobs.chain import level_dir
from jobs.overrides import duration
from report.fit_page import FitReport, FitTake, write_fit_report

__all__ = ["chain_report", "pair_report", "manifest_report", "report_options"]


def report_options(cfg) -> dict | None:
    """``report`` of the fit's config, checked; None when ``report.html`` is false."""
    rep = cfg.get("report") or {}
    if not bool(rep.get("html", True)):
        return None
    return {"excerpt_s": duration("report.excerpt_s", rep.get("excerpt_s", 4.0))}


def _file_take(label: str, setting, inp, tgt, align: str, recorded: dict | None = None) -> FitTake:
    """A take read from files, aligned as the fit had it: with the alignment the fit's record
    keeps (a per-level fit's ``alignment``) that latency and polarity are applied again (not
    estimated again: a second less per setting); otherwise the pair is aligned as at fit time.
    Read once, on first use."""
    cache: dict = {}

    def whole():
        if "pair" not in cache:
            if recorded is None:
                x, y, sr, _ = read_aligned_pair(inp, tgt, align)
            else:
                x, sr = read_audio(inp)
                y, _ = read_audio(tgt)
                x, y, _, _ = apply_alignment(x, y, float(recorded["latency_samples"]), int(recorded["polarity"]))
            cache["pair"] = (x, y, sr)
        return cache["pair"]

    def load():
        x, _, sr = whole()
        return x, sr

    def pair(start: int, stop: int):
        x, y, _ = whole()
        return x[:, start:stop], y[:, start:stop]

    return FitTake(label, setting, load, pair, Path(str(tgt)).name)


def _recorded_alignment(ckpt_dir: Path, mode: str, pr: int) -> dict | None:
    path = level_dir(ckpt_dir, mode, pr) / "ckpt.yaml"
    try:
        found = (yaml.safe_load(path.read_text()) or {}).get("alignment")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    ok = isinstance(found, dict) and found.get("mode") == "auto" and "latency_samples" in found
    return found if ok else None


def _said(report: FitReport, seconds: float) -> FitReport:
    print(f"wrote {report.path} ({report.bytes / 1e6:.1f} MB, {report.settings} setting"
          f"{'s' if report.settings != 1 else ''} to listen to, {seconds:.1f} s): open it in a browser")
    return report


def _guarded(write):
    """The page is a view of the fit, written after it: a failure there is a warning, never a lost fit."""
    t0 = time.perf_counter()
    try:
        report = write()
    except UserError as exc:
        print(f"warning: report.html not written: {exc}", file=sys.stderr)
        return None
    return _said(report, time.perf_counter() - t0)


def chain_report(cfg, ckpt_dir: Path, rows: list[dict], find, options, method: str, held_out,
                 table_columns: list, findings: list[str] = (), pictures: list[str] = ()) -> FitReport | None:
    """A chain's or joint fit's page: its table, the knob map (``knobmap.png``, drawn here)
    and ``pictures``, and one excerpt per fitted level of the take ``find(mode, pr)`` gives."""
    opts = report_options(cfg)
    if opts is None:
        return None

    def write():
        from report.plots import plot_knobmap
        fit = open_fit(ckpt_dir)
        names = []
        if isinstance(fit.param_map, KnobMap):
            plot_knobmap(fit.param_map, ckpt_dir / "knobmap.png")
            names.append("knobmap.png")
        names += [p for p in pictures if p not in names]
        align = align_mode(cfg.data)
        takes = []
        for r in rows:
            if r.get("esr") is None or r.get("held_out"):
                continue
            pair = find(r["mode"], int(r["peak_reduction"]))
            if pair is None:
                continue
            inp, tgt = pair
            label = f"{r['mode']} PR {int(r['peak_reduction'])}"
            recorded = _recorded_alignment(ckpt_dir, r["mode"], int(r["peak_reduction"])) if align == "auto" else None
            takes.append(_file_take(label, la2a_setting(r["mode"], int(r["peak_reduction"])), inp, tgt, align,
                                    recorded))
        compressor = options_class(options)
        splits = "/".join(map(str, cfg.data.fit_splits))
        intro = (f"The {compressor} model fitted {'jointly over the knob' if method == 'joint' else 'per level'} on "
                 f"{splits} material of `{cfg.data.name}`: {len(takes)} fitted settings; held out: "
                 f"{', '.join(map(str, held_out)) or 'none'}. Every sound and trace below is on the fitting audio "
                 f"({splits}), not a Test figure; the ESR columns are said under the table.")
        return write_fit_report(ckpt_dir, title=f"Fit report: {ckpt_dir}", intro=intro, fit=fit,
                                tables=[("Summary (as summary.csv)", (rows, table_columns))], pictures=names,
                                takes=takes, excerpt_s=opts["excerpt_s"], notes=list(findings))
    return _guarded(write)


def pair_report(cfg, ckpt_dir: Path, x, y, sample_rate: int, record: dict, table_columns: list,
                source: str = "") -> FitReport | None:
    """A one-pair (or digital-target) fit's page: its parameters, the alignment applied
    (``record["alignment"]``, when the pair was read from files) and an excerpt of the pair."""
    opts = report_options(cfg)
    if opts is None:
        return None

    def write():
        fit = open_fit(ckpt_dir)
        row = {**record["params"], "esr": record["esr"], "iterations": record["iterations"],
               "seconds": record["seconds"], "converged": str(record["converged"])}
        intro = (f"The {record['compressor']} model fitted to one pair ({source or 'the pair'}); ESR: the fit's "
                 f"estimator on the fitting audio (pre-emphasised squared error over target energy on 12 s "
                 f"frames, each from rest with 1 s unscored). The sound below is the fitting audio.")
        take = FitTake.of_arrays("the pair", None, x, y, sample_rate, source)
        return write_fit_report(ckpt_dir, title=f"Fit report: {ckpt_dir}", intro=intro, fit=fit,
                                tables=[("The fit", ([row], table_columns))], pictures=[], takes=[take],
                                alignment=record.get("alignment"), excerpt_s=opts["excerpt_s"])
    return _guarded(write)


def manifest_report(cfg, ckpt_dir: Path, rows: list[dict], takes_rows, knobs: list[str], table_columns: list,
                    method: str) -> FitReport | None:
    """A manifest device's page (its fitted takes, per-take fits or knob curves)."""
    opts = report_options(cfg)
    if opts is None:
        return None

    def write():
        fit = open_fit(ckpt_dir)
        align = align_mode(cfg.data)
        takes = [_file_take(", ".join(f"{k} {float(r.knobs[k]):g}" for k in knobs) + f" ({Path(str(r.target)).name})",
                            {k: float(r.knobs[k]) for k in knobs}, r.input, r.target, align) for r in takes_rows]
        intro = (f"The {fit.model_class.name} model of a device with the knobs {', '.join(knobs)}, "
                 f"{'one smooth set of curves over the knobs' if method == 'joint' else 'one fit per take'}, "
                 f"on {'/'.join(map(str, cfg.data.fit_splits))} takes. Every sound below is on the fitting audio.")
        return write_fit_report(ckpt_dir, title=f"Fit report: {ckpt_dir}", intro=intro, fit=fit,
                                tables=[("Every fitted take", (rows, table_columns))], pictures=[], takes=takes,
                                excerpt_s=opts["excerpt_s"])
    return _guarded(write)
