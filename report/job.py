"""``compare.py``: run what is missing, evaluate every model, write CSV, markdown and plots."""
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
from dsp.jobs import run_fit_job
from dsp.knobmap import KnobMap
from report import plots
from report.evaluate import evaluate
from report.models import dsp_candidates, neural_candidate
from report.summary import markdown_table, rows_to_csv, summarise, summary_text

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
    found = []
    for model in cfg.models:
        for variant in cfg.variants:
            run_dir = Path(str(cfg.runs_dir)) / f"{model}_{variant}"
            ckpt = run_dir / "best.pt"
            if not ckpt.is_file():
                if not cfg.train_missing:
                    print(f"skipping {model} {variant}: {ckpt} not found (train_missing=false)")
                    continue
                print(f"no trained {model} {variant} in {run_dir}: training it with the defaults")
                cmd = [sys.executable, str(ROOT / "train_neural.py"), f"model={model}", f"variant={variant}",
                       f"out_dir={run_dir}", f"dsp_dir={cfg.dsp_dir}", *_data_overrides(argv)]
                if subprocess.run(cmd).returncode != 0 or not ckpt.is_file():
                    raise UserError(f"{run_dir}: training {model} {variant} failed (see the messages above)")
            found.append(ckpt)
    return found


def run_compare(cfg, argv: list[str]) -> int:
    out_dir = Path(str(cfg.out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: output folder is a file")
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
             "DSP output conditioned on the fitted parameters; `blackbox`: the same backbone conditioned on "
             "the knobs alone. ESR is the pre-emphasised sum-of-squares error-to-signal ratio; RTF@256 is "
             "audio seconds per compute second at 256-sample blocks on one thread.", "",
             "## Summary (means over levels)", "", markdown_table(summary), "",
             "## Pictures", ""]
    lines += [f"![{p}]({p})" for p in pictures]
    lines += ["", "## Every row", "", "See `compare.csv`."]
    return "\n".join(lines) + "\n"
