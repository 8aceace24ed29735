"""The per-take fits of a manifest device: one ``ckpt.yaml`` per take in
``DSP_DIR/rows/<index>_<label>/`` (:func:`take_dir`), read back one by one
(:func:`take_fit`) or as the device's :class:`dsp.knobs.knobtable.KnobTable`
(:func:`load_take_fits`)."""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError
from dsp.knobs.knobtable import KnobTable
from dsp.storage.fitkey import files_change, key_change
from dsp.storage.records import load_checkpoint

__all__ = ["take_dir", "take_fit", "fit_matches", "load_take_fits"]


def take_dir(dsp_dir: str | Path, take) -> Path:
    """The folder of one take's fit: ``DSP_DIR/rows/<index>_<label>``."""
    return Path(dsp_dir) / "rows" / f"{take.index:04d}_{take.label()}"


def fit_matches(record: dict, take) -> bool:
    """Whether a take's checkpoint was fitted on this take's files at its knobs."""
    knobs = record.get("knobs") or {}
    same_knobs = set(knobs) == set(take.knobs) and all(float(knobs[k]) == float(v) for k, v in take.knobs.items())

    def same(a, b) -> bool:
        return a is not None and Path(str(a)).resolve() == Path(b).resolve()
    return (same_knobs and same(record.get("input"), take.input) and same(record.get("target"), take.target)
            and files_change(record, take.input, take.target) is None)


def take_fit(dsp_dir: str | Path, take, key: dict | None = None, on_stale=None) -> dict | None:
    """The take's own fit in ``dsp_dir`` (its ``ckpt.yaml`` record), or None where there is
    none, it is unreadable, or it was fitted on other files (paths or contents) or knobs
    (another corpus's take), or, given its :mod:`dsp.storage.fitkey` ``key``, with other settings.

    ``on_stale(ckpt, reason)`` is called when a fit exists but is not this take's.
    """
    ckpt = take_dir(dsp_dir, take) / "ckpt.yaml"
    if not ckpt.is_file():
        return None
    try:
        record = load_checkpoint(ckpt)
    except UserError:
        return None
    reason = None if fit_matches(record, take) else (files_change(record, take.input, take.target)
                                                     or "it is the fit of other files or knobs")
    if reason is None and key is not None:
        reason = key_change(record, key)
    if reason is not None:
        if on_stale is not None:
            on_stale(ckpt, reason)
        return None
    return record


def load_take_fits(takes, dsp_dir: str | Path, name: str = "manifest") -> KnobTable:
    """The table of the fits ``train_comp.py data=manifest ckpt_dir=DSP_DIR`` wrote for ``takes``.

    Raises:
        UserError: a take without its fit (``dsp_dir/rows/<index>_<label>/ckpt.yaml``),
            or a fit of other files or knobs than the take's.
    """
    settings, classes = [], set()
    for take in takes:
        ckpt = take_dir(dsp_dir, take) / "ckpt.yaml"
        if not ckpt.is_file():
            raise UserError(f"{ckpt}: no fit of manifest line {take.index}; run "
                            f"`python train_comp.py data=manifest data.path=... ckpt_dir={dsp_dir}` first")
        record = load_checkpoint(ckpt)
        if not fit_matches(record, take):
            raise UserError(f"{ckpt}: is the fit of other files or knobs than manifest line {take.index} "
                            f"(refit with train_comp.py into another ckpt_dir)")
        settings.append((take.knobs, record["params"]))
        classes.add(record["compressor"])
    if not settings:
        raise UserError(f"{dsp_dir}: no fitted manifest rows")
    if len(classes) > 1:
        raise UserError(f"{dsp_dir}: the takes' fits mix model classes ({', '.join(sorted(classes))})")
    return KnobTable(list(takes[0].knobs), settings, name, classes.pop())
