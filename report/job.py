"""``compare.py``: run what is missing, evaluate every model, write CSV, markdown and plots.

On the LA-2A corpora, by mode and peak reduction; on a manifest corpus (``data=manifest``,
a device with arbitrary knobs), by knob setting (:func:`_run_compare_manifest`).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from audio import material
from audio.datasets import load_pairs
from common.atomic import write_text_atomic
from common.config import load_config
from common.errors import UserError
from common.table import format_table
from dsp.jobs import run_fit_job
from dsp.knobmap import KnobMap
from report import plots
from report.evaluate import evaluate, evaluate_manifest
from report.models import dsp_candidates, manifest_dsp_candidates, neural_candidate
from report.summary import level_table, markdown_table, rows_to_csv, setting_table, summarise, summary_text

__all__ = ["run_compare"]

ROOT = Path(__file__).resolve().parent.parent


def _data_overrides(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("data=") or a.startswith("data.")]


def _ensure_chain(cfg, argv) -> KnobMap:
    dsp_dir = Path(str(cfg.dsp_dir))
    if not (dsp_dir / "knobmap.yaml").is_file():
        print(f"no fitted chain in {dsp_dir}: fitting it first")
        run_fit_job(load_config("config", _data_overrides(argv) + [f"ckpt_dir={dsp_dir}", f"quiet={cfg.quiet}"]))
    return KnobMap.load(dsp_dir / "knobmap.yaml")


def _ensure_neural(cfg, argv) -> list[Path]:
    """The checkpoints of ``models x variants``; missing ones are trained first.

    With ``train_jobs > 1`` that many trainings run at once (each on one thread), each
    writing its messages to ``<run_dir>/train.out``; one at a time they print here.
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
    jobs = max(1, int(cfg.get("train_jobs", 1) or 1))
    running: list[tuple] = []

    def finish(job) -> None:
        model, variant, run_dir, proc, log = job
        rc = proc.wait()
        if log is not None:
            log.close()
        if rc != 0 or not (run_dir / "best.pt").is_file():
            for _, _, _, other, _ in running:
                other.terminate()
            where = f"see {run_dir / 'train.out'}" if log is not None else "see the messages above"
            raise UserError(f"{run_dir}: training {model} {variant} failed ({where})")
        print(f"trained {model} {variant} -> {run_dir / 'best.pt'}")

    for model, variant, run_dir in missing:
        cmd = [sys.executable, str(ROOT / "train_neural.py"), f"model={model}", f"variant={variant}",
               f"out_dir={run_dir}", f"dsp_dir={cfg.dsp_dir}", *_data_overrides(argv),
               *[str(o) for o in (cfg.get("train_overrides") or [])]]
        if jobs == 1:
            print(f"no trained {model} {variant} in {run_dir}: training it with the defaults")
            finish((model, variant, run_dir, subprocess.Popen(cmd), None))
            continue
        while len(running) >= jobs:
            finish(running.pop(0))
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run_dir / "train.out", "w")
        print(f"no trained {model} {variant} in {run_dir}: training it with the defaults "
              f"(messages in {run_dir / 'train.out'})")
        running.append((model, variant, run_dir, subprocess.Popen(cmd + ["quiet=true"], stdout=log,
                                                                  stderr=subprocess.STDOUT), log))
    while running:
        finish(running.pop(0))
    return found


def run_compare(cfg, argv: list[str]) -> int:
    out_dir = Path(str(cfg.out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: output folder is a file")
    if cfg.data.get("kind") == "manifest":
        return _run_compare_manifest(cfg, argv, out_dir)
    unseen = {int(v) for v in cfg.unseen_levels}
    kmap = _ensure_chain(cfg, argv)
    neural_ckpts = _ensure_neural(cfg, argv)
    pairs = [p for p in load_pairs(cfg.data, quiet=cfg.quiet) if p.split == str(cfg.eval_split)
             and p.mode in kmap.modes]
    if not pairs:
        raise UserError(f"no {cfg.eval_split} pairs in the dataset for modes {kmap.modes}")
    candidates = dsp_candidates(kmap) + [neural_candidate(p) for p in neural_ckpts]
    rows = evaluate(candidates, pairs, unseen, float(cfg.skip_s), quiet=cfg.quiet)
    bad = [r for r in rows if not all(np.isfinite(r[k]) for k in ("esr", "mae", "stft", "rtf_256"))]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "compare.csv", rows_to_csv(rows))
    summary = summarise(rows)
    pictures = _plots(cfg, kmap, candidates, rows, unseen, out_dir)
    write_text_atomic(out_dir / "compare.md", _markdown(cfg, summary, rows, pictures))
    print(summary_text(summary))
    if bad:
        print(f"warning: {len(bad)} rows hold non-finite metrics", file=sys.stderr)
    print(f"wrote {out_dir / 'compare.csv'}, {out_dir / 'compare.md'} and {len(pictures)} plots")
    return 0


def _plots(cfg, kmap, candidates, rows, unseen, out_dir: Path) -> list[str]:
    sr = 44100
    mode, pr = str(cfg.plots.mode), int(cfg.plots.peak_reduction)
    names = []
    plots.plot_esr_vs_pr(rows, out_dir / "esr_vs_pr.png", unseen)
    names.append("esr_vs_pr.png")
    plots.plot_knobmap(kmap, out_dir / "knobmap.png")
    names.append("knobmap.png")
    device = _reference_device(cfg)
    by = {(c.name, c.kind): c for c in candidates}
    show = [by[k] for k in by if k[1] in ("dsp", "hybrid")]
    hit = np.concatenate([np.zeros(int(0.05 * sr), np.float32), material.drum_hit(sr, level_db=-3.0),
                          np.zeros(int(0.3 * sr), np.float32)])
    outs = {} if device is None else {"target (stand-in)": device(hit, sr, pr, mode)}
    outs.update({_label(c): c.render(hit, sr, mode, pr) for c in show})
    plots.plot_drum_hit(hit, outs, sr, f"drum hit, {mode} PR {pr}", out_dir / "drum_hit.png")
    names.append("drum_hit.png")
    sweep = material.sine_sweep(4.0, sr, level_db=-12.0)
    outs = {} if device is None else {"target (stand-in)": device(sweep, sr, pr, mode)}
    outs.update({_label(c): c.render(sweep, sr, mode, pr) for c in candidates if c.kind != "dsp-interp"})
    plots.plot_sweep_spectrograms(outs, sr, f"sine sweep 20 Hz - 20 kHz, -12 dBFS, {mode} PR {pr}",
                                  out_dir / "sweep_spectrograms.png")
    names.append("sweep_spectrograms.png")
    return names


def _label(c) -> str:
    return "dsp" if c.kind == "dsp" else f"{c.name} {c.kind}"


def _reference_device(cfg):
    """The stand-in renders the 'target' of the probe signals when the corpus is the stand-in's."""
    if not cfg.data.get("generate", False):
        return None
    from audio import standin
    return lambda x, sr, pr, mode: standin.render(x, sr, pr, mode)


def _markdown(cfg, summary, rows, pictures) -> str:
    lines = ["# DSP vs neural vs hybrid", "",
             f"All rows are on the {cfg.eval_split} material of `{cfg.data.name}`, every level and both modes; "
             f"the first {cfg.skip_s:g} s of each file is a warm-up left out of the metrics. "
             f"'unseen' levels ({', '.join(map(str, cfg.unseen_levels))}) were never used to train the neural "
             "models. `dsp`: the parameters fitted at that level; `dsp-interp`: parameters interpolated from "
             "the knob map of all *other* fitted levels (leave-one-out); `hybrid`: a neural correction of the "
             "DSP output conditioned on the fitted parameters (and, by default, the knob); `blackbox`: the "
             "same backbone conditioned on the knobs alone. ESR is the pre-emphasised sum-of-squares error-to-signal ratio; RTF@256 is "
             "audio seconds per compute second at 256-sample blocks on one thread.", "",
             "## Summary (means over levels)", "", markdown_table(summary), ""]
    for mode in sorted({r["mode"] for r in rows}):
        lines += [f"## ESR per level, {mode} (* unseen)", "", markdown_table(*level_table(rows, mode)), ""]
    lines += ["## Pictures", ""]
    lines += [f"![{p}]({p})" for p in pictures]
    lines += ["", "## Every row", "", "See `compare.csv`."]
    return "\n".join(lines) + "\n"


# --- a manifest corpus: a device with arbitrary knobs -------------------------------------
def _run_compare_manifest(cfg, argv: list[str], out_dir: Path) -> int:
    """Every model on the manifest's ``eval_split`` rows, by knob setting.

    ``dsp``: the fit at the setting (the nearest fitted setting's where none);
    ``dsp-nearest``: the nearest *other* fitted setting's; the neural models as trained
    by ``train_neural.py`` with the same data overrides. Rows: ``mode`` "manifest",
    ``peak_reduction`` empty, ``split`` "seen" at a setting of a Train row (trained at and
    fitted), else "unseen"; one column per knob. ``unseen_levels`` and ``plots.mode`` /
    ``plots.peak_reduction`` do not apply; the pictures are drawn at ``plots.knobs``
    (default: the first Test setting).
    """
    from audio.manifest import knob_names, read_manifest
    from dsp.knobtable import KnobTable, ensure_fitted_table

    path = Path(str(cfg.data.path))
    rows = read_manifest(path)
    knobs = knob_names(rows)
    split = str(cfg.eval_split)
    test_rows = [r for r in rows if r.split == split]
    if not test_rows:
        raise UserError(f"{path}: no {split} rows to compare on")
    fit_rows = [r for r in rows if r.split in set(cfg.data.fit_splits)]
    if not fit_rows:
        raise UserError(f"{path}: no rows in the fitted splits {list(cfg.data.fit_splits)}")
    ranges = KnobTable.of_settings(knobs, [r.knobs for r in fit_rows])
    for r in test_rows:
        ranges.check(r.knobs, f"{path}: line {r.index} ({r.split})")
    plot_knobs = _plot_knobs(cfg, knobs, test_rows, ranges)
    for model in cfg.models:  # a trained model of another device fails now, not after the fits
        for variant in cfg.variants:
            ckpt = Path(str(cfg.runs_dir)) / f"{model}_{variant}" / "best.pt"
            if ckpt.is_file():
                neural_candidate(ckpt, knobs)
    table = ensure_fitted_table(cfg.data, fit_rows, Path(str(cfg.dsp_dir)), True, bool(cfg.quiet))
    neural_ckpts = _ensure_neural(cfg, argv)
    candidates = manifest_dsp_candidates(table) + [neural_candidate(p, knobs) for p in neural_ckpts]
    trained = {tuple(r.knobs[k] for k in knobs) for r in rows if r.split == "Train"}
    results = evaluate_manifest(candidates, test_rows, lambda k: tuple(k[n] for n in knobs) in trained,
                                float(cfg.skip_s), quiet=cfg.quiet)
    bad = [r for r in results if not all(np.isfinite(r[k]) for k in ("esr", "mae", "stft", "rtf_256"))]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "compare.csv", rows_to_csv(results, knobs))
    summary = summarise(results)
    lines, columns = setting_table(results, knobs)
    pictures = _manifest_plots(candidates, results, knobs, plot_knobs, out_dir)
    write_text_atomic(out_dir / "compare.md", _manifest_markdown(cfg, summary, lines, columns, pictures))
    print(summary_text(summary))
    print()
    print(format_table(lines, columns))
    if bad:
        print(f"warning: {len(bad)} rows hold non-finite metrics", file=sys.stderr)
    print(f"wrote {out_dir / 'compare.csv'}, {out_dir / 'compare.md'} and {len(pictures)} plots")
    return 0


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


def _manifest_plots(candidates, rows, knobs: list[str], at: dict, out_dir: Path) -> list[str]:
    sr = 44100
    plots.plot_esr_by_setting(rows, knobs, out_dir / "esr_by_setting.png")
    names = ["esr_by_setting.png"]
    where = ", ".join(f"{k} {v:g}" for k, v in at.items())
    hit = np.concatenate([np.zeros(int(0.05 * sr), np.float32), material.drum_hit(sr, level_db=-3.0),
                          np.zeros(int(0.3 * sr), np.float32)])
    outs = {_label(c): c.render(hit, sr, at) for c in candidates if c.kind in ("dsp", "hybrid")}
    plots.plot_drum_hit(hit, outs, sr, f"drum hit, {where}", out_dir / "drum_hit.png")
    names.append("drum_hit.png")
    sweep = material.sine_sweep(4.0, sr, level_db=-12.0)
    outs = {_label(c): c.render(sweep, sr, at) for c in candidates if c.kind != "dsp-nearest"}
    plots.plot_sweep_spectrograms(outs, sr, f"sine sweep 20 Hz - 20 kHz, -12 dBFS, {where}",
                                  out_dir / "sweep_spectrograms.png")
    names.append("sweep_spectrograms.png")
    return names


def _manifest_markdown(cfg, summary, lines, columns, pictures) -> str:
    text = ["# DSP vs neural vs hybrid", "",
            f"All rows are on the {cfg.eval_split} rows of the manifest `{cfg.data.path}`, by knob setting; "
            f"the first {cfg.skip_s:g} s of each file is a warm-up left out of the metrics. 'seen' settings are "
            "those of a Train row (the neural models were trained there and the DSP model fitted there); "
            "'unseen' settings never were. `dsp`: the parameters fitted at that setting (at an unseen one, "
            "those of the nearest fitted setting, each knob scaled by its range); `dsp-nearest`: those of the "
            "nearest *other* fitted setting (leave-one-out); `hybrid`: a neural correction of the DSP output "
            "conditioned on the fitted parameters and the knobs; `blackbox`: the same backbone conditioned on "
            "the knobs alone. ESR is the pre-emphasised sum-of-squares error-to-signal ratio; RTF@256 is audio "
            "seconds per compute second at 256-sample blocks on one thread. In `compare.csv`, `mode` is "
            "`manifest`, `peak_reduction` is empty, and the knob values follow in one column per knob.", "",
            "## Summary (means over settings)", "", markdown_table(summary), "",
            "## ESR by knob setting", "", markdown_table(lines, columns), "",
            "## Pictures", ""]
    text += [f"![{p}]({p})" for p in pictures]
    text += ["", "## Every row", "", "See `compare.csv`."]
    return "\n".join(text) + "\n"
