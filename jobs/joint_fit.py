"""``train_comp.py method=joint``: per mode, every parameter a smooth curve over PR, fitted at once.

Per mode the Train takes at every fitted level (``levels`` without ``unseen_levels``)
go to :func:`dsp.joint.select_smoothness`: each ``joint.candidates`` (basis size,
roughness) is fitted, the one with the lowest pooled ESR on the Val takes at fitted
levels is kept (no Val take: the first candidate). The job writes the chain's
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
from pathlib import Path

import yaml

from audio.datasets import load_pairs
from audio.devices import MODES
from audio.pairs import align_mode, read_aligned_pair
from audio.signaltrain import find_level
from common.atomic import write_text_atomic
from common.errors import UserError
from dsp.chain import frame_pair, level_dir
from dsp.checkpoint import save_checkpoint
from dsp.kinds import options_kind
from dsp.joint import DEFAULT_CANDIDATES, JointKnobModel, JointOptions, JointSetting, fit_joint, select_smoothness
from jobs.protocol import held_out_levels, scorable_frames
from jobs.records import write_chain_records

__all__ = ["run_joint_job", "JOINT_RECORD"]

JOINT_RECORD = "joint.yaml"
KNOB = ("peak_reduction",)


def _candidates(cfg) -> list[tuple[int, float]]:
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
    if cfg.data.get("kind") == "manifest":
        raise UserError("method=joint: a manifest device is fitted one take at a time (method=per_level)")
    pairs = load_pairs(cfg.data, quiet=cfg.quiet)
    modes = [str(m) for m in cfg.modes]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UserError(f"modes: unknown mode {bad[0]!r} (use compress and/or limit)")
    held_out = held_out_levels(cfg)
    levels = sorted({int(v) for v in cfg.levels}, reverse=True)
    fit_levels = [v for v in levels if v not in held_out]
    tag, candidates = cfg.data.get("fit_tag"), _candidates(cfg)
    joint_options = JointOptions(fit=options, start=dict(init))
    fits, selections, total, shared = {}, {}, {}, {}
    for mode in modes:
        train = _settings(pairs, mode, fit_levels, cfg.data.fit_splits, tag, cfg)
        if not train:
            continue
        val = _settings(pairs, mode, fit_levels, ("Val",), tag, cfg, validation=True)
        if not cfg.quiet:
            print(f"{mode}: joint fit on {len(train)} settings, smoothness chosen on {len(val)} Val takes")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if val:
                sel = select_smoothness(train, val, KNOB, candidates, joint_options)
                fits[mode], selections[mode] = sel.best, sel.table
            else:   # nothing to choose on: the first (simplest) candidate
                size, lam = candidates[0]
                fits[mode] = fit_joint(train, KNOB, JointOptions(size, lam, options, dict(init)))
                selections[mode] = []
        if options_kind(options) == "graybox":   # on the Train frames already in hand
            shared[mode] = _fit_shared_blocks(mode, JointKnobModel({mode: fits[mode]}), train, options, cfg.quiet)
        total[mode] = time.perf_counter() - t0
    if not fits:
        raise UserError(f"{cfg.data.get('root') or 'stand-in corpus'}: no {'/'.join(cfg.data.fit_splits)} pairs "
                        f"for modes {modes} at levels {fit_levels}")
    model = JointKnobModel(fits)
    rows = _rows(model, pairs, levels, held_out, total)
    for r in rows:
        if r["mode"] in shared:
            blocks, offset, esr = shared[r["mode"]]
            r.update(blocks)
            r["make_up_db"] = float(r["make_up_db"]) + offset
            if r["esr"] is not None:
                r["esr"] = esr[int(r["peak_reduction"])]
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _write_level_checkpoints(ckpt_dir, rows, model, options)
    kmap = write_chain_records(cfg, ckpt_dir, rows, pairs, options, "joint", held_out,
                                extra_columns=["held_out"], table_columns=[("held_out", "held out", "")])
    record = {**model.to_record(), "protocol": kmap.protocol,
              "selection": {m: t for m, t in selections.items()}, "seconds": {m: float(s) for m, s in total.items()}}
    write_text_atomic(ckpt_dir / JOINT_RECORD, yaml.safe_dump(_plain(record), sort_keys=False))
    picture = _plot(cfg, ckpt_dir, model, held_out)
    for mode, fit in fits.items():
        print(f"{mode}: joint fit, basis size {fit.curves.basis.size}, smoothness {fit.smoothness:g}, "
              f"{fit.iterations} Newton iterations, {total[mode]:.1f} s with the selection; "
              f"mean ESR on the fitting audio {fit.mean_esr:.4f}")
    print(f"wrote {ckpt_dir / 'summary.csv'}, {ckpt_dir / 'knobmap.yaml'}, {ckpt_dir / JOINT_RECORD}"
          + (f" and {picture}" if picture else ""))
    return 0


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


def _fit_shared_blocks(mode: str, curves: JointKnobModel, train: list[JointSetting], options,
                       quiet: bool) -> tuple[dict, float, dict]:
    """``compressor=graybox``: one set of block parameters for ``mode``, shared by every setting.

    The transformers and the tube stage do not move with the knob, so the blocks are not
    curves: they are fitted once (:func:`dsp.graybox.fit_blocks`, exact Newton, the
    compressor's gain held) on the Train take of the highest fitted level, where the chain
    fits them too, with the joint curves' compressor there. The make-up found with them
    becomes one offset added to the make-up curve at every setting (the curves stay smooth).

    Returns:
        ``(blocks, make-up offset dB, {pr: gray-box ESR on that setting's fitting audio})``.
    """
    from dsp.graybox import BLOCK_NAMES, fit_blocks
    from dsp.kinds import evaluate_any
    by_level = {int(s.knobs[0]): s for s in train}
    top = max(by_level)
    compressor = curves.at(mode, top)
    start = {**compressor, **dict(getattr(options, "start", {}))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_blocks(by_level[top].frames, compressor, start, options)
    offset = res.params["make_up_db"] - compressor["make_up_db"]
    blocks = {k: float(res.params[k]) for k in BLOCK_NAMES}
    if not quiet:
        print(f"{mode}: gray-box blocks fitted at PR {top} ({res.iterations} Newton iterations, "
              f"make-up offset {offset:+.2f} dB): " + ", ".join(f"{k} {v:.4g}" for k, v in blocks.items()))
    esr = {}
    for pr, setting in by_level.items():
        params = {**curves.at(mode, pr), **blocks}
        params["make_up_db"] += offset
        esr[pr] = evaluate_any(setting.frames, params, options)
    return blocks, offset, esr


def _write_level_checkpoints(ckpt_dir: Path, rows, model: JointKnobModel, options) -> None:
    """``ckpt.yaml`` at every fitted level (not the held-out ones): the curve's parameters."""
    from dsp.kinds import param_names
    names = param_names(options_kind(options))
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
            "reason": str(fit.reason), "hessian": options.hessian})


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


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
