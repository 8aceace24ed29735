"""The knob table: DSP parameters of a device with arbitrary knobs, at any knob setting.

The counterpart of :class:`dsp.knobmap.KnobMap` for a manifest corpus
(:mod:`audio.manifest`): ``train_comp.py data=manifest`` fits the 5-parameter
compressor to every Train row; the table holds one fit per distinct knob setting.

- At a fitted setting (the same knob values as a Train row) the parameters are that
  row's fit (with several Train rows at one setting, the first row of the manifest).
- At a setting never fitted, they are those of the **nearest** fitted setting in knob
  space, each knob scaled by its range over the fitted settings (a knob constant over
  them is scaled by ``max(|value|, 1)``). No interpolation: the knobs of an arbitrary
  device need not map smoothly or monotonically onto the 5 parameters.
- A setting farther than :data:`FAR` (in those scaled units) outside the fitted range
  of any knob is refused (:class:`UserError`): nothing was fitted anywhere near it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from common.errors import UserError
from dsp.params import PARAM_NAMES

__all__ = ["FAR", "KnobTable", "load_fitted_table", "ensure_fitted_table", "fit_matches", "row_fit"]

FAR = 0.5  # scaled distance outside the fitted range beyond which a setting is refused


def _key(knobs: dict, names: list[str]) -> tuple:
    return tuple(float(knobs[k]) for k in names)


class KnobTable:
    """Fitted DSP parameters per knob setting.

    Args:
        knobs: the knob names, in the manifest's column order.
        settings: ``[(knob values dict, params dict), ...]``; a repeated setting keeps
            its first entry.
    """

    def __init__(self, knobs: list[str], settings: list[tuple[dict, dict]]):
        self.knobs = [str(k) for k in knobs]
        if not self.knobs:
            raise UserError("knob table: no knobs")
        table: dict[tuple, dict] = {}
        for values, params in settings:
            key = self._check_names(values)
            table.setdefault(key, {k: float(params[k]) for k in PARAM_NAMES})
        if not table:
            raise UserError("knob table: no fitted setting")
        self.table = table
        pts = np.asarray(list(table), dtype=float)
        self.lo, self.hi = pts.min(0), pts.max(0)
        span = self.hi - self.lo
        self.scale = np.where(span > 0, span, np.maximum(np.abs(self.lo), 1.0))
        self._points = pts

    # --- settings -------------------------------------------------------------------
    def _check_names(self, knobs: dict) -> tuple:
        missing = [k for k in self.knobs if k not in knobs]
        extra = [k for k in knobs if k not in self.knobs]
        if missing or extra:
            raise UserError(f"knob setting {dict(knobs)} does not match the knobs {', '.join(self.knobs)}"
                            + (f" (missing {', '.join(missing)})" if missing else "")
                            + (f" (unknown {', '.join(extra)})" if extra else ""))
        key = _key(knobs, self.knobs)
        if not all(math.isfinite(v) for v in key):
            raise UserError(f"knob setting {dict(knobs)} holds a non-finite value")
        return key

    def settings(self) -> list[dict]:
        """Every fitted setting as a knob dict."""
        return [dict(zip(self.knobs, key)) for key in self.table]

    def has(self, knobs: dict) -> bool:
        """Whether ``knobs`` is a fitted setting."""
        return self._check_names(knobs) in self.table

    def check(self, knobs: dict, source: str = "") -> None:
        """UserError when ``knobs`` lies more than :data:`FAR` outside the fitted range."""
        q = np.asarray(self._check_names(knobs))
        excess = np.maximum(np.maximum(self.lo - q, q - self.hi), 0.0) / self.scale
        if np.any(excess > FAR):
            i = int(np.argmax(excess))
            where = f"{source}: " if source else ""
            raise UserError(f"{where}knob {self.knobs[i]} = {q[i]:g} lies far outside the fitted range "
                            f"{self.lo[i]:g}..{self.hi[i]:g} (no fitted setting near {dict(knobs)})")

    def nearest(self, knobs: dict, exclude_self: bool = False) -> dict:
        """The nearest fitted setting (scaled knob space) as a knob dict.

        ``exclude_self``: leave the setting itself out (leave-one-out), unless it is the
        only one.
        """
        q = np.asarray(self._check_names(knobs))
        d = np.sqrt((((self._points - q) / self.scale) ** 2).sum(1))
        if exclude_self and len(d) > 1:
            d = np.where(d == 0.0, np.inf, d)
        return dict(zip(self.knobs, (float(v) for v in self._points[int(np.argmin(d))])))

    def at(self, knobs: dict, exclude_self: bool = False) -> dict:
        """DSP parameters at a setting: its fit, or the nearest fitted setting's."""
        self.check(knobs)
        return dict(self.table[_key(self.nearest(knobs, exclude_self), self.knobs)])

    @classmethod
    def of_settings(cls, knobs: list[str], settings: list[dict]) -> "KnobTable":
        """A table of the settings alone (placeholder parameters): to :meth:`check`
        settings against the fitted range before anything is fitted."""
        return cls(knobs, [(k, _PLACEHOLDER) for k in settings])

    # --- storage (plain types: a neural checkpoint carries its table) ------------------
    def to_record(self) -> dict:
        return {"knobs": list(self.knobs),
                "settings": [{"knobs": dict(zip(self.knobs, key)), "params": dict(p)} for key, p in self.table.items()]}

    @classmethod
    def from_record(cls, record: dict) -> "KnobTable":
        return cls(list(record["knobs"]), [(s["knobs"], s["params"]) for s in record["settings"]])


_PLACEHOLDER = {"threshold_db": 0.0, "ratio": 1.0, "attack_ms": 1.0, "release_ms": 1.0, "make_up_db": 0.0}


def load_fitted_table(rows, dsp_dir: str | Path) -> KnobTable:
    """The table of the fits ``train_comp.py data=manifest ckpt_dir=DSP_DIR`` wrote for ``rows``.

    Raises:
        UserError: a row without its fit (``dsp_dir/rows/<index>_<label>/ckpt.yaml``),
            or a fit of other files or knobs than the row's.
    """
    from dsp.checkpoint import load_checkpoint
    from dsp.jobs import manifest_row_dir

    settings = []
    for row in rows:
        ckpt = manifest_row_dir(Path(dsp_dir), row) / "ckpt.yaml"
        if not ckpt.is_file():
            raise UserError(f"{ckpt}: no fit of manifest line {row.index}; run "
                            f"`python train_comp.py data=manifest data.path=... ckpt_dir={dsp_dir}` first")
        record = load_checkpoint(ckpt)
        if not fit_matches(record, row):
            raise UserError(f"{ckpt}: is the fit of other files or knobs than manifest line {row.index} "
                            f"(refit with train_comp.py into another ckpt_dir)")
        settings.append((row.knobs, record["params"]))
    if not settings:
        raise UserError(f"{dsp_dir}: no fitted manifest rows")
    return KnobTable(list(rows[0].knobs), settings)


def fit_matches(record: dict, row) -> bool:
    """Whether a row checkpoint was fitted on this row's files at its knobs."""
    knobs = record.get("knobs") or {}
    same_knobs = set(knobs) == set(row.knobs) and all(float(knobs[k]) == float(v) for k, v in row.knobs.items())
    def same(a, b) -> bool:
        return a is not None and Path(str(a)).resolve() == Path(b).resolve()
    return same_knobs and same(record.get("input"), row.input) and same(record.get("target"), row.target)


def row_fit(dsp_dir: str | Path, row) -> dict | None:
    """The row's own fit in ``dsp_dir`` (its ``ckpt.yaml`` record), or None where there is
    none, it is unreadable, or it was fitted on other files or knobs (another manifest's row)."""
    from dsp.checkpoint import load_checkpoint
    from dsp.jobs import manifest_row_dir

    ckpt = manifest_row_dir(Path(dsp_dir), row) / "ckpt.yaml"
    if not ckpt.is_file():
        return None
    try:
        record = load_checkpoint(ckpt)
    except UserError:
        return None
    return record if fit_matches(record, row) else None


def ensure_fitted_table(data, rows, dsp_dir: str | Path, fit: bool = True, quiet: bool = False) -> KnobTable:
    """:func:`load_fitted_table`, after fitting the rows that lack a fit of their own
    (``train_comp.py data=manifest ckpt_dir=DSP_DIR``, with the ``data`` config given).

    Raises:
        UserError: rows without a fit and ``fit`` false.
    """
    from common.config import load_config
    from dsp.jobs import run_fit_job

    todo = [r for r in rows if row_fit(dsp_dir, r) is None]
    if todo:
        command = f"python train_comp.py data=manifest data.path={data.path} ckpt_dir={dsp_dir}"
        if not fit:
            raise UserError(f"{dsp_dir}: no DSP fit of manifest line {todo[0].index}; run `{command}` first "
                            "(or set fit_chain=true)")
        print(f"{len(todo)} manifest rows without a DSP fit in {dsp_dir}: fitting them first ({command})")
        fit_cfg = load_config("config", [f"ckpt_dir={dsp_dir}", f"quiet={bool(quiet)}"])
        fit_cfg.data = data
        run_fit_job(fit_cfg)
    return load_fitted_table(rows, dsp_dir)
