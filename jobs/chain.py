"""The peak-reduction chain: one fit per (mode, PR), each starting from the last.

For each mode the levels are fitted from the highest PR down (100, 95, ..., 40);
with ``init="chain"`` a level starts from the previous level's parameters, with
``init="default"`` every level starts cold from the default point. Each level's
checkpoint is written as soon as it is fitted, so a killed run loses at most the
level in progress; a rerun skips levels with a valid checkpoint of the same key
(:mod:`dsp.storage.fitkey`: the same input and target files, the same settings and start
point) and refits, with a note, a level fitted on other data or settings.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable


from audio.framing import frame_pair
from audio.devices import la2a_setting
from audio.pairs import read_aligned_pair
from common.errors import UserError
from common.records import write_csv
from dsp.storage.records import load_checkpoint, save_checkpoint
from dsp.fitting.collapse import check_fit_collapse
from dsp.fitting.ff5 import FitOptions
from dsp.storage.fitkey import fit_key, fit_settings, key_change
from dsp.fitting.by_class import evaluate_any, fit_any, options_class
from dsp.models.classes import model_class
from dsp.knobs.knobmap import KnobMap
from dsp.models.parameters import PARAM_NAMES

__all__ = ["SUMMARY_COLUMNS", "ChainSpec", "run_chain", "fit_span", "fit_span_setting", "refuse_other_init", "level_key", "level_dir", "write_summary", "knobmap_check"]

SUMMARY_COLUMNS = ["mode", "peak_reduction", *PARAM_NAMES, "esr", "iterations", "seconds"]


@dataclass
class ChainSpec:
    modes: list[str]
    levels: list[int]
    init: str = "chain"                  # chain | default
    default_init: dict | None = None     # physical start of a cold fit (None: the published one)
    frame_s: float = 12.0
    overlap_s: float = 1.0
    align: str = "auto"                  # auto: correct each pair's latency and polarity | off
    key_settings: dict = field(default_factory=dict)   # further settings a fit is keyed by (data choices)
    # the shape prior: a chained level's threshold no lower than the previous (higher-PR)
    # level's, as PR is the sidechain gain (dsp.fitting.ff5.FitOptions.threshold_floor)
    monotone_threshold: bool = True
    # the part of each fitting take a fit reads, as fractions of its length (None: all of it): a
    # fold of the out-of-fold DSP features a hybrid can train on (train_neural.py crossfit=true)
    span: tuple[float, float] | None = None


def fit_span(x, y, span: tuple[float, float] | None):
    """``x`` and ``y`` (channels, samples) cut to ``span`` (fractions of their length; None: as they are)."""
    if span is None:
        return x, y
    n = x.shape[1]
    start, stop = int(round(span[0] * n)), int(round(span[1] * n))
    return x[:, start:stop], y[:, start:stop]


def fit_span_setting(data) -> tuple[float, float] | None:
    """``data.fit_span`` checked: None, or ``(start, stop)`` fractions with 0 <= start < stop <= 1."""
    span = data.get("fit_span")
    if span is None:
        return None
    try:
        start, stop = (float(v) for v in span)
    except (TypeError, ValueError):
        raise UserError(f"data.fit_span: give [start, stop] as fractions of each take, got {span!r}") from None
    if not 0.0 <= start < stop <= 1.0:
        raise UserError(f"data.fit_span: need 0 <= start < stop <= 1, got [{start:g}, {stop:g}]")
    return start, stop


def level_dir(ckpt_dir: Path, mode: str, pr: int) -> Path:
    return Path(ckpt_dir) / mode / f"pr_{int(pr)}"


def _fit_record(res, mode, pr, init, inp, tgt, sample_rate, hessian) -> dict:
    return {"params": res.params, "esr": res.esr, "loss": res.loss, "iterations": res.iterations,
            "converged": res.converged, "seconds": res.seconds, "sample_rate": sample_rate,
            "mode": mode, "peak_reduction": int(pr), "init": init, "reason": res.reason,
            "hessian": hessian, "initial_params": res.initial_params,
            "input": str(inp), "target": str(tgt)}


def level_key(inp, tgt, spec: ChainSpec, options: FitOptions, start: dict | None) -> dict:
    """The :mod:`dsp.storage.fitkey` key of one level's fit, starting from ``start`` (None: the
    published default point)."""
    settings = fit_settings(options, init=spec.init, start=start, frame_s=spec.frame_s, overlap_s=spec.overlap_s,
                            monotone_threshold=spec.monotone_threshold, **spec.key_settings)
    return fit_key(inp, tgt, settings)


def _row(record: dict) -> dict:
    return {"mode": record["mode"], "peak_reduction": int(record["peak_reduction"]),
            **record["params"], "esr": record["esr"], "iterations": record["iterations"],
            "seconds": record["seconds"], "converged": record.get("converged", True),
            "skipped": record.get("skipped", False)}


def run_chain(find_pair: Callable[[str, int], tuple[Path, Path] | None], ckpt_dir: Path, spec: ChainSpec,
              options: FitOptions, on_level: Callable[[str, int, str], None] | None = None,
              on_iteration: Callable[[int, float, float], None] | None = None,
              on_alignment: Callable[[str, int, object], None] | None = None,
              on_stale: Callable[[Path, str], None] | None = None) -> list[dict]:
    """Fit every (mode, level) that ``find_pair`` has files for.

    Args:
        find_pair: ``(mode, pr) -> (input, target)`` or None when the corpus lacks that setting.
        ckpt_dir: output folder (``<mode>/pr_<level>/ckpt.yaml`` per level).
        on_level: called as ``(mode, pr, status)`` with status "fit", "skip" or "missing".
        on_iteration: Newton progress callback.
        on_alignment: called as ``(mode, pr, AlignInfo)`` for every pair read for a fit.
        on_stale: called as ``(ckpt, reason)`` before a level fitted on other data or
            settings is refitted (default: a RuntimeWarning).

    Returns:
        Summary rows (dicts with :data:`SUMMARY_COLUMNS` plus ``converged``, ``skipped``).
    """
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise UserError(f"{ckpt_dir}: checkpoint folder is a file")
    rows: list[dict] = []
    unit = _unit_fits(find_pair, ckpt_dir, spec, options) if getattr(options, "one_unit", False) else {}
    for mode in spec.modes:
        previous = None
        mode_options = options.for_mode(mode) if hasattr(options, "for_mode") else options
        for pr in sorted(spec.levels, reverse=True):
            files = find_pair(mode, pr)
            if files is None:
                if on_level:
                    on_level(mode, pr, "missing")
                continue
            inp, tgt = files
            ckpt = level_dir(ckpt_dir, mode, pr) / "ckpt.yaml"
            chained = spec.init == "chain" and previous is not None
            start = previous if chained else spec.default_init
            key = level_key(inp, tgt, spec, mode_options, start)
            record = _existing(ckpt, spec.init, key, on_stale)
            if record is not None:
                if on_level:
                    on_level(mode, pr, "skip")
                record["skipped"] = True
            else:
                if on_level:
                    on_level(mode, pr, "fit")
                x, y, sr, aligned = read_aligned_pair(inp, tgt, spec.align)
                if on_alignment:
                    on_alignment(mode, pr, aligned)
                x, y = fit_span(x, y, spec.span)
                frames = frame_pair(x, y, sr, spec.frame_s, spec.overlap_s, tgt)
                level_options = mode_options
                if chained and spec.monotone_threshold:
                    level_options = replace(mode_options, threshold_floor=float(previous["threshold_db"]))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = unit.get((mode, pr)) or fit_any(frames, start, level_options, on_iteration,
                                                          level_match=not chained)
                check_fit_collapse(res.params, res.esr, tgt)   # never written as a fit
                record = _fit_record(res, mode, pr, spec.init, inp, tgt, sr, options.hessian)
                record["compressor"] = options_class(options)
                record["alignment"] = aligned.to_dict()
                record["fit_key"] = key
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                save_checkpoint(ckpt, record)
            previous = record["params"]
            rows.append(_row(record))
    return rows


def _unit_fits(find_pair, ckpt_dir: Path, spec: ChainSpec, options) -> dict:
    """One unit, both modes (``compressor=opto``, ``one_unit``): the first level of each mode
    fitted together, one set of blocks for both (:func:`dsp.fitting.opto.fit_unit`), unless
    every one of them is already on disk. Returns ``{(mode, pr): FitResult}``."""
    from dsp.fitting.opto import fit_unit
    firsts = []
    for mode in spec.modes:
        pr = next((p for p in sorted(spec.levels, reverse=True) if find_pair(mode, p) is not None), None)
        if pr is not None:
            firsts.append((mode, pr, find_pair(mode, pr)))
    done = [_existing(level_dir(ckpt_dir, m, pr) / "ckpt.yaml", spec.init,
                      level_key(*files, spec, options.for_mode(m), spec.default_init), lambda *a: None) is not None
            for m, pr, files in firsts]
    if len(firsts) < 2 or all(done):
        return {}
    levels = []
    for mode, pr, (inp, tgt) in firsts:
        x, y, sr, _ = read_aligned_pair(inp, tgt, spec.align)
        x, y = fit_span(x, y, spec.span)
        levels.append((frame_pair(x, y, sr, spec.frame_s, spec.overlap_s, tgt), spec.default_init, options.for_mode(mode)))
    return {(m, pr): res for (m, pr, _), res in zip(firsts, fit_unit(levels))}


def refuse_other_init(ckpt_dir: Path, spec: ChainSpec) -> None:
    """UserError when a level in ``ckpt_dir`` was fitted with another ``init`` (chained or
    cold): checked before a rerun changes anything in the folder."""
    for mode in spec.modes:
        for pr in spec.levels:
            ckpt = level_dir(ckpt_dir, mode, pr) / "ckpt.yaml"
            if not ckpt.is_file():
                continue
            try:
                init = load_checkpoint(ckpt).get("init", spec.init)
            except UserError:
                continue   # damaged: refitted
            if init != spec.init:
                raise UserError(f"{ckpt}: was fitted with init={init}, this run uses init={spec.init}; "
                                "choose another ckpt_dir to compare them")


def _existing(ckpt: Path, init: str, key: dict, on_stale=None) -> dict | None:
    """A finished level's record, or None if it must be (re)fitted: there is none, it is
    damaged, or it was fitted on other data or settings than ``key`` says."""
    if not ckpt.is_file():
        return None
    try:
        record = load_checkpoint(ckpt)
    except UserError as exc:
        warnings.warn(f"refitting: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if record.get("init", init) != init:
        raise UserError(f"{ckpt}: was fitted with init={record.get('init')}, this run uses "
                        f"init={init}; choose another ckpt_dir to compare them")
    change = key_change(record, key)
    if change is not None:
        if on_stale is not None:
            on_stale(ckpt, change)
        else:
            warnings.warn(f"refitting {ckpt}: {change}", RuntimeWarning, stacklevel=3)
        return None
    return record


def write_summary(path: Path, rows: list[dict], compressor: str, extra: list[str] | tuple = ()) -> None:
    """:data:`SUMMARY_COLUMNS` (``esr``: on the fitting audio), the further parameters of the
    model class ``compressor`` (a gray-box fit's blocks; an opto fit's cell and blocks), then ``extra`` columns."""
    further = [k for k in model_class(compressor).param_names if k not in SUMMARY_COLUMNS]
    write_csv(path, rows, SUMMARY_COLUMNS + further + list(extra))


def knobmap_check(rows: list[dict], find_pair, spec: ChainSpec, options: FitOptions, step: int = 10,
                  split: str = "Test") -> list[dict]:
    """The paper's check: a knob map from every ``step``-th PR, evaluated in between.

    For each fitted level that is not a multiple of ``step`` (45, 55, ..., 95),
    compares the ESR of its own fitted parameters (``esr_own_fit``) with the ESR of
    parameters interpolated from the multiples of ``step`` around it
    (``esr_interpolated``), both on the pair ``find_pair`` gives for that level (the
    caller's ``split``, e.g. Test: not the fitting audio); levels without one are skipped.
    """
    compressor = options_class(options)
    full = KnobMap.from_rows(rows, compressor)
    sparse = full.subset(lambda s: s["peak_reduction"] % step == 0)
    out = []
    for r in rows:
        mode, pr = r["mode"], int(r["peak_reduction"])
        if pr % step == 0 or mode not in sparse.table:
            continue
        lv = sparse.levels(mode)
        if not (min(lv) < pr < max(lv)):
            continue
        files = find_pair(mode, pr)
        if files is None:
            continue
        inp, tgt = files
        x, y, sr, _ = read_aligned_pair(inp, tgt, spec.align)
        frames = frame_pair(x, y, sr, spec.frame_s, spec.overlap_s, tgt)
        interp = sparse.at(la2a_setting(mode, pr))
        own = full.at(la2a_setting(mode, pr))
        out.append({"mode": mode, "peak_reduction": pr, "split": split,
                    "esr_own_fit": evaluate_any(frames, own, options),
                    "esr_interpolated": evaluate_any(frames, interp, options)})
    return out
