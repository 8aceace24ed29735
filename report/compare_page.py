"""The comparison as a page to listen to and look at: ``report.html`` beside ``compare.csv``.

Two parts, built by the comparison job (:mod:`jobs.compare`):

- :class:`ExcerptCollector` rides along the evaluation (:func:`report.evaluate.evaluate`
  calls it for every take and every model's rendering of it) and keeps, for the settings
  the page shows, a few excerpts of the input, the target and each model's output:
  exactly the samples that were scored, rendered once over the whole take (state carried).
- :func:`write_compare_report` writes the page: the overview (summary, per-level tables,
  training, every row with the held-out settings marked), the comparison's pictures, and
  per shown setting its rows, then per excerpt players for the input, the target, every
  output and every error (target minus output), the gain traces of the target and of every
  model (one estimator, :mod:`audio.gain`) and the error spectrograms.

The page stays within a size budget: settings are written in order and the first one that
would cross it is left out with everything after it (said in the page and returned).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio.devices import LA2A, Device
from audio.gain import SMOOTHING_MS, gain_trace
from audio.metrics import METRICS
from report import html
from report.excerpts import Excerpt, choose_excerpts
from report.plots import plot_error_spectrograms, plot_gain_traces
from report.summary import summary_columns

__all__ = ["ExcerptCollector", "CompareReport", "write_compare_report", "choose_settings", "model_label"]


def model_label(model: str, kind: str) -> str:
    """``"graybox dsp"``, ``"s6 hybrid"``: the model and its kind, unambiguous."""
    return f"{model} {kind}"


@dataclass
class _Capture:
    """One take's excerpts: the input and target slices, each model's output slices."""
    setting: dict
    take: str
    sample_rate: int
    seconds: float
    excerpts: list[Excerpt]
    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    outputs: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)


class ExcerptCollector:
    """Keeps excerpts of the takes of ``settings`` while they are evaluated (first take per setting).

    Args:
        device: the compared device (settings are matched by its key).
        settings: the settings to keep, in page order.
        seconds, count: excerpt length and how many per take (:func:`report.excerpts.choose_excerpts`).
        skip_s: the take's unscored warm-up (no excerpt starts in it).
    """

    def __init__(self, device: Device, settings: list[dict], seconds: float = 5.0, count: int = 3,
                 skip_s: float = 1.0):
        self.device = device
        self.order = [device.key(s) for s in settings]
        self.seconds, self.count, self.skip_s = float(seconds), int(count), float(skip_s)
        self.captures: dict[tuple, _Capture] = {}
        self._current: _Capture | None = None

    def begin_take(self, take, x: np.ndarray, y: np.ndarray, sample_rate: int) -> bool:
        """A take is about to be rendered by every model (``x``, ``y`` mono); True if it is kept."""
        key = self.device.key(take.setting)
        if key not in self.order or key in self.captures:
            self._current = None
            return False
        excerpts = choose_excerpts(x, sample_rate, self.seconds, self.count, self.skip_s)
        cap = _Capture(dict(take.setting), Path(str(take.target)).name, sample_rate, len(x) / sample_rate,
                       excerpts, [np.array(x[e.start:e.stop], np.float64) for e in excerpts],
                       [np.array(y[e.start:e.stop], np.float64) for e in excerpts])
        self.captures[key] = cap
        self._current = cap
        return True

    def add(self, model: str, kind: str, output: np.ndarray) -> None:
        """A model's rendering of the current take (mono, the whole take)."""
        if self._current is not None:
            self._current.outputs[(model, kind)] = [np.array(output[e.start:e.stop], np.float64)
                                                    for e in self._current.excerpts]

    def in_order(self) -> list[_Capture]:
        return [self.captures[k] for k in self.order if k in self.captures]


def choose_settings(device: Device, takes: list, seen, which) -> list[dict]:
    """The settings the page shows, in the device's order.

    ``which``: ``"held_out"`` (the settings never trained on; all of them when there are
    none), ``"all"``, or (LA-2A) a list of peak-reduction levels, shown in every mode.
    """
    settings = {}
    for t in takes:
        settings.setdefault(device.key(t.setting), dict(t.setting))
    ordered = sorted(settings.values(), key=device.sort_key)
    if isinstance(which, str):
        if which == "all":
            return ordered
        if which == "held_out":
            held = [s for s in ordered if not seen(s)]
            return held or ordered
        raise ValueError(f"report.settings: held_out, all or a list of peak-reduction levels, got {which!r}")
    if device != LA2A:
        raise ValueError("report.settings: a list of levels applies to the LA-2A only (use held_out or all)")
    wanted = {int(v) for v in which}
    return [s for s in ordered if int(s["peak_reduction"]) in wanted]


@dataclass
class CompareReport:
    """What :func:`write_compare_report` wrote."""
    path: Path
    bytes: int
    shown: list[str]
    dropped: list[str]


_PICTURES = {
    "esr_vs_pr.png": "Test ESR against peak reduction, one line per model; grey bars: the held-out levels (never "
                     "fitted, trained nor validated on).",
    "esr_by_setting.png": "Test ESR per knob setting, one bar per model; grey: settings never trained at nor fitted.",
    "knobmap.png": "The DSP fit's five compressor parameters against peak reduction: the fitted levels (dots) and "
                   "the knob map between them (lines).",
    "drum_hit.png": "A synthetic drum hit through each model: waveforms (top) and their gain (bottom, output over "
                    "input, the estimator of the traces below).",
    "sweep_spectrograms.png": "Spectrograms of a 20 Hz - 20 kHz sine sweep at -12 dBFS through each model (aliasing "
                              "shows as lines off the sweep).",
}


def _metric_columns() -> list[tuple]:
    return [(m.name, m.label, m.fmt) for m in METRICS.values()]


def _overview(rows, summary, tables, device: Device, shown_ids: dict) -> str:
    parts = ["<h2 id=\"summary\">Summary</h2>",
             "<p>Means over the settings of each mode; ESR apart for the settings trained on (seen) and held out "
             "(unseen). Lower is better for every metric.</p>",
             html.table(summary, summary_columns(), name="summary")]
    defs = "".join(f"<dt>{html.esc(m.label)} <code>{html.esc(m.name)}</code></dt><dd>{html.esc(m.definition)}</dd>"
                   for m in METRICS.values())
    parts.append("<details><summary>What each metric measures</summary><dl class=\"defs\">" + defs
                 + "<dt>RTF@256</dt><dd>audio seconds per compute second, 256-sample blocks, one thread</dd>"
                 "<dt>params</dt><dd>trained or fitted parameters</dd></dl>"
                 "<p class=\"note\">Definitions and sources: <code>docs/metrics.md</code>.</p></details>")
    for title, (table_rows, columns) in tables:
        parts += [f"<h3>{html.esc(title)}</h3>", html.table(table_rows, columns, name=html.slug(title))]
    every = []
    for r in sorted(rows, key=lambda r: (device.sort_key(r["setting"]), r["kind"] != "dsp", r["model"], r["kind"])):
        label = device.label(r["setting"])
        sid = shown_ids.get(device.key(r["setting"]))
        cell = f'<a href="#{sid}">{html.esc(label)}</a>' if sid else html.esc(label)
        if r["split"] == "unseen":
            cell += html.badge("held out")
        every.append({**r, "setting_cell": cell, "series": model_label(r["model"], r["kind"])})
    columns = ([("series", "model", ""), ("setting_cell", "setting", "")] + _metric_columns()
               + [("params", "params", "d"), ("rtf_256", "RTF@256", ".1f"), ("steps", "steps", "d"),
                  ("best_step", "best step", "d")])
    parts += ["<h3 id=\"rows\">Every row (as <code>compare.csv</code>)</h3>",
              "<p>One row per model and Test setting; held-out settings are marked and shaded. A linked setting "
              "has excerpts to listen to below.</p>",
              html.table(every, columns, name="rows", raw=("setting_cell",),
                         row_class=lambda r: "held-out" if r["split"] == "unseen" else "")]
    return "\n".join(parts)


def _setting_rows(rows, device: Device, setting: dict) -> list[dict]:
    """One row per model at ``setting`` (several takes at a setting: their mean)."""
    key = device.key(setting)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if device.key(r["setting"]) == key:
            groups.setdefault((r["model"], r["kind"]), []).append(r)
    out = []
    for (model, kind), sel in groups.items():
        line = {"series": model_label(model, kind), "split": sel[0]["split"], "params": sel[0]["params"],
                "rtf_256": sel[0]["rtf_256"]}
        for name in METRICS:
            values = [float(r[name]) for r in sel if r.get(name) is not None]
            line[name] = float(np.mean(values)) if values else None
        out.append(line)
    return out


def _excerpt_block(files: html.ReportFiles, cap: _Capture, i: int, prefix: str, skip_s: float) -> tuple[str, list[str]]:
    """Players, gain traces and error spectrograms of excerpt ``i``; the HTML and the links written."""
    e, sr = cap.excerpts[i], cap.sample_rate
    x, y = cap.inputs[i], cap.targets[i]
    outs = {model_label(*k): v[i] for k, v in cap.outputs.items()}
    errors = {k: y - v for k, v in outs.items()}
    peak = max([float(np.max(np.abs(a))) for a in (x, y, *outs.values(), *errors.values()) if len(a)] + [0.0])
    scale = 1.0 if peak <= 1.0 else 0.99 / peak   # one factor for every track: the levels stay comparable
    seconds = len(x) / sr
    links, tracks, error_tracks = [], [], []
    name = f"{prefix}_x{i + 1}"

    def write_track(tag: str, sig: np.ndarray) -> str:
        """The excerpt's audio file of ``sig`` (at the shared scale); its link."""
        link = files.audio(f"{name}_{html.slug(tag)}", html.fade_edges(sig * scale, sr), sr)
        links.append(link)
        return link

    target_db = html.level_dbfs(y)
    tracks.append(html.track(write_track("input", x), seconds, "input (dry)",
                             f"RMS {html.level_dbfs(x):.1f} dBFS"))
    tracks.append(html.track(write_track("target", y), seconds, "target (the device)", f"RMS {target_db:.1f} dBFS"))
    first_of: dict[str, str] = {}
    for label, out in outs.items():
        link = write_track(label, out)
        same = first_of.setdefault(link, label)
        note = f"RMS {html.level_dbfs(out):.1f} dBFS" + (f"; the same audio as {same}" if same != label else "")
        tracks.append(html.track(link, seconds, label, note))
    for label, err in errors.items():
        link = write_track(f"{label} error", err)
        level = html.level_dbfs(err)
        below = target_db - level
        note = (f"RMS {level:.1f} dBFS, {below:.1f} dB below the target" if np.isfinite(level) else "silent: no error")
        error_tracks.append(html.track(link, seconds, f"error of {label} (target minus output)", note, error=True))
    traces = {"target": gain_trace(x, y, sr)}
    traces.update({label: gain_trace(x, out, sr) for label, out in outs.items()})
    gain_png, spec_png = f"{name}_gain.png", f"{name}_error_spectrograms.png"
    plot_gain_traces(traces, f"gain over the excerpt ({e.span(sr)} of the take)", files.path(gain_png))
    plot_error_spectrograms(y, errors, sr, "the target, then each model's error (target minus output)",
                            files.path(spec_png))
    links += [files.add(gain_png), files.add(spec_png)]
    scaled = (f" <strong>Every track of this excerpt is {20 * np.log10(scale):.1f} dB below its true level</strong> "
              "(the loudest would clip in a 16-bit file); their levels relative to each other are kept."
              if scale < 1.0 else "")
    warm = " (it includes the take's unscored warm-up)" if e.start < int(skip_s * sr) else ""
    body = [f"<h3>Excerpt {i + 1}: {html.esc(e.label)}, {e.span(sr)} of the take{warm}</h3>",
            "<p class=\"note\">Every track at its true level (the level is part of the sound), mono, 16-bit FLAC, "
            f"10 ms fades at both ends.{scaled}</p>",
            "<div class=\"tracks\">" + "".join(tracks) + "</div>",
            "<div class=\"tracks\">" + "".join(error_tracks) + "</div>",
            html.figure(links[-2], "Gain over the excerpt, output power over input power in dB, each estimated the "
                                   f"same way from its own input and output (powers smoothed over {SMOOTHING_MS:g} "
                                   "ms: the gain, not the waveform); the target in black; gaps where the input is "
                                   "below -60 dBFS.", "gain traces"),
            html.figure(links[-1], "Spectrograms of the target and of each model's error (target minus output), "
                                   "on one colour scale in dB re full scale: an error as bright as the target is "
                                   "as loud as it.", "error spectrograms")]
    return "\n".join(body), links


def write_compare_report(out_dir: Path, *, title: str, intro: str, device: Device, rows: list[dict],
                         summary: list[dict], tables: list, pictures: list[str], collector: ExcerptCollector,
                         max_mb: float = 50.0, skip_s: float = 1.0, notes: list[str] = ()) -> CompareReport:
    """Write ``out_dir/report.html`` and ``out_dir/report_files/`` (see the module doc).

    Args:
        title, intro: the page's heading and first paragraph (``backticks`` become code).
        rows, summary, tables: the comparison's rows (:func:`report.evaluate.evaluate`), its
            summary (:func:`report.summary.summarise`) and further ``(title, (rows, columns))``.
        pictures: PNG files in ``out_dir`` the page shows.
        collector: the excerpts kept during the evaluation.
        max_mb: the report's size budget (audio, pictures and page), in MB (10^6 bytes).
        notes: lines said at the end of the overview (e.g. what was left out).
    """
    files = html.ReportFiles(out_dir)
    try:
        budget = int(max_mb * 1e6)
        picture_paths = [out_dir / p for p in pictures]
        sections, shown, dropped, ids = [], [], [], {}
        captures = collector.in_order()
        for cap in captures:
            ids[device.key(cap.setting)] = "s-" + html.slug(device.label(cap.setting))
        for n, cap in enumerate(captures):
            label = device.label(cap.setting)
            sid = ids[device.key(cap.setting)]
            held = not any(r["split"] == "seen" for r in rows if device.key(r["setting"]) == device.key(cap.setting))
            blocks, links = [], []
            for i in range(len(cap.excerpts)):
                block, written = _excerpt_block(files, cap, i, sid[2:], skip_s)
                blocks.append(block)
                links += written
            if files.total_bytes(picture_paths) + 400_000 > budget and shown:   # the page's own text: a margin
                files.remove(links)
                dropped = [device.label(c.setting) for c in captures[n:]]
                for c in captures[n:]:
                    ids.pop(device.key(c.setting), None)
                break
            shown.append(label)
            srows = _setting_rows(rows, device, cap.setting)
            head = f"<h2 id=\"{sid}\">{html.esc(label)}{html.badge('held out') if held else ''}</h2>"
            sections.append("\n".join([
                head,
                f"<p>Test take <code>{html.esc(cap.take)}</code> ({cap.seconds:.1f} s). Metrics on the whole take "
                f"after its {skip_s:g} s warm-up, one row per model:</p>",
                html.table(srows, [("series", "model", "")] + _metric_columns() + [("params", "params", "d")],
                           name="setting"),
                *blocks]))
        nav = " ".join(f'<a href="#{ids[device.key(c.setting)]}">{html.esc(device.label(c.setting))}</a>'
                       for c in captures if device.key(c.setting) in ids)
        said = list(notes)
        if dropped:
            said.append(f"Left out to keep the report under {max_mb:g} MB: the excerpts of {', '.join(dropped)} "
                        "(their figures are in the tables above; report.max_mb raises the budget).")
        pics = "\n".join(html.figure(p, _PICTURES.get(p, p), p) for p in pictures if (out_dir / p).is_file())
        body = "\n".join([
            f"<h1>{html.esc(title)}</h1>",
            f"<p>{html.code(intro)}</p>",
            "<nav><a href=\"#summary\">summary</a> <a href=\"#rows\">every row</a> <a href=\"#pictures\">pictures</a>"
            + (" | listen: " + nav if nav else "") + "</nav>",
            _overview(rows, summary, tables, device, ids),
            "".join(f"<p class=\"note\">{html.esc(s)}</p>" for s in said),
            "<h2 id=\"pictures\">Pictures</h2>", pics,
            *sections,
            "<p class=\"note\">Written by <code>compare.py</code>. The folder (this page, <code>report_files/</code> "
            "and the PNGs beside it) opens from disk with no network; the audio is 16-bit FLAC.</p>"])
        text = html.page(title, body)
        path = files.publish(text)
        total = files.total_bytes(picture_paths) + len(text.encode())
        return CompareReport(path, total, shown, dropped)
    except BaseException:
        files.discard()
        raise
