"""``train_comp.py method=joint``: every parameter a smooth curve over the knobs, fitted at once.

The LA-2A (:func:`run_joint_job`): per mode, curves over PR. A device with its own
knobs (``data=manifest``, :func:`run_manifest_joint_job`): one additive spline per knob.

Per mode the Train takes at every fitted level (``levels`` without ``unseen_levels``)
go to :func:`dsp.fitting.joint.select_smoothness`: each ``joint.candidates`` (basis size,
roughness) is fitted, the one with the lowest pooled ESR on the Val takes at fitted
levels is kept (no Val take: the first candidate). ``compressor=graybox``: one set of blocks
per mode fitted with the chosen curves; ``compressor=opto``: each mode's blocks fitted first on
its top Train take (:mod:`dsp.fitting.joint_opto`), the cell's curves through them. The job writes the chain's
interfaces, so ``test_comp.py``, the hybrids and ``compare.py`` read it unchanged:

- ``summary.csv``: one row per corpus level in the fitted range (held-out ones too,
  ``held_out`` true, ``esr`` empty), parameters read off the curves, ``esr`` on the
  fitting audio, ``esr_val`` / ``esr_test``, the joint fit's ``iterations`` and
  ``seconds`` (the whole selection's time shared by the fitted rows);
- ``knobmap.yaml``: the curves sampled at those levels, with the protocol record
  (only the Train levels are listed as fitted);
- ``<mode>/pr_<level>/ckpt.yaml`` at the fitted levels;
- ``joint.yaml``: the curve coefficients, the selection table, the protocol record;
- ``joint_curves.png``: the curves, against a per-level fit of the same data
  (``joint.per_level_dir``) when one is there.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path

import yaml

from audio.datasets import load_pairs
from audio.devices import MODES
from audio.manifest import DEVICE_NAME, knob_names, read_manifest
from audio.pairs import align_mode, read_aligned_pair
from audio.rates import check_rates
from audio.signaltrain import find_level
from common.atomic import write_text_atomic
from common.errors import UserError
from common.records import write_csv
from common.table import format_table
from audio.framing import frame_pair
from jobs.chain import level_dir
from dsp.models.classes import model_class
from dsp.storage.records import plain, save_checkpoint
from dsp.fitting.by_class import options_class
from dsp.fitting.joint import (DEFAULT_CANDIDATES, JOINT_STALL, MONOTONE_DIRECTIONS, JointOptions, JointSetting, GrayboxValScore,
                               SharedBlocks, fit_joint, fit_shared_blocks, select_smoothness)
from dsp.fitting.joint_opto import fit_group_blocks, group_options
from dsp.knobs.joint_curves import JointKnobModel
from dsp.models.graybox import BLOCK_NAMES
from dsp.knobs.knobcurves import KnobCurves
from dsp.models.parameters import PARAM_NAMES
from jobs.protocol import held_out_levels, scorable_frames, takes_data_key
from audio.datasets import fit_pair_finder
from jobs.fit_report import chain_report, manifest_report
from jobs.records import PARAM_COLUMNS, chain_table_columns, invalidate_derived, print_next_steps, write_chain_records

__all__ = ["run_joint_job", "run_manifest_joint_job", "JOINT_RECORD", "MANIFEST_CURVES", "MANIFEST_SUMMARY",
           "candidates_from_config", "joint_options_from_config"]

JOINT_RECORD = "joint.yaml"
MANIFEST_CURVES = "knobcurves.yaml"
MANIFEST_SUMMARY = "joint_summary.csv"
KNOB = ("peak_reduction",)


def candidates_from_config(cfg) -> list[tuple[int, float]]:
    raw = (cfg.get("joint") or {}).get("candidates")
    if raw is None:
        return list(DEFAULT_CANDIDATES)
    try:
        out = [(int(c[0]), float(c[1])) for c in raw]
    except (TypeError, ValueError, IndexError):
        raise UserError(f"joint.candidates: expected [[size, smoothness], ...], got {list(raw)}") from None
    if not out or any(size < 1 or lam < 0 for size, lam in out):
        raise UserError(f"joint.candidates: need at least one [size >= 1, smoothness >= 0], got {out}")
    return out


def joint_options_from_config(cfg, options, init) -> tuple[JointOptions, list[float]]:
    """``joint.decreasing`` / ``joint.increasing`` (monotone curves), the first of
    ``joint.priors`` and ``joint.stall`` (:class:`dsp.fitting.joint.JointOptions`) with the fit
    options, and every ridge weight of ``joint.priors`` (the rest are tried on Val with the
    chosen basis)."""
    joint = cfg.get("joint") or {}
    try:
        monotone = {}
        for direction in MONOTONE_DIRECTIONS:
            for name in joint.get(direction) or []:
                if str(name) in monotone:
                    raise ValueError(f"{name!r} is both increasing and decreasing")
                monotone[str(name)] = direction
        priors = [float(p) for p in (joint.get("priors") or [0.0])]
        for p in priors[1:]:
            JointOptions(prior=p)        # every weight is checked where the first one is
        stall = JOINT_STALL if joint.get("stall") is None else float(joint.get("stall"))
        return JointOptions(fit=options, start=dict(init), monotone=monotone, prior=priors[0], stall=stall), priors
    except (TypeError, ValueError) as exc:
        raise UserError(f"joint: {exc}") from None


def _settings(pairs, mode: str, levels, splits, tag, cfg, validation: bool = False) -> list[JointSetting]:
    """One setting per level with a take in ``splits``; validation skips takes too short to score."""
    out = []
    for pr in levels:
        p = find_level(pairs, mode, pr, tuple(splits), tag)
        if p is None:
            continue
        if validation:
            frames = scorable_frames(p, float(cfg.data.frame_s), float(cfg.data.overlap_s), align_mode(cfg.data))
            if frames is None:
                continue
        else:
            x, y, sr, _ = read_aligned_pair(p.input, p.target, align_mode(cfg.data))
            frames = frame_pair(x, y, sr, float(cfg.data.frame_s), float(cfg.data.overlap_s), p.target)
        out.append(JointSetting((float(pr),), frames, f"{p.split}:{mode}/pr_{pr}"))
    return out


def run_joint_job(cfg, ckpt_dir: Path, options, init) -> int:
    candidates = candidates_from_config(cfg)
    joint_options, priors = joint_options_from_config(cfg, options, init)
    pairs = load_pairs(cfg.data, quiet=cfg.quiet)
    modes = [str(m) for m in cfg.modes]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UserError(f"modes: unknown mode {bad[0]!r} (use compress and/or limit)")
    held_out = held_out_levels(cfg)
    levels = sorted({int(v) for v in cfg.levels}, reverse=True)
    fit_levels = [v for v in levels if v not in held_out]
    tag = cfg.data.get("fit_tag")
    fits, selections, total, shared = {}, {}, {}, {}
    groups = {}
    for mode in modes:
        train = _settings(pairs, mode, fit_levels, cfg.data.fit_splits, tag, cfg)
        if train:
            groups[mode] = (train, _settings(pairs, mode, fit_levels, ("Val",), tag, cfg, validation=True))
    compressor = options_class(options)
    cells = _opto_blocks(groups, options, init, cfg.quiet) if compressor == "opto" and groups else {}
    for mode, (train, val) in groups.items():
        if not cfg.quiet:
            print(f"{mode}: joint fit on {len(train)} settings, smoothness chosen on {len(val)} Val takes")
        t0 = time.perf_counter()
        mode_options = joint_options
        if mode in cells:   # the cell's curves through the mode's blocks, from the top setting's cell
            top, seconds = cells[mode]
            mode_options = group_options(joint_options, options, mode, top)
            t0 -= seconds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            graybox = compressor == "graybox"
            score = GrayboxValScore(train, val, options) if graybox and val else None
            if val:
                sel = select_smoothness(train, val, KNOB, candidates, mode_options, priors=priors, val_score=score,
                                        progress=None if cfg.quiet else _print_candidate(mode))
                fits[mode], selections[mode] = sel.best, sel.table
            else:   # nothing to choose on: the first (simplest) candidate
                size, lam = candidates[0]
                fits[mode] = fit_joint(train, KNOB, replace(mode_options, size=size, smoothness=lam))
                selections[mode] = []
        if graybox:   # the blocks the chosen candidate was scored with (on the Train frames already in hand)
            blocks = score.blocks_for(fits[mode]) if score else fit_shared_blocks(fits[mode], train, options)
            shared[mode] = _report_shared_blocks(mode, fits[mode], blocks, train, options, cfg.quiet)
        total[mode] = time.perf_counter() - t0
    if not fits:
        raise UserError(f"{cfg.data.get('root') or 'stand-in corpus'}: no {'/'.join(cfg.data.fit_splits)} pairs "
                        f"for modes {modes} at levels {fit_levels}")
    model = JointKnobModel(fits)
    rows = _rows(model, pairs, levels, held_out, total)
    for r in rows:
        if r["mode"] in shared:
            blocks, esr = shared[r["mode"]]
            r.update(blocks.apply({k: r[k] for k in PARAM_NAMES}))
            if r["esr"] is not None:
                r["esr"] = esr[int(r["peak_reduction"])]
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    invalidate_derived(ckpt_dir)   # before the first file of the new fit is written
    _write_level_checkpoints(ckpt_dir, rows, model, options)
    findings = []
    kmap = write_chain_records(cfg, ckpt_dir, rows, pairs, options, "joint", held_out,
                                extra_columns=["held_out"], table_columns=[("held_out", "held out", "")],
                                findings_out=findings)
    record = {**model.to_record(), "protocol": kmap.protocol,
              "selection": {m: t for m, t in selections.items()}, "seconds": {m: float(s) for m, s in total.items()}}
    write_text_atomic(ckpt_dir / JOINT_RECORD, yaml.safe_dump(plain(record), sort_keys=False))
    picture = _plot(cfg, ckpt_dir, model, held_out)
    for mode, fit in fits.items():
        print(f"{mode}: joint fit, basis size {fit.curves.basis.size}, smoothness {fit.smoothness:g}, "
              f"{fit.iterations} Newton iterations, {total[mode]:.1f} s with the selection; "
              f"mean ESR on the fitting audio {fit.mean_esr:.4f}")
    print(f"also: {ckpt_dir / JOINT_RECORD} (the curves and the choice on Val)" + (f", {picture}" if picture else ""))
    chain_report(cfg, ckpt_dir, rows, fit_pair_finder(pairs, cfg.data), options, "joint", held_out,
                 chain_table_columns(options, [("held_out", "held out", "")]), findings,
                 [picture.name] if picture else [])
    print_next_steps(ckpt_dir, kmap)
    return 0


def _print_candidate(mode: str):
    """Progress of the selection: one line per candidate as it is scored (a candidate can take minutes)."""
    def say(row: dict) -> None:
        again = f" (same basis as candidate {row['same_as'] + 1})" if "same_as" in row else ""
        print(f"{mode}: candidate size {row['size']}, smoothness {row['smoothness']:g}, prior {row['prior']:g}: "
              f"Val ESR {row['val_esr']:.4f}, {row['iterations']} Newton iterations, {row['seconds']:.0f} s{again}",
              flush=True)
    return say


def _opto_blocks(groups: dict, options, init, quiet: bool) -> dict:
    """``compressor=opto``: each mode's blocks (and cell) from a per-level fit of its top Train
    setting (one set for both modes with ``compressor.one_unit``), said on the console.
    Returns mode -> (that fit, its seconds: a share when one fit served every mode)."""
    tops = {mode: max(train, key=lambda s: tuple(s.knobs)) for mode, (train, _) in groups.items()}
    if not quiet:
        print("opto: the unit's blocks fitted at " + ", ".join(f"{m} PR {t.knobs[0]:g}" for m, t in tops.items())
              + (" (one unit, both modes)" if options.one_unit and len(tops) > 1 else ""))
    t0 = time.perf_counter()
    fitted = fit_group_blocks({m: (t.frames, t.knobs) for m, t in tops.items()}, init, options)
    share = (time.perf_counter() - t0) / len(fitted)
    if not quiet:
        for mode, res in fitted.items():
            print(f"{mode}: blocks " + ", ".join(f"{k} {res.params[k]:.4g}" for k in BLOCK_NAMES)
                  + f" (the top setting's fit: ESR {res.esr:.4f} on its audio, {res.iterations} Newton iterations)")
    return {mode: (res, share) for mode, res in fitted.items()}


def _rows(model: JointKnobModel, pairs, levels, held_out, total) -> list[dict]:
    """Summary rows at every corpus level of ``levels`` inside each mode's fitted range."""
    out, wanted = [], {}
    for mode in model.modes:
        fitted = model.levels(mode)
        corpus = {p.peak_reduction for p in pairs if p.mode == mode}
        wanted[mode] = sorted((pr for pr in levels if pr in corpus and min(fitted) <= pr <= max(fitted)), reverse=True)
    for r in model.rows(wanted):
        mode, pr = r["mode"], int(r["peak_reduction"])
        fitted = model.levels(mode)
        share = total[mode] / max(len(fitted), 1)
        r["held_out"] = pr in held_out
        r["seconds"] = share if pr in fitted else 0.0
        if r["esr"] != r["esr"]:    # NaN: not fitted, no fitting audio
            r["esr"] = None
        out.append(r)
    return out


def _report_shared_blocks(mode: str, fit, blocks: SharedBlocks, train: list[JointSetting], options,
                          quiet: bool) -> tuple[SharedBlocks, dict[int, float]]:
    """``compressor=graybox``: the mode's shared blocks, said on the console, with the
    gray-box's ESR on each fitted level's Train audio."""
    if not quiet:
        print(f"{mode}: gray-box blocks fitted at PR {blocks.fitted_at[0]:g} ({blocks.iterations} Newton iterations, "
              f"make-up offset {blocks.make_up_offset:+.2f} dB): "
              + ", ".join(f"{k} {v:.4g}" for k, v in blocks.blocks.items()))
    return blocks, {int(s.knobs[0]): blocks.esr(fit, s, options) for s in train}


def _write_level_checkpoints(ckpt_dir: Path, rows, model: JointKnobModel, options) -> None:
    """``ckpt.yaml`` at every fitted level (not the held-out ones): the curve's parameters."""
    compressor = options_class(options)
    names = model_class(compressor).param_names
    for r in rows:
        if r["esr"] is None:
            continue
        fit = model.fits[r["mode"]]
        folder = level_dir(ckpt_dir, r["mode"], r["peak_reduction"])
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(folder / "ckpt.yaml", {
            "params": {k: float(r[k]) for k in names}, "esr": float(r["esr"]), "loss": float(fit.loss),
            "iterations": int(fit.iterations), "converged": bool(fit.converged), "seconds": float(r["seconds"]),
            "sample_rate": int(fit.curves.sample_rate), "mode": r["mode"],
            "peak_reduction": int(r["peak_reduction"]), "init": "joint", "method": "joint",
            "reason": str(fit.reason), "hessian": options.hessian, "compressor": compressor})



def _plot(cfg, ckpt_dir: Path, model: JointKnobModel, held_out) -> Path | None:
    """The curves against the per-level fits of ``joint.per_level_dir`` (its summary.csv) when there."""
    from report.plots import plot_joint_curves
    import csv
    other = (cfg.get("joint") or {}).get("per_level_dir")
    per_level = []
    if other and Path(str(other)).resolve() != ckpt_dir.resolve() and (Path(str(other)) / "summary.csv").is_file():
        with open(Path(str(other)) / "summary.csv", newline="") as fh:
            per_level = [r for r in csv.DictReader(fh) if r.get("held_out", "False") in ("False", "")]
    path = ckpt_dir / "joint_curves.png"
    plot_joint_curves(model, per_level, path, held_out, str(other) if per_level else None)
    return path


# --- a manifest: a device with its own knobs, the parameters smooth in every knob ------------
def run_manifest_joint_job(cfg, ckpt_dir: Path, options, init) -> int:
    """``train_comp.py data=manifest method=joint``: one joint fit over every Train take.

    Each solver coordinate is an additive spline in the device's knobs
    (:class:`dsp.knobs.basis.KnobBasis`), fitted at once to every take of ``data.fit_splits``;
    the basis size and roughness are chosen on the Val takes (none: the first candidate).
    The LA-2A's monotone shapes (``joint.decreasing`` / ``joint.increasing`` name PR) do
    not apply; ``joint.priors`` do. Writes ``knobcurves.yaml``
    (:class:`dsp.knobs.knobcurves.KnobCurves`, which the hybrids and ``compare.py`` take as
    their ``dsp_dir`` as they take a knob table), ``joint_summary.csv`` (every fitted take: its
    knobs, the curves' parameters there, the ESR on its audio) and ``joint.yaml``.
    """
    candidates = candidates_from_config(cfg)
    shape, priors = joint_options_from_config(cfg, options, init)
    shape = replace(shape, monotone={})
    manifest = read_manifest(str(cfg.data.path))
    rows = [r for r in manifest if r.split in set(cfg.data.fit_splits)]
    if not rows:
        raise UserError(f"{cfg.data.path}: no rows in splits {list(cfg.data.fit_splits)}")
    knobs = knob_names(rows)
    check_rates([p for r in rows for p in (r.input, r.target)])   # one rate, before any fit
    align, frame_s, overlap_s = align_mode(cfg.data), float(cfg.data.frame_s), float(cfg.data.overlap_s)
    train = []
    for r in rows:
        x, y, sr, _ = read_aligned_pair(r.input, r.target, align)
        train.append(JointSetting(tuple(float(r.knobs[k]) for k in knobs), frame_pair(x, y, sr, frame_s, overlap_s, r.target),
                                  f"{r.split}:{r.label()}"))
    val = []
    for r in manifest:
        if r.split == "Val" and r.split not in set(cfg.data.fit_splits):
            frames = scorable_frames(r, frame_s, overlap_s, align)
            if frames is not None:
                val.append(JointSetting(tuple(float(r.knobs[k]) for k in knobs), frames, f"Val:{r.label()}"))
    if not cfg.quiet:
        print(f"joint fit over {len(knobs)} knob(s) ({', '.join(knobs)}) on {len(train)} takes, "
              f"smoothness chosen on {len(val)} Val takes")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if val:
            sel = select_smoothness(train, val, knobs, candidates, shape, priors=priors)
            fit, table = sel.best, sel.table
        else:
            size, lam = candidates[0]
            fit, table = fit_joint(train, knobs, replace(shape, size=size, smoothness=lam)), []
    seconds = time.perf_counter() - t0
    protocol = {"fit_splits": list(cfg.data.fit_splits), "data_key": takes_data_key(rows)}
    curves = KnobCurves(fit, DEVICE_NAME, protocol=protocol)
    out = [{**{f"knob_{k}": r.knobs[k] for k in knobs}, "split": r.split, **curves.at(r.knobs), "esr": s.esr}
           for r, s in zip(rows, fit.settings)]
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    invalidate_derived(ckpt_dir)   # before the first file of the new fit is written
    write_csv(ckpt_dir / MANIFEST_SUMMARY, out)
    record = {**fit.to_record(), "protocol": protocol, "selection": table, "seconds": float(seconds)}
    write_text_atomic(ckpt_dir / JOINT_RECORD, yaml.safe_dump(plain(record), sort_keys=False))
    curves.save(ckpt_dir / MANIFEST_CURVES)          # last: its presence says the fit is complete
    columns = [(f"knob_{k}", k, ".4g") for k in knobs] + PARAM_COLUMNS + [("esr", "fit ESR Train", ".4g")]
    print(format_table(out, columns))
    sizes = ", ".join(f"{k} {b.size}" for k, b in zip(knobs, fit.curves.basis.splines))
    print(f"joint fit, basis functions per knob: {sizes}; smoothness {fit.smoothness:g}, "
          f"{fit.iterations} Newton iterations, {seconds:.1f} s; mean ESR on the fitting audio {fit.mean_esr:.4f}")
    print(f"wrote {ckpt_dir / MANIFEST_CURVES}, {ckpt_dir / MANIFEST_SUMMARY} and {ckpt_dir / JOINT_RECORD}")
    manifest_report(cfg, ckpt_dir, out, rows, knobs, columns, "joint")
    return 0
