"""Joint curves: every compressor parameter a smooth curve over the knobs, as a knob model.

One group's fitted curves (:class:`JointCurves`: ``z(k) = B(k) C`` in the solver's
unconstrained domain, ``B`` a :class:`dsp.knobs.basis.KnobBasis` row and ``C`` ``(size, 5)``
coefficients), the fit's result around them (:class:`JointResult`), and several groups
(:class:`JointKnobModel`: the LA-2A, one per mode). Fitting them is
:mod:`dsp.fitting.joint`; this module only evaluates and stores them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from dsp.knobs.basis import KnobBasis
from dsp.models.parameters import PARAM_NAMES, Parameterisation, Ranges

__all__ = ["JointCurves", "SettingFit", "JointResult", "JointKnobModel"]


def _ranges_record(r: Ranges) -> dict:
    return {"ratio": list(r.ratio), "attack_ms": list(r.attack_ms), "release_ms": list(r.release_ms)}


def _ranges_from_record(d: dict) -> Ranges:
    return Ranges(ratio=tuple(map(float, d["ratio"])), attack_ms=tuple(map(float, d["attack_ms"])),
                  release_ms=tuple(map(float, d["release_ms"])))


@dataclass
class JointCurves:
    """The fitted curves of one group: ``z(k) = B(k) C`` in the solver's domain.

    Attributes:
        basis: the knob basis.
        coefficients: ``C``, ``(size, 5)``.
        sample_rate: rate of the fitting audio (the attack/release logits depend on it).
        ranges: the parameter ranges of the fit.
    """
    basis: KnobBasis
    coefficients: np.ndarray
    sample_rate: int
    ranges: Ranges = field(default_factory=Ranges)

    @property
    def knob_names(self) -> tuple[str, ...]:
        return self.basis.names

    def _param(self) -> Parameterisation:
        return Parameterisation(self.sample_rate, self.ranges)

    def knob_matrix(self, knobs) -> np.ndarray:
        """Knob vectors as ``(G, d)``: a number (one knob), a sequence of numbers, a dict
        by knob name, or a list of any of these."""
        d = len(self.knob_names)
        if isinstance(knobs, dict):
            return np.array([[float(knobs[n]) for n in self.knob_names]])
        if isinstance(knobs, (list, tuple)) and knobs and isinstance(knobs[0], dict):
            return np.array([[float(k[n]) for n in self.knob_names] for k in knobs])
        a = np.asarray(knobs, dtype=np.float64)
        if a.ndim == 0:
            a = a.reshape(1, 1)
        elif a.ndim == 1:
            a = a.reshape(-1, 1) if d == 1 else a.reshape(1, -1)
        if a.shape[1] != d:
            raise ValueError(f"expected {d} knob value(s) ({', '.join(self.knob_names)}), got {a.shape[1]}")
        return a

    def z_at(self, knobs) -> torch.Tensor:
        """Solver coordinates at knob vectors. Shape: ``(G, d)`` -> ``(G, 5)``."""
        rows = self.basis.design(self.knob_matrix(knobs))
        return torch.from_numpy(rows @ np.asarray(self.coefficients, dtype=np.float64))

    def params_at(self, knobs) -> dict[str, float]:
        """Physical parameters (:data:`dsp.models.parameters.PARAM_NAMES`) at one knob vector."""
        z = self.z_at(knobs)
        if z.shape[0] != 1:
            raise ValueError("params_at takes one knob vector; use sample() for several")
        return self._param().to_physical(z[0])

    def sample(self, knobs) -> dict[str, np.ndarray]:
        """Physical parameters at several knob vectors, one array ``(G,)`` per name."""
        param = self._param()
        rows = [param.to_physical(z) for z in self.z_at(knobs)]
        return {k: np.array([r[k] for r in rows]) for k in PARAM_NAMES}

    def to_record(self) -> dict:
        return {"basis": self.basis.to_record(),
                "coefficients": [[float(v) for v in row] for row in np.asarray(self.coefficients)],
                "sample_rate": int(self.sample_rate), "ranges": _ranges_record(self.ranges)}

    @classmethod
    def from_record(cls, record: dict) -> "JointCurves":
        basis = KnobBasis.from_record(record["basis"])
        coef = np.asarray(record["coefficients"], dtype=np.float64)
        if coef.shape != (basis.size, 5) or not np.all(np.isfinite(coef)):
            raise ValueError(f"coefficients must be finite and {basis.size}x5, got shape {coef.shape}")
        return cls(basis, coef, int(record["sample_rate"]), _ranges_from_record(record["ranges"]))


@dataclass
class SettingFit:
    """One fitted setting: its knob vector, label and ESR on its fitting audio."""
    knobs: tuple[float, ...]
    label: str
    esr: float


@dataclass
class JointResult:
    """A joint fit of one group.

    ``loss`` is the objective (mean ESR plus penalty); ``iterations``, ``converged``,
    ``reason`` and ``seconds`` (wall time of the whole fit: start, solve, scoring)
    belong to the one joint solve that served every setting.
    """
    curves: JointCurves
    settings: list[SettingFit]
    loss: float
    iterations: int
    converged: bool
    reason: str
    seconds: float
    smoothness: float
    history: list[float] = field(default_factory=list)
    selection: list[dict] = field(default_factory=list)
    monotone: dict[str, str] = field(default_factory=dict)
    prior: float = 0.0

    @property
    def mean_esr(self) -> float:
        return float(np.mean([s.esr for s in self.settings]))

    def to_record(self) -> dict:
        return {"kind": "joint", "curves": self.curves.to_record(),
                "settings": [{"knobs": [float(k) for k in s.knobs], "label": s.label, "esr": float(s.esr)}
                             for s in self.settings],
                "loss": float(self.loss), "iterations": int(self.iterations),
                "converged": bool(self.converged), "reason": str(self.reason),
                "seconds": float(self.seconds), "smoothness": float(self.smoothness),
                "monotone": dict(self.monotone), "prior": float(self.prior),
                "history": [float(v) for v in self.history],
                "selection": [{k: (float(v) if isinstance(v, (float, np.floating)) else v)
                               for k, v in row.items()} for row in self.selection]}

    @classmethod
    def from_record(cls, record: dict) -> "JointResult":
        if record.get("kind") != "joint":
            raise ValueError(f"not a joint fit record (kind {record.get('kind')!r})")
        return cls(JointCurves.from_record(record["curves"]),
                   [SettingFit(tuple(float(k) for k in s["knobs"]), str(s["label"]), float(s["esr"]))
                    for s in record["settings"]],
                   float(record["loss"]), int(record["iterations"]), bool(record["converged"]),
                   str(record["reason"]), float(record["seconds"]), float(record["smoothness"]),
                   [float(v) for v in record.get("history", [])], list(record.get("selection", [])),
                   {str(k): str(v) for k, v in dict(record.get("monotone") or {}).items()},
                   float(record.get("prior", 0.0)))


def _plain_knob(v: float):
    return int(v) if float(v).is_integer() else float(v)


class JointKnobModel:
    """Joint fits of several groups (LA-2A: one per mode), read like :class:`dsp.knobs.knobmap.KnobMap`.

    ``at(mode, peak_reduction)`` gives the physical parameters at any setting;
    :meth:`rows` tabulates them as chain summary rows; :meth:`to_record` is a plain
    YAML-able dict.
    """

    def __init__(self, fits: dict[str, JointResult]):
        self.fits = dict(fits)

    @property
    def modes(self) -> list[str]:
        return list(self.fits)

    def levels(self, mode: str) -> list:
        """Knob values (one knob) or vectors of the settings ``mode`` was fitted on, sorted."""
        ks = sorted(s.knobs for s in self._fit(mode).settings)
        return [_plain_knob(k[0]) if len(k) == 1 else k for k in ks]

    def _fit(self, mode: str) -> JointResult:
        if mode not in self.fits:
            raise KeyError(f"joint fit has no {mode!r} group (has {', '.join(self.fits)})")
        return self.fits[mode]

    def at(self, mode: str, knobs) -> dict[str, float]:
        """Physical parameters of ``mode`` at a knob value (one knob), vector or dict by name."""
        return self._fit(mode).curves.params_at(knobs)

    def curve_grid(self, mode: str, points: int = 101, knob: str | None = None,
                   others: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """The curves sampled on an even grid of one knob over its fitted range.

        Args:
            knob: which knob varies (default: the first); the others sit at ``others``
                (default: the low end of their range).

        Returns:
            ``{knob: grid (points,), threshold_db: (points,), ...}``.
        """
        curves = self._fit(mode).curves
        names = curves.knob_names
        knob = names[0] if knob is None else knob
        j = names.index(knob)
        spline = curves.basis.splines[j]
        grid = np.linspace(spline.low, spline.high, points)
        base = np.array([(others or {}).get(n, s.low) for n, s in zip(names, curves.basis.splines)], dtype=float)
        kv = np.tile(base, (points, 1))
        kv[:, j] = grid
        return {knob: grid, **curves.sample(kv)}

    def rows(self, levels: dict[str, Sequence] | None = None) -> list[dict]:
        """Chain-summary-like rows (``mode``, the knob columns, the five parameters, ``esr``,
        ``iterations``, ``seconds``, ``converged``) at ``levels`` per mode (default: the
        fitted settings). ``esr`` is the fitting ESR at a fitted setting, NaN elsewhere;
        ``seconds`` is the joint fit's time shared evenly by its fitted settings, so the
        column sums to the fit time."""
        out = []
        for mode, fit in self.fits.items():
            names = fit.curves.knob_names
            fitted = {s.knobs: s.esr for s in fit.settings}
            wanted = fit.curves.knob_matrix(levels[mode]) if levels and mode in levels else \
                np.array(sorted(fitted), dtype=float)
            share = fit.seconds / max(len(fit.settings), 1)
            for kv in wanted:
                key = tuple(float(v) for v in kv)
                row = {"mode": mode, **{n: _plain_knob(v) for n, v in zip(names, key)},
                       **fit.curves.params_at(kv.reshape(1, -1)),
                       "esr": fitted.get(key, math.nan), "iterations": fit.iterations,
                       "seconds": share if key in fitted else 0.0, "converged": fit.converged,
                       "skipped": False}
                out.append(row)
        return out

    def to_record(self) -> dict:
        return {"kind": "joint_knob_model", "groups": {m: f.to_record() for m, f in self.fits.items()}}

    @classmethod
    def from_record(cls, record: dict) -> "JointKnobModel":
        if record.get("kind") != "joint_knob_model" or not record.get("groups"):
            raise ValueError("not a joint knob model record")
        return cls({str(m): JointResult.from_record(r) for m, r in record["groups"].items()})
