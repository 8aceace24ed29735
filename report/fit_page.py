"""A fit as a page: ``report.html`` in the folder a fit job wrote (what a user opens first).

:func:`write_fit_report` shows the fit's table (the one printed at the end of the run),
its knob curves, per fitted setting a short excerpt of the fitting take with players for
the input, the target, the fit and the error (target minus fit) and the gain traces of the
target and the fit (one estimator, :mod:`audio.gain`), and for a single pair the alignment
that was applied. Every figure is on the fitting audio and labelled as such.

The fit is rendered over the excerpt with a few seconds of the take before it (from rest,
the way the fit's own frames are scored after a warm-up), so a whole long take is not
rendered again: the report costs a read of each take, the alignment of a short stretch of
it, one short rendering and one small plot per setting.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from audio.gain import SMOOTHING_MS, gain_trace, mono
from report import html
from report.excerpts import fit_excerpt

__all__ = ["FitTake", "FitReport", "write_fit_report", "PREROLL_S"]

PREROLL_S = 1.0   # the fit is rendered from this long before the excerpt: the fit's own unscored warm-up


@dataclass
class FitTake:
    """One fitted setting's take.

    Attributes:
        label: its heading (e.g. ``compress PR 65``).
        setting: the setting to render (None: a one-pair fit).
        load: ``() -> (x, sample_rate)``: the whole input, ``(channels, samples)``.
        pair: ``(start, stop) -> (x, y)``: input samples ``start:stop`` and the target
            aligned to them as the fit had it, ``(channels, stop - start)`` each.
        source: where it came from (a file name), for the page.
    """
    label: str
    setting: dict | None
    load: Callable[[], tuple[np.ndarray, int]]
    pair: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    source: str = ""

    @classmethod
    def of_arrays(cls, label: str, setting, x: np.ndarray, y: np.ndarray, sample_rate: int, source: str = ""):
        """A take already in memory and aligned."""
        x2, y2 = np.atleast_2d(x), np.atleast_2d(y)
        return cls(label, setting, lambda: (x2, sample_rate), lambda a, b: (x2[:, a:b], y2[:, a:b]), source)


@dataclass
class FitReport:
    path: Path
    bytes: int
    settings: int


def _take_section(files: html.ReportFiles, fit, take: FitTake, excerpt_s: float, skip_s: float) -> str:
    x_all, sr = take.load()
    e = fit_excerpt(x_all, sr, excerpt_s, skip_s)   # channels averaged a chunk at a time
    lead = max(0, e.start - int(PREROLL_S * sr))
    xs, ys = take.pair(lead, e.stop)
    out = mono(fit.render(np.asarray(xs, np.float64), sr, take.setting))[e.start - lead:]
    xe, ye = mono(xs)[e.start - lead:], mono(ys)[e.start - lead:]
    err = ye - out
    peak = max(float(np.max(np.abs(a))) if len(a) else 0.0 for a in (xe, ye, out, err))
    scale = 1.0 if peak <= 1.0 else 0.99 / peak
    seconds = len(xe) / sr
    name = html.slug(take.label) or "pair"

    def audio(tag: str, sig: np.ndarray) -> str:
        return files.audio(f"{name}_{tag}", html.fade_edges(sig * scale, sr), sr)

    target_db, err_db = html.level_dbfs(ye), html.level_dbfs(err)
    tracks = [html.track(audio("input", xe), seconds, "input (dry)", f"RMS {html.level_dbfs(xe):.1f} dBFS"),
              html.track(audio("target", ye), seconds, "target (the device)", f"RMS {target_db:.1f} dBFS"),
              html.track(audio("fit", out), seconds, "the fit", f"RMS {html.level_dbfs(out):.1f} dBFS"),
              html.track(audio("error", err), seconds, "error (target minus fit)",
                         f"RMS {err_db:.1f} dBFS, {target_db - err_db:.1f} dB below the target"
                         if np.isfinite(err_db) else "silent: no error", error=True)]
    png = f"{name}_gain.png"
    from report.plots import plot_gain_traces   # here: matplotlib (~40 MB) is not held through a long fit
    plot_gain_traces({"target": gain_trace(xe, ye, sr), "fit": gain_trace(xe, out, sr)},
                     f"{take.label}: gain over the excerpt ({e.span(sr)} of the take)", files.path(png), width=8.0)
    link = files.add(png)
    scaled = (f" Every track is {20 * np.log10(scale):.1f} dB below its true level (the loudest would clip in a "
              "16-bit file)." if scale < 1.0 else "")
    source = f" <code>{html.esc(take.source)}</code>" if take.source else ""
    return "\n".join([
        f"<h3 id=\"t-{name}\">{html.esc(take.label)}</h3>",
        f"<p class=\"note\">Fitting take{source}, {html.esc(e.label)}, {e.span(sr)}; the fit rendered from "
        f"{(e.start - lead) / sr:g} s before the excerpt. True levels, 16-bit FLAC, 10 ms fades.{scaled}</p>",
        "<div class=\"tracks\">" + "".join(tracks) + "</div>",
        html.figure(link, f"Gain of the target and of the fit over the excerpt, output power over input power in dB "
                          f"(powers smoothed over {SMOOTHING_MS:g} ms; gaps where the input is below -60 dBFS).",
                    f"gain traces, {take.label}")])


def write_fit_report(folder: Path, *, title: str, intro: str, fit, tables: list, pictures: list[str],
                     takes: list[FitTake], alignment: dict | None = None, excerpt_s: float = 4.0,
                     skip_s: float = 1.0, notes: list[str] = ()) -> FitReport:
    """Write ``folder/report.html`` and ``folder/report_files/`` (see the module doc).

    Args:
        title, intro: heading and first paragraph (``backticks`` become code).
        fit: the fit, opened (:func:`dsp.storage.open_fit.open_fit`): renders each take.
        tables: ``(title, (rows, columns))`` with columns as :func:`report.html.table` takes them.
        pictures: PNG files in ``folder`` (the knob curves).
        takes: the fitted settings' takes, in page order.
        alignment: a one-pair fit's alignment (:meth:`audio.align.AlignInfo.to_dict`).
        notes: lines said under the tables (the fit's findings).
    """
    files = html.ReportFiles(folder)
    try:
        parts = [f"<h1>{html.esc(title)}</h1>", f"<p>{html.code(intro)}</p>"]
        if len(takes) > 1:
            parts.append("<nav>" + " ".join(f'<a href="#t-{html.slug(t.label)}">{html.esc(t.label)}</a>'
                                            for t in takes) + "</nav>")
        if alignment:
            rows = [{"what": "target latency", "value": f"{alignment.get('latency_samples', 0):+.2f} samples "
                                                          f"({alignment.get('latency_ms', 0):+.3f} ms)"},
                    {"what": "polarity", "value": "inverted (corrected)" if alignment.get("polarity", 1) < 0
                     else "normal"},
                    {"what": "trimmed", "value": f"{alignment.get('trimmed_start', 0)} samples at the start, "
                                                 f"{alignment.get('trimmed_end', 0)} at the end"},
                    {"what": "mode", "value": str(alignment.get("mode", ""))}]
            if alignment.get("mode") == "auto":
                rows.append({"what": "correlation peak", "value": f"{alignment.get('strength', float('nan')):.2f} "
                                                                  f"({alignment.get('peak_ratio', float('nan')):.1f}x "
                                                                  "the next)"})
            parts += ["<h2 id=\"alignment\">Alignment applied to the pair</h2>",
                      "<p>The target was shifted and, if inverted, flipped before the fit; the players below play "
                      "the aligned pair.</p>",
                      html.table(rows, [("what", "", ""), ("value", "", "")], name="alignment")]
        for heading, (rows, columns) in tables:
            parts += [f"<h2>{html.esc(heading)}</h2>", html.table(rows, columns, name=html.slug(heading))]
        parts += [f"<p class=\"note\">{html.esc(n)}</p>" for n in notes]
        shown = [p for p in pictures if (folder / p).is_file()]
        if shown:
            parts.append("<h2 id=\"curves\">Knob curves</h2>")
            parts += [html.figure(p, _CAPTIONS.get(p, p), p) for p in shown]
        if takes:
            parts.append("<h2 id=\"listen\">Listen: each fitted setting on its fitting audio</h2>")
            parts += [_take_section(files, fit, t, excerpt_s, skip_s) for t in takes]
        parts.append("<p class=\"note\">Written by <code>train_comp.py</code>. The folder opens from disk with no "
                     "network; the audio is 16-bit FLAC.</p>")
        text = html.page(title, "\n".join(parts))
        path = files.publish(text)
        return FitReport(path, files.total_bytes([folder / p for p in shown]) + len(text.encode()), len(takes))
    except BaseException:
        files.discard()
        raise


_CAPTIONS = {
    "knobmap.png": "The fitted compressor parameters against peak reduction: the fitted levels (dots) and the knob "
                   "map between them (lines), which answers any setting.",
    "joint_curves.png": "The joint fit's curves over peak reduction (lines), their values at the fitted levels "
                        "(dots) and, where given, per-level fits (crosses); dashed: held-out levels.",
}
