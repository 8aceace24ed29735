"""The jobs of ``train_comp.py``: one pair, a digital target, a whole chain, a manifest.

Which one runs is the config's ``job`` key (:data:`FIT_JOBS`); ``job=auto`` decides
from the data in one place, :func:`fit_job_kind`. Each job reads what it needs, fits,
writes checkpoints atomically and prints a short table; the entry script only composes
the config and calls :func:`run_fit_job`.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from audio.datasets import corpus_spec, fit_pair_finder, load_pairs
from audio.corpus import ensure_corpus
from audio.io import read_audio, read_pair
from audio.devices import MODES
from audio.manifest import knob_names, read_manifest
from audio.signaltrain import levels_by_mode, scan_corpus
from common.errors import UserError
from common.records import write_csv
from common.table import format_table
from dsp.chain import ChainSpec, frame_pair, knobmap_check, run_chain, write_summary
from dsp.checkpoint import save_checkpoint
from dsp.fit import FitResult, fit_frames
from dsp.fitkey import fit_key, fit_settings
from dsp.knobmap import KnobMap
from dsp.knobtable import take_dir, take_fit
from dsp.objective import target_energy
from dsp.params import PARAM_NAMES
from dsp.render import render
from dsp.settings import fit_options, initial_params
from jobs.overrides import check_overrides

__all__ = ["FIT_JOBS", "fit_job_kind", "run_fit_job", "TAKES_SUMMARY"]

FIT_JOBS = ("pair", "digital", "chain", "manifest")
TAKES_SUMMARY = "manifest_summary.csv"

PARAM_COLUMNS = [("threshold_db", "thresh dB", ".2f"), ("ratio", "ratio", ".2f"),
                 ("attack_ms", "attack ms", ".3g"), ("release_ms", "release ms", ".4g"),
                 ("make_up_db", "make-up dB", ".2f")]


def fit_job_kind(cfg) -> str:
    """The job to run: ``cfg.job``, or with ``job=auto`` the one the data asks for: a
    manifest (``data.kind: manifest``), a digital target (``data.kind: digital`` or
    ``data.digital`` given: rendered from known parameters), one pair (``data.input``
    and ``data.target``), else the chain."""
    job = str(cfg.get("job", "auto"))
    if job not in ("auto", *FIT_JOBS):
        raise UserError(f"job must be auto or one of {', '.join(FIT_JOBS)}, got {job!r}")
    data = cfg.data
    if job == "auto":
        if data.get("kind") == "manifest":
            return "manifest"
        if data.get("kind") == "digital" or data.get("digital"):
            job = "digital"
        elif data.get("input") or data.get("target"):
            job = "pair"
        else:
            return "chain"
    if job == "pair" or (job == "digital" and (data.get("input") or data.get("target"))):
        if not (data.get("input") and data.get("target")):
            raise UserError("a single fit needs both data.input and data.target")
    return job


def run_fit_job(cfg) -> int:
    check_overrides(cfg)
    ckpt_dir = Path(str(cfg.ckpt_dir))
    if ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise UserError(f"{ckpt_dir}: checkpoint folder is a file")
    for parent in ckpt_dir.parents:  # found now, not after the fit when the folder is made
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{ckpt_dir}: cannot make the checkpoint folder, {parent} is a file")
    options = fit_options(cfg)
    init = initial_params(cfg, options.ranges)
    job = {"pair": _single_job, "digital": _digital_job, "chain": _chain_job, "manifest": _manifest_job}
    return job[fit_job_kind(cfg)](cfg, ckpt_dir, options, init)


# --- one pair --------------------------------------------------------------------------
def _fit_with_progress(frames, init, options, quiet: bool, label: str) -> FitResult:
    bar = tqdm(total=options.newton.max_iterations, desc=label, unit="it", disable=quiet, leave=False)

    def step(it, loss, dec):
        bar.update(1)
        bar.set_postfix_str(f"esr {loss / energy:.3e}", refresh=False)

    energy = target_energy(frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_frames(frames, init, options, step, level_match=True)
    bar.close()
    return res


def _record(res: FitResult, sample_rate: int, options, **extra) -> dict:
    return {"params": res.params, "esr": res.esr, "loss": res.loss, "iterations": res.iterations,
            "converged": res.converged, "seconds": res.seconds, "sample_rate": sample_rate,
            "reason": res.reason, "hessian": options.hessian, "initial_params": res.initial_params, **extra}


def _single_job(cfg, ckpt_dir, options, init) -> int:
    inp, tgt = Path(str(cfg.data.input)), Path(str(cfg.data.target))
    x, y, sr = read_pair(inp, tgt)
    frames = _frames(cfg, x, y, sr, tgt)
    res = _fit_with_progress(frames, init, options, cfg.quiet, "fit")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt_dir / "ckpt.yaml", _record(res, sr, options, input=str(inp), target=str(tgt)))
    _report_single(res, ckpt_dir / "ckpt.yaml")
    return 0


def _digital_job(cfg, ckpt_dir, options, init) -> int:
    data = cfg.data
    truth = {k: float(data.digital[k]) for k in PARAM_NAMES}
    if data.get("input"):
        inp = Path(str(data.input))
        x, sr = read_audio(inp)
    else:
        root = ensure_corpus(Path(str(data.cache_dir)), corpus_spec(data), quiet=cfg.quiet)
        first = min((p for p in scan_corpus(root) if p.split == "Train"), key=lambda p: p.id)
        inp = first.input
        x, sr = read_audio(inp)
    x = x[:, : int(float(data.get("seconds", 1e9)) * sr)].astype(np.float64)
    y = render(x, sr, truth)
    frames = _frames(cfg, x, y, sr, inp)
    res = _fit_with_progress(frames, init, options, cfg.quiet, data.name)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt_dir / "ckpt.yaml", _record(res, sr, options, input=str(inp), truth=truth))
    _report_single(res, ckpt_dir / "ckpt.yaml")
    rows = [{"name": k, "truth": truth[k], "fitted": res.params[k],
             "error": abs(res.params[k] - truth[k]) / (1.0 if k.endswith("_db") else abs(truth[k])),
             "unit": "dB" if k.endswith("_db") else "relative"} for k in PARAM_NAMES]
    print(format_table(rows, [("name", "parameter", ""), ("truth", "truth", ".6g"), ("fitted", "fitted", ".6g"),
                              ("error", "error", ".2e"), ("unit", "", "")]))
    return 0


def _frames(cfg, x, y, sr, path):
    return frame_pair(x, y, sr, float(cfg.data.frame_s), float(cfg.data.overlap_s), path)


def _report_single(res: FitResult, path: Path) -> None:
    row = {**res.params, "esr": res.esr, "iterations": res.iterations, "seconds": res.seconds,
           "converged": str(res.converged)}
    print(format_table([row], PARAM_COLUMNS + [("esr", "ESR", ".4g"), ("iterations", "iters", "d"),
                                               ("seconds", "s", ".1f"), ("converged", "converged", "")]))
    if not res.converged:
        print(f"warning: the fit did not converge ({res.reason}); best parameters kept", file=sys.stderr)
    print(f"wrote {path}")


# --- the chain -------------------------------------------------------------------------
def _fit_key_settings(cfg) -> dict:
    """The config's settings a reused fit must share besides the fit options (dsp/fitkey.py):
    the compressor section, which pair of a level is fitted, and any alignment setting."""
    def plain(value):
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    data = cfg.data
    chosen = {k: plain(data.get(k)) for k in ("fit_splits", "fit_tag")}
    chosen.update({k: plain(data.get(k)) for k in data if "align" in str(k)})
    return {"compressor": plain(cfg.compressor), "data": chosen,
            **{k: plain(cfg.get(k)) for k in ("method",) if k in cfg}}


def _note_refit(ckpt: Path, reason: str) -> None:
    tqdm.write(f"note: refitting {ckpt}: {reason}", file=sys.stderr)


def _chain_job(cfg, ckpt_dir, options, init) -> int:
    pairs = load_pairs(cfg.data, quiet=cfg.quiet)
    find = fit_pair_finder(pairs, cfg.data)
    modes = [str(m) for m in cfg.modes]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UserError(f"modes: unknown mode {bad[0]!r} (use compress and/or limit)")
    levels = [int(v) for v in cfg.levels]
    if any(not 0 <= v <= 100 for v in levels):
        raise UserError("levels: peak reduction levels must lie in 0..100")
    todo = [(m, pr) for m in modes for pr in sorted(levels, reverse=True) if find(m, pr) is not None]
    if not todo:
        found = levels_by_mode(pairs)
        raise UserError(f"{cfg.data.get('root') or 'stand-in corpus'}: no pairs for modes {modes} at "
                        f"levels {levels} (found {found})")
    if str(cfg.init) not in ("chain", "default"):
        raise UserError(f"init must be chain or default, got {cfg.init!r}")
    spec = ChainSpec(modes, levels, str(cfg.init), init,
                     float(cfg.data.frame_s), float(cfg.data.overlap_s), _fit_key_settings(cfg))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc="chain", unit="level", disable=cfg.quiet)
    it_bar = {"n": 0}

    def on_level(mode, pr, status):
        if status == "missing":
            return
        bar.set_postfix_str(f"{mode} PR {pr}" + (" (done before)" if status == "skip" else ""), refresh=False)
        it_bar["n"] += 1
        if it_bar["n"] > 1:
            bar.update(1)

    def on_iteration(it, loss, dec):
        bar.set_postfix_str(f"{bar.postfix.split(' it')[0] if bar.postfix else ''} it {it}", refresh=False)

    rows = run_chain(find, ckpt_dir, spec, options, on_level, on_iteration, _note_refit)
    bar.update(1)
    bar.close()
    write_summary(ckpt_dir / "summary.csv", rows)
    kmap = KnobMap.from_rows(rows)
    kmap.save(ckpt_dir / "knobmap.yaml")
    print(format_table(rows, [("mode", "mode", ""), ("peak_reduction", "PR", "d")] + PARAM_COLUMNS +
                       [("esr", "ESR", ".4f"), ("iterations", "iters", "d"), ("seconds", "s", ".1f")]))
    for mode in modes:
        esr = [r["esr"] for r in rows if r["mode"] == mode]
        if esr:
            print(f"{mode}: mean ESR {np.mean(esr):.4f} over {len(esr)} levels, "
                  f"{sum(r['iterations'] for r in rows if r['mode'] == mode)} Newton iterations")
    unconverged = [f"{r['mode']} PR {r['peak_reduction']}" for r in rows if not r["converged"]]
    if unconverged:
        print(f"warning: not converged (best parameters kept): {', '.join(unconverged)}", file=sys.stderr)
    step = int(cfg.knobmap.check_step)
    check = knobmap_check(rows, find, spec, options, step) if step > 0 else []
    if check:
        write_csv(ckpt_dir / "knobmap_check.csv", check)
        print(f"\nknob map check: parameters interpolated from every {step}th PR vs fitted")
        print(format_table(check, [("mode", "mode", ""), ("peak_reduction", "PR", "d"),
                                   ("esr_fitted", "ESR fitted", ".4f"),
                                   ("esr_interpolated", "ESR interpolated", ".4f")]))
    print(f"wrote {ckpt_dir / 'summary.csv'} and {ckpt_dir / 'knobmap.yaml'}")
    return 0


# --- a manifest: takes of a device with arbitrary knobs, one fit each -----------------------
def _manifest_job(cfg, ckpt_dir, options, init) -> int:
    rows = [r for r in read_manifest(str(cfg.data.path)) if r.split in set(cfg.data.fit_splits)]
    if not rows:
        raise UserError(f"{cfg.data.path}: no rows in splits {list(cfg.data.fit_splits)}")
    knobs = knob_names(rows)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for row in tqdm(rows, desc="manifest", unit="row", disable=cfg.quiet):
        ckpt = take_dir(ckpt_dir, row) / "ckpt.yaml"
        key = fit_key(row.input, row.target, fit_settings(options, start=init, frame_s=float(cfg.data.frame_s),
                                                          overlap_s=float(cfg.data.overlap_s), **_fit_key_settings(cfg)))
        record = take_fit(ckpt_dir, row, key, _note_refit)   # None: no fit yet, unreadable, or stale
        if record is None:
            x, y, sr = read_pair(row.input, row.target)
            frames = _frames(cfg, x, y, sr, row.target)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = fit_frames(frames, init, options, None, level_match=True)
            record = _record(res, sr, options, input=str(row.input.resolve()), target=str(row.target.resolve()),
                             knobs=row.knobs, fit_key=key)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ckpt, record)
        out.append({**{f"knob_{k}": v for k, v in row.knobs.items()}, "split": row.split, **record["params"], "esr": record["esr"],
                    "iterations": record["iterations"], "seconds": record["seconds"]})
    write_csv(ckpt_dir / TAKES_SUMMARY, out)
    print(format_table(out, [(f"knob_{k}", k, ".4g") for k in knobs] + PARAM_COLUMNS +
                       [("esr", "ESR", ".4g"), ("iterations", "iters", "d")]))
    print(f"wrote {ckpt_dir / TAKES_SUMMARY}")
    return 0
