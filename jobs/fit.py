"""The jobs of ``train_comp.py``: one pair, a digital target, a whole chain, a manifest.

Which one runs is the config's ``job`` key (:data:`FIT_JOBS`); ``job=auto`` decides
from the data in one place, :func:`fit_job_name`. Each job reads what it needs, fits,
writes checkpoints atomically and prints a short table; the entry script only composes
the config and calls :func:`run_fit_job`.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from audio.datasets import cache_folder, fit_pair_finder, load_pairs
from audio.io import read_audio
from audio.material import synthesize
from audio.devices import MODES, la2a_setting
from audio.manifest import knob_names, read_manifest
from audio.pairs import align_mode, alignment_note, read_aligned_pair
from audio.rates import check_rates
from audio.signaltrain import find_level, levels_by_mode
from common.errors import UserError
from common.memory import map_large_allocations
from common.locks import output_lock
from common.paths import check_apart
from common.records import write_csv
from common.tracking import NULL_TRACKER
from common.table import format_table
from audio.framing import frame_pair
from jobs.chain import ChainSpec, fit_span_setting, knobmap_check, refuse_other_init, run_chain
from dsp.storage.open_fit import open_fit
from dsp.storage.records import save_checkpoint
from dsp.fitting.collapse import check_fit_collapse
from dsp.fitting.ff5 import FitOptions, FitResult, fit_frames
from dsp.storage.fitkey import fit_key, fit_settings
from dsp.fitting.by_class import fit_any, options_class
from dsp.models.classes import model_class
from dsp.storage.take_fits import take_dir, take_fit
from dsp.derivatives.autograd import target_energy
from dsp.models.parameters import PARAM_NAMES
from dsp.models.ff5_streaming import render
from jobs.fit_options import fit_options, initial_params
from jobs.overrides import check_overrides
from jobs.protocol import held_out_levels
from jobs.fit_report import chain_report, manifest_report, pair_report, report_options
from jobs.records import (PARAM_COLUMNS, chain_table_columns, invalidate_derived, param_columns, print_next_steps,
                          report_alignment,
                          write_chain_records)
from report.fit_summary import ESR_LEGEND
from report.tensorboard import log_audio_pairs, log_esr_vs_setting, log_knob_map, open_tracker

__all__ = ["FIT_JOBS", "fit_job_name", "run_fit_job", "TAKES_SUMMARY"]

FIT_JOBS = ("pair", "digital", "chain", "manifest")
TAKES_SUMMARY = "manifest_summary.csv"

_FF5_ONLY = {"digital": "a digital target is the 5-parameter compressor itself",
             "manifest": "a manifest device's fits hold the 5-parameter compressor (a gray-box one is not supported yet)"}


def _ff5_options(options, job: str, quiet: bool):
    """The 5-parameter fit options for the jobs that fit only it, said on the console when the
    config asked for another class."""
    if options_class(options) == "ff5":
        return options
    if not quiet:
        print(f"note: {_FF5_ONLY[job]}: fitting compressor=ff5")
    return FitOptions(**{f.name: getattr(options, f.name) for f in fields(FitOptions)})


def fit_job_name(cfg) -> str:
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
    if job == "pair" or (job == "digital" and data.get("target") and not data.get("input")):
        if not (data.get("input") and data.get("target")):
            raise UserError("a single fit needs both data.input and data.target")
    return job


def data_inputs(data) -> dict:
    """What a run reads, by config key: files and folders no output may touch."""
    inputs = {f"data.{k}": data.get(k) for k in ("input", "target", "path", "root")}
    if data.get("generate") and not data.get("root"):
        inputs["the generated corpus (data.cache_dir)"] = cache_folder(data.get("cache_dir"))
    return inputs


def run_fit_job(cfg) -> int:
    check_overrides(cfg)
    ckpt_dir = Path(str(cfg.ckpt_dir))
    if ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise UserError(f"{ckpt_dir}: checkpoint folder is a file")
    for parent in ckpt_dir.parents:  # found now, not after the fit when the folder is made
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{ckpt_dir}: cannot make the checkpoint folder, {parent} is a file")
    check_apart({"ckpt_dir": ckpt_dir}, data_inputs(cfg.data))
    options = fit_options(cfg)
    init = initial_params(cfg, options.ranges)
    report_options(cfg)   # the page's settings, checked before the fit
    map_large_allocations()   # a long pair's frame-sized temporaries back to the system when freed
    kind = fit_job_name(cfg)
    span = fit_span_setting(cfg.data)
    if span is not None and (kind != "chain" or _fit_method(cfg) != "per_level"):
        raise UserError(f"data.fit_span: only a per-level chain fits part of each take (this is a {kind} job"
                        f"{'' if kind != 'chain' else ', method=' + _fit_method(cfg)})")
    if kind in _FF5_ONLY:
        options = _ff5_options(options, kind, bool(cfg.quiet))
    job = {"pair": _single_job, "digital": _digital_job, "chain": _chain_job, "manifest": _manifest_job}
    with output_lock(ckpt_dir, "checkpoint folder"):
        if kind == "manifest" or cfg.get("logger", "csv") == "csv":
            return job[kind](cfg, ckpt_dir, options, init)
        with open_tracker(cfg.logger, ckpt_dir) as tracker:   # event files in ckpt_dir/tensorboard
            return job[kind](cfg, ckpt_dir, options, init, tracker)


# --- one pair --------------------------------------------------------------------------
def _fit_with_progress(frames, init, options, quiet: bool, label: str, tracker=NULL_TRACKER) -> FitResult:
    bar = tqdm(total=options.newton.max_iterations, desc=label, unit="it", disable=quiet, leave=False)

    def step(it, loss, dec):
        tracker.scalars(it, {"newton/loss": loss, "newton/esr": loss / energy})
        bar.update(1)
        bar.set_postfix_str(f"esr {loss / energy:.3e}", refresh=False)

    energy = target_energy(frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_any(frames, init, options, step, level_match=True)
    bar.close()
    return res


def _record(res: FitResult, sample_rate: int, options, **extra) -> dict:
    return {"params": res.params, "esr": res.esr, "loss": res.loss, "iterations": res.iterations,
            "converged": res.converged, "seconds": res.seconds, "sample_rate": sample_rate,
            "reason": res.reason, "hessian": options.hessian, "initial_params": res.initial_params,
            "compressor": options_class(options), **extra}


def _track_pair(tracker, x, y, sr: int, params: dict, compressor: str, label: str = "fit") -> None:
    """Target against the fitted model on the first seconds of the pair (logger=tensorboard)."""
    if tracker is NULL_TRACKER:
        return
    x, y = np.atleast_2d(x)[0, : 5 * sr], np.atleast_2d(y)[0, : 5 * sr]
    log_audio_pairs(tracker, [(label, y, np.atleast_2d(model_class(compressor).render(x, sr, params))[0])], sr)
    tracker.flush()


def _single_job(cfg, ckpt_dir, options, init, tracker=NULL_TRACKER) -> int:
    inp, tgt = Path(str(cfg.data.input)), Path(str(cfg.data.target))
    x, y, sr, aligned = read_aligned_pair(inp, tgt, align_mode(cfg.data))
    print(f"{tgt}: {aligned.describe()}")
    frames = _frames(cfg, x, y, sr, tgt)
    invalidate_derived(ckpt_dir)
    res = _fit_with_progress(frames, init, options, cfg.quiet, "fit", tracker)
    _track_pair(tracker, x, y, sr, res.params, options_class(options))
    check_fit_collapse(res.params, res.esr, tgt)   # a collapsed fit is an error, never "converged"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    record = _record(res, sr, options, input=str(inp), target=str(tgt), alignment=aligned.to_dict())
    save_checkpoint(ckpt_dir / "ckpt.yaml", record)
    _report_single(res, ckpt_dir / "ckpt.yaml", options)
    pair_report(cfg, ckpt_dir, x, y, sr, record, _single_columns(options), f"{inp.name} -> {tgt.name}")
    return 0


def _digital_job(cfg, ckpt_dir, options, init, tracker=NULL_TRACKER) -> int:
    data = cfg.data
    truth = {k: float(data.digital[k]) for k in PARAM_NAMES}
    extra = {}
    if data.get("input") and data.get("target"):   # the user's rendering of the digital target
        inp, tgt = Path(str(data.input)), Path(str(data.target))
        x, y, sr, aligned = read_aligned_pair(inp, tgt, align_mode(data))
        print(f"{tgt}: {aligned.describe()}")
        extra = {"target": str(tgt), "alignment": aligned.to_dict()}
        x, y = x.astype(np.float64), y.astype(np.float64)
    else:
        if data.get("input"):
            inp = Path(str(data.input))
            x, sr = read_audio(inp)
        else:   # only the material needed, synthesised (not the whole stand-in corpus)
            x, sr, inp = _digital_material(data)
        x = x[:, : int(float(data.get("seconds", 1e9)) * sr)].astype(np.float64)
        y = render(x, sr, truth)
    frames = _frames(cfg, x, y, sr, inp)
    invalidate_derived(ckpt_dir)
    res = _fit_with_progress(frames, init, options, cfg.quiet, data.name, tracker)
    _track_pair(tracker, x, y, sr, res.params, options_class(options), str(data.name))
    check_fit_collapse(res.params, res.esr, extra.get("target", inp))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    record = _record(res, sr, options, input=str(inp), truth=truth, **extra)
    save_checkpoint(ckpt_dir / "ckpt.yaml", record)
    _report_single(res, ckpt_dir / "ckpt.yaml")
    pair_report(cfg, ckpt_dir, x, y, sr, record, _single_columns(None), f"{Path(str(inp)).name} -> the digital target")
    rows = [{"name": k, "truth": truth[k], "fitted": res.params[k],
             "error": abs(res.params[k] - truth[k]) / (1.0 if k.endswith("_db") else abs(truth[k])),
             "unit": "dB" if k.endswith("_db") else "relative"} for k in PARAM_NAMES]
    print(format_table(rows, [("name", "parameter", ""), ("truth", "truth", ".6g"), ("fitted", "fitted", ".6g"),
                              ("error", "error", ".2e"), ("unit", "", "")]))
    return 0


def _digital_material(data) -> tuple[np.ndarray, int, str]:
    """``data.seconds`` of program material, synthesised as the stand-in corpus's first Train
    input is (:func:`audio.material.synthesize`), at the corpus's rate and seed."""
    corpus = data.get("corpus") or {}
    sr = int(corpus.get("sample_rate", 44100))
    seed = int(corpus.get("seed", 0))
    seconds = float(data.get("seconds", 35.0))
    if not (seconds > 0 and np.isfinite(seconds)):
        raise UserError(f"data.seconds must be positive, got {seconds:g}")
    x = synthesize(seconds, sr, seed=seed)[None, :]
    return x, sr, f"synthesised program material ({seconds:g} s, seed {seed}, {sr} Hz)"


def _frames(cfg, x, y, sr, path):
    return frame_pair(x, y, sr, float(cfg.data.frame_s), float(cfg.data.overlap_s), path)


def _single_columns(options=None) -> list[tuple]:
    """The columns of a one-pair fit's table (printed, and in its report.html)."""
    columns = PARAM_COLUMNS if options is None else param_columns(options)
    return columns + [("esr", "ESR", ".4g"), ("iterations", "iters", "d"), ("seconds", "s", ".1f"),
                      ("converged", "converged", "")]


def _report_single(res: FitResult, path: Path, options=None) -> None:
    row = {**res.params, "esr": res.esr, "iterations": res.iterations, "seconds": res.seconds,
           "converged": str(res.converged)}
    print(format_table([row], _single_columns(options)))
    if not res.converged:
        print(f"warning: the fit did not converge ({res.reason}); best parameters kept", file=sys.stderr)
    print(f"wrote {path}")


# --- the chain -------------------------------------------------------------------------
FIT_METHODS = ("per_level", "joint")


def _fit_method(cfg) -> str:
    method = str(cfg.get("method", "per_level"))
    if method not in FIT_METHODS:
        raise UserError(f"method must be one of {', '.join(FIT_METHODS)}, got {method!r}")
    return method


def _fit_key_settings(cfg) -> dict:
    """The config's settings a reused fit must share besides the fit options (dsp/storage/fitkey.py):
    the compressor section, which pair of a level is fitted, and any alignment setting."""
    def plain(value):
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    data = cfg.data
    chosen = {k: plain(data.get(k)) for k in ("fit_splits", "fit_tag")}
    chosen.update({k: plain(data.get(k)) for k in data if "align" in str(k)})
    if data.get("fit_span") is not None:   # a fit of part of each take (the key of a whole-take fit unchanged)
        chosen["fit_span"] = list(fit_span_setting(data))
    return {"compressor": plain(cfg.compressor), "data": chosen,
            **{k: plain(cfg.get(k)) for k in ("method",) if k in cfg}}


def _note_refit(ckpt: Path, reason: str) -> None:
    tqdm.write(f"note: refitting {ckpt}: {reason}", file=sys.stderr)


def _chain_job(cfg, ckpt_dir, options, init, tracker=NULL_TRACKER) -> int:
    if _fit_method(cfg) == "joint":
        from jobs.joint_fit import run_joint_job   # its own module: the joint knob fit
        return run_joint_job(cfg, ckpt_dir, options, init)
    pairs = load_pairs(cfg.data, quiet=cfg.quiet)
    find = fit_pair_finder(pairs, cfg.data)
    modes = [str(m) for m in cfg.modes]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UserError(f"modes: unknown mode {bad[0]!r} (use compress and/or limit)")
    levels = [int(v) for v in cfg.levels]
    if any(not 0 <= v <= 100 for v in levels):
        raise UserError("levels: peak reduction levels must lie in 0..100")
    held_out = held_out_levels(cfg)
    levels = [v for v in levels if v not in held_out]   # the protocol: never fitted, not on the chain path
    todo = [(m, pr) for m in modes for pr in sorted(levels, reverse=True) if find(m, pr) is not None]
    if not todo:
        where = cfg.data.get('root') or 'stand-in corpus'
        splits = list(cfg.data.fit_splits)
        fit_takes = [p for p in pairs if p.split in splits]
        if not fit_takes:
            held = sorted({p.split for p in pairs})
            raise UserError(f"{where}: no {'/'.join(splits)} takes to fit (data.fit_splits); the corpus holds "
                            f"{'/'.join(held) or 'no'} takes only, and the protocol fits on Train material")
        found = levels_by_mode(fit_takes)
        raise UserError(f"{where}: no {'/'.join(splits)} pairs for modes {modes} at levels {levels} "
                        f"({'/'.join(splits)} holds {found})")
    if str(cfg.init) not in ("chain", "default"):
        raise UserError(f"init must be chain or default, got {cfg.init!r}")
    check_rates([p for m, pr in todo for p in find(m, pr)])   # one rate, before any fit
    spec = ChainSpec(modes, levels, str(cfg.init), init,
                     float(cfg.data.frame_s), float(cfg.data.overlap_s), align_mode(cfg.data),
                     _fit_key_settings(cfg), bool(cfg.chain.monotone_threshold), fit_span_setting(cfg.data))
    refuse_other_init(ckpt_dir, spec)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    invalidate_derived(ckpt_dir)
    bar = tqdm(total=len(todo), desc="chain", unit="level", disable=cfg.quiet)
    it_bar = {"n": 0}

    def on_level(mode, pr, status):
        if status == "missing":
            return
        bar.set_postfix_str(f"{mode} PR {pr}" + (" (done before)" if status == "skip" else ""), refresh=False)
        it_bar["n"] += 1
        it_bar["level"] = f"{mode}_pr{pr}"
        if it_bar["n"] > 1:
            bar.update(1)

    def on_iteration(it, loss, dec):
        tracker.scalars(it, {f"newton/{it_bar.get('level', 'fit')}/loss": loss})
        bar.set_postfix_str(f"{bar.postfix.split(' it')[0] if bar.postfix else ''} it {it}", refresh=False)

    corrected = []

    def on_alignment(mode, pr, info):
        note = alignment_note(info)
        if note:
            corrected.append({"pair": f"{mode} PR {pr}", "latency_samples": info.latency_samples,
                              "polarity": info.polarity, "note": note})

    rows = run_chain(find, ckpt_dir, spec, options, on_level, on_iteration, on_alignment, _note_refit)
    bar.update(1)
    bar.close()
    report_alignment(ckpt_dir, corrected)
    findings = []
    kmap = write_chain_records(cfg, ckpt_dir, rows, pairs, options, "per_level", held_out, findings_out=findings)
    _track_chain(tracker, ckpt_dir, rows, find, held_out)
    step = int(cfg.knobmap.check_step)

    def find_test(mode, pr):
        p = find_level(pairs, mode, pr, ("Test",), cfg.data.get("fit_tag"))
        return None if p is None else (p.input, p.target)

    check = knobmap_check(rows, find_test, spec, options, step, "Test") if step > 0 else []
    check_columns = [("mode", "mode", ""), ("peak_reduction", "PR", "d"),
                     ("esr_own_fit", "fit ESR Test, own fit", ".4f"),
                     ("esr_interpolated", "fit ESR Test, interpolated", ".4f")]
    if check:
        write_csv(ckpt_dir / "knobmap_check.csv", check)
        print(f"\nknob map check on Test material (the fit's ESR estimator): parameters interpolated from every "
              f"{step}th PR vs the level's own fit")
        print(format_table(check, check_columns))
    chain_report(cfg, ckpt_dir, rows, find, options, "per_level", held_out, chain_table_columns(options),
                 findings)
    print_next_steps(ckpt_dir, kmap)
    return 0


def _track_chain(tracker, ckpt_dir: Path, rows: list[dict], find, held_out, count: int = 3) -> None:
    """The fit ESR per level, the knob-map and ESR-vs-PR figures, and target against model
    at ``count`` levels per mode (logger=tensorboard)."""
    if tracker is NULL_TRACKER:
        return
    fit = open_fit(ckpt_dir)
    for r in rows:
        tracker.scalars(int(r["peak_reduction"]), {f"fit/{r['mode']}/esr": r["esr"],
                                                   f"fit/{r['mode']}/iterations": r["iterations"]})
    log_esr_vs_setting(tracker, [{**r, "model": fit.model_class.name, "kind": "dsp"} for r in rows], held_out,
                       tag="figures/fit_esr_vs_setting")
    log_knob_map(tracker, fit.param_map)
    examples, sr = [], None
    for mode in sorted({r["mode"] for r in rows}):
        levels = [r for r in rows if r["mode"] == mode]
        for r in [levels[i] for i in sorted({0, len(levels) // 2, len(levels) - 1})][:count]:
            pair = find(mode, r["peak_reduction"])
            if pair is None:
                continue
            x, sr = read_audio(pair[0], stop=None)
            y, _ = read_audio(pair[1])
            n = 5 * sr
            setting = la2a_setting(mode, r["peak_reduction"])
            examples.append((f"{mode}_pr{r['peak_reduction']}", y[0, :n], fit.render(x[:, :n], sr, setting)[0]))
    if examples:
        log_audio_pairs(tracker, examples, sr)
    tracker.flush()


# --- a manifest: takes of a device with arbitrary knobs, one fit each -----------------------
def _manifest_job(cfg, ckpt_dir, options, init) -> int:
    if _fit_method(cfg) == "joint":
        from jobs.joint_fit import run_manifest_joint_job   # its own module: the joint knob fit
        return run_manifest_joint_job(cfg, ckpt_dir, options, init)
    rows = [r for r in read_manifest(str(cfg.data.path)) if r.split in set(cfg.data.fit_splits)]
    if not rows:
        raise UserError(f"{cfg.data.path}: no rows in splits {list(cfg.data.fit_splits)}")
    knobs = knob_names(rows)
    check_rates([p for r in rows for p in (r.input, r.target)])   # one rate, before any fit
    align = align_mode(cfg.data)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    invalidate_derived(ckpt_dir)
    out, notes = [], []
    for row in tqdm(rows, desc="manifest", unit="row", disable=cfg.quiet):
        ckpt = take_dir(ckpt_dir, row) / "ckpt.yaml"
        key = fit_key(row.input, row.target, fit_settings(options, start=init, frame_s=float(cfg.data.frame_s),
                                                          overlap_s=float(cfg.data.overlap_s), **_fit_key_settings(cfg)))
        record = take_fit(ckpt_dir, row, key, _note_refit)   # None: no fit yet, unreadable, or stale
        if record is None:
            x, y, sr, aligned = read_aligned_pair(row.input, row.target, align)
            if alignment_note(aligned):
                notes.append({"pair": str(row.target), "latency_samples": aligned.latency_samples,
                              "polarity": aligned.polarity, "note": alignment_note(aligned)})
            frames = _frames(cfg, x, y, sr, row.target)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = fit_frames(frames, init, options, None, level_match=True)
            check_fit_collapse(res.params, res.esr, row.target)
            record = _record(res, sr, options, input=str(row.input.resolve()), target=str(row.target.resolve()),
                             knobs=row.knobs, alignment=aligned.to_dict(), fit_key=key)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ckpt, record)
        out.append({**{f"knob_{k}": v for k, v in row.knobs.items()}, "split": row.split, **record["params"], "esr": record["esr"],
                    "iterations": record["iterations"], "seconds": record["seconds"]})
    write_csv(ckpt_dir / TAKES_SUMMARY, out)
    report_alignment(ckpt_dir, notes)
    columns = ([(f"knob_{k}", k, ".4g") for k in knobs] + PARAM_COLUMNS +
               [("esr", "fit ESR Train", ".4g"), ("iterations", "iters", "d")])
    print(format_table(out, columns))
    print(f"{ESR_LEGEND}.")
    manifest_report(cfg, ckpt_dir, out, rows, knobs, columns, "per_take")
    first = out[0]
    knob_args = " ".join(f"--knob {k}={first[f'knob_{k}']:g}" for k in knobs)
    print(f"outputs in {ckpt_dir}: {TAKES_SUMMARY} (every take's parameters and ESR), rows/<take>/ckpt.yaml")
    print(f"next: python test_comp.py {ckpt_dir} in.wav out.wav {knob_args}   # compress a file at a knob setting")
    return 0
