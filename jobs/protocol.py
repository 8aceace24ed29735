"""The evaluation protocol in one place (DESIGN.md, "Evaluation protocol").

- Fits read **Train** material only (:data:`PROTOCOL_SPLITS`); a setting present only
  in Val or Test is not fitted, the knob model reaches it.
- Held-out settings (``unseen_levels``) are left out of every fit; the fit record
  (``protocol`` in ``knobmap.yaml``: :func:`fit_record`) says which were held out,
  which splits were read and which levels were fitted.
- A DSP fit that neural training or a comparison relies on must honour both
  (:func:`protocol_problem`).
- Figures on the fitting audio are labelled as such; :func:`add_split_scores` adds
  each fitted setting's ESR on its Val and Test takes (``esr_val``, ``esr_test``).
"""
from __future__ import annotations

import hashlib
import json
import sys
from typing import Iterable

from audio.align import AlignmentError
from audio.metrics import PooledESR
from audio.pairs import read_aligned_pair
from common.errors import UserError
from audio.framing import frame_pair
from dsp.storage.fitkey import file_identity
from dsp.fitting.by_class import evaluate_any
from dsp.derivatives.autograd import target_energy

__all__ = ["PROTOCOL_SPLITS", "SPLIT_COLUMNS", "held_out_levels", "fit_record", "data_key", "takes_data_key",
           "protocol_problem",
           "add_split_scores", "pooled_split_esr", "scorable_frames"]

PROTOCOL_SPLITS = ("Train",)
SPLIT_COLUMNS = {"Val": "esr_val", "Test": "esr_test"}


def held_out_levels(cfg) -> list[int]:
    """``cfg.unseen_levels`` as sorted ints (none when absent); UserError outside 0..100."""
    raw = cfg.get("unseen_levels") or []
    try:
        levels = sorted({int(v) for v in raw})
    except (TypeError, ValueError):
        raise UserError(f"unseen_levels: expected peak reduction levels, got {list(raw)}") from None
    if any(not 0 <= v <= 100 for v in levels):
        raise UserError(f"unseen_levels: peak reduction levels must lie in 0..100, got {levels}")
    return levels


def fit_record(method: str, fit_splits: Iterable[str], held_out: Iterable[int],
               fitted: dict[str, Iterable[int]], data_key: str | None = None,
               fit_span: tuple[float, float] | None = None) -> dict:
    """The ``protocol`` entry of a fit's records: method, splits read, levels held out,
    levels fitted per mode (plain types), the :func:`data_key` of the files fitted, and the
    part of each take fitted when not all of it (``data.fit_span``: a fold of ``crossfit``)."""
    record = {"method": str(method), "fit_splits": [str(s) for s in fit_splits],
              "held_out": sorted(int(v) for v in held_out),
              "fitted": {str(m): sorted(int(v) for v in lv) for m, lv in fitted.items()}}
    if data_key is not None:
        record["data_key"] = str(data_key)
    if fit_span is not None:
        record["fit_span"] = [float(v) for v in fit_span]
    return record


def _digest(entries) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:32]


def data_key(find, fitted: dict[str, Iterable[int]]) -> str:
    """One digest of the identity (:func:`dsp.storage.fitkey.file_identity`) of the input and target
    files of every fitted setting, as ``find(mode, pr) -> (input, target) | None`` picks them
    now; a setting without files counts as such. Equal keys: the same material."""
    entries = []
    for mode in sorted(fitted):
        for pr in sorted(int(v) for v in fitted[mode]):
            files = find(mode, pr)
            entries.append([mode, pr] + ([file_identity(f) for f in files] if files is not None else [None]))
    return _digest(entries)


def takes_data_key(takes) -> str:
    """:func:`data_key` of a device's takes (manifest rows), whatever their order."""
    return _digest(sorted(json.dumps([file_identity(t.input), file_identity(t.target)], sort_keys=True)
                          for t in takes))


def protocol_problem(protocol: dict | None, unseen: Iterable[int],
                     fit_span: tuple[float, float] | None = None) -> str:
    """Why a fit with this ``protocol`` record breaks the protocol for ``unseen`` ("" if it does not);
    ``fit_span``: the part of each take the fit must have read (None: all of it)."""
    if not protocol:
        return "does not record which splits it read and which levels it held out (an older fit)"
    read = sorted(set(protocol.get("fit_splits") or []) - set(PROTOCOL_SPLITS))
    if read:
        return f"read {' and '.join(read)} material"
    unseen = {int(v) for v in unseen}
    seen = sorted({int(v) for lv in (protocol.get("fitted") or {}).values() for v in lv} & unseen)
    if seen:
        return f"was fitted at the unseen level(s) {seen}"
    span = protocol.get("fit_span")
    if span is not None and span != (None if fit_span is None else [float(v) for v in fit_span]):
        return f"was fitted on part of each take (data.fit_span={span}, a fold of crossfit=true)"
    return ""


def pooled_split_esr(pairs, params: dict, options, frame_s: float, overlap_s: float,
                     align: str = "auto") -> float | None:
    """The fit ESR estimator (:mod:`audio.metrics`: the fit's frames) of ``params`` (their
    model class: the options') on ``pairs``, pooled (None when there are none). A take too
    short for the warm-up, or silent, is not scored."""
    pooled = PooledESR()
    for p in pairs:
        frames = scorable_frames(p, frame_s, overlap_s, align)
        if frames is None:
            continue
        energy = target_energy(frames)
        pooled.add(evaluate_any(frames, params, options) * energy, energy)
    return pooled.value


def scorable_frames(pair, frame_s: float, overlap_s: float, align: str = "auto"):
    """The framed pair, aligned as the fits align theirs (:mod:`audio.pairs`), or None when
    it is too short for the warm-up or silent where scored (such a take can be neither
    fitted nor scored; bad files still raise)."""
    try:
        x, y, sr, _ = read_aligned_pair(pair.input, pair.target, align)
    except AlignmentError as exc:
        # too little material for a clear latency estimate (a short Val/Test take):
        # scored as recorded, and said so
        print(f"note: {pair.target}: scored without alignment ({exc})", file=sys.stderr)
        x, y, sr, _ = read_aligned_pair(pair.input, pair.target, "off")
    try:
        return frame_pair(x, y, sr, frame_s, overlap_s, pair.target)
    except UserError:
        return None


def add_split_scores(rows: list[dict], pairs, options, frame_s: float, overlap_s: float,
                     splits: Iterable[str] = ("Val", "Test"), align: str = "auto") -> None:
    """Add ``esr_val`` / ``esr_test`` to every summary row: the pooled ESR of that row's
    parameters on every take of the split at its setting (any take tag); empty where the
    setting has none there."""
    for r in rows:
        for split in splits:
            takes = [p for p in pairs if p.split == split and p.mode == r["mode"]
                     and p.peak_reduction == int(r["peak_reduction"])]
            esr = pooled_split_esr(takes, r, options, frame_s, overlap_s, align) if takes else None
            r[SPLIT_COLUMNS[split]] = esr
