"""The job of ``compare.py``: run what is missing, evaluate every model, write CSV, markdown and plots.

One flow for every device: the DSP fit (fitted first if missing, :mod:`jobs.ensure`)
and the neural models (trained first if missing) are scored on the ``eval_split``
takes; on the LA-2A by mode and peak reduction, on a manifest corpus (``data=manifest``,
a device with its own knobs) by knob setting (:func:`_la2a_corpus`, :func:`_takes_corpus`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from audio import material
from audio.datasets import load_pairs
from audio.devices import LA2A, Device, la2a_setting
from audio.io import audio_info
from audio.pairs import align_mode
from audio.rates import check_rates
from audio.manifest import manifest_device, read_manifest
from common.atomic import write_text_atomic
from common.config import CONFIG_DIR, load_config
from common.names import plain_name
from common.errors import UserError
from jobs.launch import check_results, launch, launcher_name, summarise_results
from common.table import format_table
from dsp.knobs.knobtable import KnobTable
from dsp.knobs.parammap import ParamMap
from jobs.fit_options import compressor_name
from jobs.ensure import ensure_dsp_fit
from jobs.protocol import held_out_levels
from jobs.overrides import check_overrides, duration, whole_number
from report import plots
from report.compare_page import ExcerptCollector, choose_settings, write_compare_report
from report.evaluate import check_scored_length, evaluate
from report.models import dsp_candidates, neural_candidate, series_label
from report.summary import level_table, markdown_table, rows_to_csv, setting_table, summarise, summary_text

__all__ = ["run_compare"]



def _data_overrides(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("data=") or a.startswith("data.")]


def _ensure_neural(cfg, argv, launcher: list[str] = ()) -> list[Path]:
    """The checkpoints of ``models x variants``; missing ones are trained first.

    The trainings are one multirun of ``train_neural.py``'s job through the launcher of
    ``hydra/launcher`` (``launcher``: the ``hydra...`` settings of compare's command line;
    joblib by default, ``train_jobs`` trainings at once, one thread each). Each job's
    messages are in ``<out_dir>/trainings/<job>/job.out``.
    """
    found, missing = [], []
    for model in cfg.models:
        for variant in cfg.variants:
            run_dir = Path(str(cfg.runs_dir)) / f"{model}_{variant}"
            ckpt = run_dir / "best.pt"
            if not ckpt.is_file():
                if not cfg.train_missing:
                    print(f"skipping {model} {variant}: {ckpt} not found (train_missing=false)")
                    continue
                missing.append((model, variant, run_dir))
            found.append(ckpt)
    if not missing:
        return found
    common = [f"dsp_dir={cfg.dsp_dir}", f"compressor={compressor_name(cfg)}", *_data_overrides(argv),
              f"unseen_levels=[{','.join(str(v) for v in held_out_levels(cfg))}]",   # the same held-out levels
              *[str(o) for o in (cfg.get("train_overrides") or [])]]
    # not quiet: each job's progress bar in its job.out is what the sweep shows
    jobs = [[f"model={model}", f"variant={variant}", f"out_dir={run_dir}", *common, f"quiet={bool(cfg.quiet)}"]
            for model, variant, run_dir in missing]
    hydra = [f"hydra.sweep.dir={Path(str(cfg.out_dir)) / 'trainings'}", *launcher]
    if launcher_name(list(launcher)) == "joblib" and not any(o.startswith("hydra.launcher.n_jobs=") for o in launcher):
        hydra.append(f"hydra.launcher.n_jobs={max(1, int(cfg.get('train_jobs', 1) or 1))}")
    given = [str(o) for o in (cfg.get("train_overrides") or [])]
    how = "its defaults" + (f" and the train_overrides {' '.join(given)}" if given else "")
    for model, variant, run_dir in missing:
        print(f"no trained {model} {variant} in {run_dir}: training it with {how}")
    results = launch("train_neural", "jobs.train:run_train_job", jobs, hydra, job_name="train_neural",
                     output_key="out_dir", quiet=bool(cfg.quiet))
    print(summarise_results(results))
    check_results(results)
    for model, variant, run_dir in missing:
        if not (run_dir / "best.pt").is_file():
            raise UserError(f"{run_dir}: training {model} {variant} wrote no best.pt")
        print(f"trained {model} {variant} -> {run_dir / 'best.pt'}")
    return found


@dataclass
class Corpus:
    """What the comparison needs from a corpus, whatever the device."""
    device: Device
    param_map: ParamMap
    takes: list                          # the eval_split takes
    seen: Callable[[dict], bool]         # trained at (and fitted)
    plot_at: dict                        # the setting of the drum-hit and sweep pictures
    reference: Callable | None = None    # renders the probe signals' target, if known


def _la2a_corpus(cfg) -> Corpus:
    unseen = set(held_out_levels(cfg))
    # the protocol: a Train-only DSP fit that never saw the unseen levels (refused otherwise)
    kmap = ensure_dsp_fit(cfg.data, Path(str(cfg.dsp_dir)), quiet=bool(cfg.quiet), unseen=sorted(unseen),
                          compressor=compressor_name(cfg))
    pairs = [p for p in load_pairs(cfg.data, quiet=cfg.quiet) if p.split == str(cfg.eval_split)
             and p.mode in kmap.modes]
    if not pairs:
        raise UserError(f"no {cfg.eval_split} pairs in the dataset for modes {kmap.modes}")
    reference = None
    if cfg.data.get("generate", False):   # the stand-in renders the target of the probe signals
        from audio import standin
        reference = lambda x, sr, s: standin.render(x, sr, s["peak_reduction"], s["mode"])  # noqa: E731
    return Corpus(LA2A, kmap, pairs, lambda s: s["peak_reduction"] not in unseen,
                  la2a_setting(str(cfg.plots.mode), int(cfg.plots.peak_reduction)), reference)


def _takes_corpus(cfg) -> Corpus:
    """The manifest's ``eval_split`` takes; "seen" at a setting of a Train take (trained at and
    fitted). ``unseen_levels`` and ``plots.mode`` / ``plots.peak_reduction`` do not apply;
    the pictures are drawn at ``plots.knobs`` (default: the first Test setting)."""
    path = Path(str(cfg.data.path))
    rows = read_manifest(path)
    device = manifest_device(rows)
    split = str(cfg.eval_split)
    test_rows = [r for r in rows if r.split == split]
    if not test_rows:
        raise UserError(f"{path}: no {split} rows to compare on")
    fit_rows = [r for r in rows if r.split in set(cfg.data.fit_splits)]
    if not fit_rows:
        raise UserError(f"{path}: no rows in the fitted splits {list(cfg.data.fit_splits)}")
    ranges = KnobTable.of_settings(list(device.knobs), [r.knobs for r in fit_rows])
    for r in test_rows:
        ranges.check(r.knobs, f"{path}: line {r.index} ({r.split})")
    plot_at = _plot_knobs(cfg, list(device.knobs), test_rows, ranges)
    for model in cfg.models:  # a trained model of another device fails now, not after the fits
        for variant in cfg.variants:
            ckpt = Path(str(cfg.runs_dir)) / f"{model}_{variant}" / "best.pt"
            if ckpt.is_file():
                neural_candidate(ckpt, device)
    table = ensure_dsp_fit(cfg.data, Path(str(cfg.dsp_dir)), fit_rows, quiet=bool(cfg.quiet))
    trained = {device.key(r.knobs) for r in rows if r.split == "Train"}
    return Corpus(device, table, test_rows, lambda s: device.key(s) in trained, plot_at)


def _check_corpus(cfg) -> None:
    """One sample rate over the corpus, and scored takes longer than ``skip_s``, from the file
    headers, before any fit or training."""
    if cfg.data.get("kind") == "manifest":
        takes = read_manifest(Path(str(cfg.data.path)))
    else:
        takes = load_pairs(cfg.data, quiet=cfg.quiet)
    if takes:
        check_rates([p for t in takes for p in (t.input, t.target)])
    for t in takes:
        if t.split == str(cfg.eval_split):
            info = audio_info(t.target)
            check_scored_length(t.target, info.frames, info.sample_rate, float(cfg.skip_s))


def _check_models(cfg) -> None:
    """Every compared model a model file of ``cfg/model/`` and every variant a known one,
    before anything is fitted or trained (the names become run folders)."""
    known = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml") if p.stem != "base")
    for model in cfg.models:
        plain_name(model, "model", "models")
        if str(model) not in known:
            raise UserError(f"models: unknown model {model!r} (choose from {', '.join(known)})")
    for variant in cfg.variants:
        if str(variant) not in LA2A.variants:   # every device has the same two
            raise UserError(f"variants: unknown variant {variant!r} (choose from {', '.join(LA2A.variants)})")


def run_compare(cfg, argv: list[str], launcher: list[str] = ()) -> int:
    check_overrides(cfg)
    _check_models(cfg)
    out_dir = Path(str(cfg.out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: output folder is a file")
    if str(cfg.eval_split) != "Test":
        raise UserError(f"eval_split: every figure of the comparison is on Test material (the protocol), "
                        f"got {cfg.eval_split!r}")
    report = _report_options(cfg)   # checked before any fit or training
    _check_corpus(cfg)
    if cfg.data.get("kind") != "manifest":
        from neural.conditioning import check_dsp_class
        check_dsp_class(compressor_name(cfg))   # the hybrids train on dsp_dir's class; other classes: dsp_fits
    corpus = _takes_corpus(cfg) if cfg.data.get("kind") == "manifest" else _la2a_corpus(cfg)
    device = corpus.device
    neural_ckpts = _ensure_neural(cfg, argv, launcher)
    candidates = (dsp_candidates(corpus.param_map) + _extra_dsp_candidates(cfg, corpus)
                  + [neural_candidate(p, device) for p in neural_ckpts])
    collector = None
    if report is not None:
        shown = choose_settings(device, corpus.takes, corpus.seen, report["settings"])
        collector = ExcerptCollector(device, shown, report["excerpt_s"], report["excerpts"], float(cfg.skip_s))
    rows = evaluate(candidates, corpus.takes, device, corpus.seen, float(cfg.skip_s), quiet=cfg.quiet,
                    align=align_mode(cfg.data), rtf_seconds=float(cfg.rtf_seconds), listener=collector)
    bad = [r for r in rows if not all(np.isfinite(r[k]) for k in ("esr", "mae", "stft", "rtf_256"))]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "compare.csv", rows_to_csv(rows, device))
    summary = summarise(rows)
    pictures = _plots(corpus, candidates, rows, cfg, out_dir)
    if device == LA2A:
        tables = [(f"ESR per level, {mode} (* unseen)", level_table(rows, mode))
                  for mode in sorted({r["mode"] for r in rows})]
    else:
        tables = [("ESR by knob setting", setting_table(rows, list(device.knobs)))]
    training = _training_table(candidates)
    if training:
        tables.append(("Training (steps; a model trained for fewer than its default is flagged)",
                          (training, [("model", "model", ""), ("kind", "kind", ""), ("steps", "steps", "d"),
                                      ("best_step", "best step", "d"), ("default_steps", "default steps", "d"),
                                      ("flag", "", "")])))
    write_text_atomic(out_dir / "compare.md", _markdown(cfg, device, summary, tables, pictures, rows))
    page = None
    if collector is not None:
        started = time.perf_counter()
        intro, _ = _intro(cfg, device, rows)
        page = write_compare_report(out_dir, title="DSP vs neural vs hybrid: listen and look", intro=intro,
                                    device=device, rows=rows, summary=summary, tables=tables, pictures=pictures,
                                    collector=collector, max_mb=report["max_mb"], skip_s=float(cfg.skip_s))
        page_seconds = time.perf_counter() - started
    print(summary_text(summary))
    for t in training:
        if t["flag"]:
            print(f"warning: {t['model']} {t['kind']} trained {t['steps']} steps, fewer than its default "
                  f"{t['default_steps']}: its figures are not those of a trained model", file=sys.stderr)
    if device != LA2A:
        print()
        print(format_table(*tables[0][1]))
    if bad:
        print(f"warning: {len(bad)} rows hold non-finite metrics", file=sys.stderr)
    print(f"wrote {out_dir / 'compare.csv'}, {out_dir / 'compare.md'} and {len(pictures)} plots")
    if page is not None:
        print(f"wrote {page.path} ({page.bytes / 1e6:.1f} MB, {page_seconds:.0f} s; excerpts of "
              f"{', '.join(page.shown) or 'no setting'}): open it in a browser, it needs no network")
        if page.dropped:
            print(f"note: left out of the page to stay under report.max_mb={report['max_mb']:g}: the excerpts of "
                  f"{', '.join(page.dropped)}", file=sys.stderr)
    return 0


def _report_options(cfg) -> dict | None:
    """``report``: whether to write report.html and its excerpts' settings, checked (None: no page)."""
    rep = cfg.get("report") or {}
    if not bool(rep.get("html", True)):
        return None
    which = rep.get("settings", "held_out")
    if isinstance(which, str):
        if which not in ("held_out", "all"):
            raise UserError(f"report.settings: held_out, all or a list of peak-reduction levels, got {which!r}")
    else:
        try:
            which = [whole_number("report.settings", v, 0) for v in which]
        except TypeError:
            raise UserError(f"report.settings: held_out, all or a list of peak-reduction levels, got {which!r}") from None
        if cfg.data.get("kind") == "manifest":
            raise UserError("report.settings: a list of levels applies to the LA-2A only (use held_out or all)")
    return {"settings": which, "excerpts": whole_number("report.excerpts", rep.get("excerpts", 3), 1),
            "excerpt_s": duration("report.excerpt_s", rep.get("excerpt_s", 5.0)),
            "max_mb": duration("report.max_mb", rep.get("max_mb", 50))}


def _training_table(candidates) -> list[dict]:
    """Each neural model's training steps, best step and its model file's default step count
    (``cfg/model/<name>.yaml``), flagged when it trained fewer."""
    out = []
    for c in candidates:
        if c.steps is None:
            continue
        cfg = load_config("train_neural", [f"model={c.name}"])
        default = int(cfg.train.get("max_steps") or cfg.model.train.max_steps)   # the model file's, unless overridden
        out.append({"model": c.name, "kind": c.kind, "steps": c.steps, "best_step": c.best_step,
                    "default_steps": default, "flag": "UNDER-TRAINED" if c.steps < default else ""})
    return out


def _plots(corpus: Corpus, candidates, rows, cfg, out_dir: Path) -> list[str]:
    sr = audio_info(corpus.takes[0].input).sample_rate   # the probe signals at the data's rate
    device, at = corpus.device, corpus.plot_at
    if device == LA2A:
        plots.plot_esr_vs_pr(rows, out_dir / "esr_vs_pr.png", {int(v) for v in cfg.unseen_levels})
        plots.plot_knobmap(corpus.param_map, out_dir / "knobmap.png")
        names = ["esr_vs_pr.png", "knobmap.png"]
        where = f"{at['mode']} PR {at['peak_reduction']}"
    else:
        plots.plot_esr_by_setting(rows, list(device.knobs), out_dir / "esr_by_setting.png")
        names = ["esr_by_setting.png"]
        where = device.label(at)
    target = {} if corpus.reference is None else {"target (stand-in)": None}
    by = {(c.name, c.kind): c for c in candidates}
    hit = np.concatenate([np.zeros(int(0.05 * sr), np.float32), material.drum_hit(sr, level_db=-3.0),
                          np.zeros(int(0.3 * sr), np.float32)])
    outs = {k: corpus.reference(hit, sr, at) for k in target}
    outs.update({_label(c): c.render(hit, sr, at) for c in by.values() if c.kind in ("dsp", "hybrid")})
    plots.plot_drum_hit(hit, outs, sr, f"drum hit, {where}", out_dir / "drum_hit.png")
    names.append("drum_hit.png")
    sweep = material.sine_sweep(4.0, sr, level_db=-12.0)
    outs = {k: corpus.reference(sweep, sr, at) for k in target}
    outs.update({_label(c): c.render(sweep, sr, at) for c in candidates if c.kind == "dsp" or not c.kind.startswith("dsp")})
    plots.plot_sweep_spectrograms(outs, sr, f"sine sweep 20 Hz - 20 kHz, -12 dBFS, {where}",
                                  out_dir / "sweep_spectrograms.png")
    names.append("sweep_spectrograms.png")
    return names


def _extra_dsp_candidates(cfg, corpus: Corpus) -> list:
    """The DSP fits of ``dsp_fits`` beside ``dsp_dir``'s (LA-2A chains, each fitted with
    its ``compressor`` when missing), e.g. a graybox fit to compare with the ff5 one."""
    extra = list(cfg.get("dsp_fits") or [])
    if corpus.device != LA2A:
        return []   # a device with its own knobs: its per-take fits or curves are the one DSP model
    out = []
    for i, fit in enumerate(extra):
        if "compressor" not in fit or "dsp_dir" not in fit:
            raise UserError(f"dsp_fits[{i}]: needs compressor and dsp_dir")
        if str(fit.compressor) == compressor_name(cfg):
            continue   # the class of dsp_dir's fit, already compared
        kmap = ensure_dsp_fit(cfg.data, Path(str(fit.dsp_dir)), quiet=bool(cfg.quiet),
                              unseen=sorted(held_out_levels(cfg)), compressor=str(fit.compressor))
        out += dsp_candidates(kmap)
    return out


def _label(c) -> str:
    return series_label(c.name, c.kind)


def _plot_knobs(cfg, knobs: list[str], test_rows, ranges) -> dict:
    given = cfg.plots.get("knobs")
    if given is None:
        return dict(test_rows[0].knobs)
    try:
        values = {str(k): float(v) for k, v in dict(given).items()}
    except (TypeError, ValueError):
        raise UserError(f"plots.knobs: expected a knob setting such as {{{knobs[0]}: ...}}, got {given}") from None
    ranges.check(values, "plots.knobs")
    return {k: values[k] for k in knobs}


_INTRO = {
    True: ("All rows are on the {split} material of `{name}`: {what}; the first {skip:g} s "
           "of each file is a warm-up left out of the metrics. 'unseen' levels ({unseen}) were never used to "
           "train or validate the neural models nor to fit the DSP model (which read Train material only). "
           "`dsp`: the knob model's parameters (at a fitted level its fit there; at an unseen level the knob "
           "model's answer, never a fit there); `dsp-interp`: parameters interpolated from the knob map of all "
           "*other* levels (leave-one-out); `hybrid`: a neural correction of the DSP output conditioned on the "
           "knob model's parameters (and, by default, the knob); "
           "`blackbox`: the same backbone conditioned on the knobs alone. ESR is the pre-emphasised "
           "sum-of-squares error-to-signal ratio; RTF@256 is audio seconds per compute second at 256-sample "
           "blocks on one thread.", "Summary (means over levels)"),
    False: ("All rows are on the {split} rows of the manifest `{path}`, by knob setting; the first {skip:g} s "
            "of each file is a warm-up left out of the metrics. 'seen' settings are those of a Train row (the "
            "neural models were trained there and the DSP model fitted there); 'unseen' settings never were. "
            "`dsp`: the parameters fitted at that setting (at an unseen one, those of the nearest fitted "
            "setting, each knob scaled by its range); `dsp-nearest`: those of the nearest *other* fitted "
            "setting (leave-one-out); `hybrid`: a neural correction of the DSP output conditioned on the "
            "fitted parameters and the knobs; `blackbox`: the same backbone conditioned on the knobs alone. "
            "ESR is the pre-emphasised sum-of-squares error-to-signal ratio; RTF@256 is audio seconds per "
            "compute second at 256-sample blocks on one thread. In `compare.csv`, `mode` is `manifest`, "
            "`peak_reduction` is empty, and the knob values follow in one column per knob.",
            "Summary (means over settings)"),
}


def _evaluated(rows: list[dict], cfg) -> tuple[str, str]:
    """What was evaluated, in words: the modes and levels of the rows, and the unseen levels
    among them (the LA-2A report's intro)."""
    modes = sorted({str(r["mode"]) for r in rows if r.get("mode")})
    levels = sorted({int(r["peak_reduction"]) for r in rows if r.get("peak_reduction") not in (None, "")})
    unseen = sorted({int(r["peak_reduction"]) for r in rows
                     if r.get("split") == "unseen" and r.get("peak_reduction") not in (None, "")})
    mode_words = " and ".join(modes) + (" mode" if len(modes) == 1 else " modes")
    what = f"{mode_words}, {len(levels)} level{'s' if len(levels) != 1 else ''} (PR {', '.join(map(str, levels))})"
    if unseen:
        return what, f"{', '.join(map(str, unseen))} of those evaluated"
    return what, f"none evaluated; configured: {', '.join(map(str, cfg.unseen_levels)) or 'none'}"


def _intro(cfg, device: Device, rows) -> tuple[str, str]:
    """The report's first paragraph (markdown) and its summary's heading."""
    intro, heading = _INTRO[device == LA2A]
    what, unseen = _evaluated(rows, cfg)
    return intro.format(split=cfg.eval_split, name=cfg.data.name, skip=float(cfg.skip_s),
                        unseen=unseen, path=cfg.data.get("path"), what=what), heading


def _markdown(cfg, device: Device, summary, tables, pictures, rows=()) -> str:
    intro, heading = _intro(cfg, device, rows)
    lines = ["# DSP vs neural vs hybrid", "", intro, "", f"## {heading}", "", markdown_table(summary), ""]
    for title, (table_rows, columns) in tables:
        lines += [f"## {title}", "", markdown_table(table_rows, columns), ""]
    if (cfg.get("report") or {}).get("html", True):
        lines += ["The same tables, these pictures and excerpts to listen to: `report.html` (open it in a browser).", ""]
    lines += ["## Pictures", ""]
    lines += [f"![{p}]({p})" for p in pictures]
    lines += ["", "## Every row", "", "See `compare.csv`."]
    return "\n".join(lines) + "\n"
