"""Joint curves: every compressor parameter a smooth curve over the knobs, as a knob model.

One group's fitted curves (:class:`JointCurves`: ``z(k) = B(k) C`` in the solver's
unconstrained domain, ``B`` a :class:`dsp.knobs.basis.KnobBasis` row and ``C`` ``(size, P)``
coefficients, one column per solver coordinate of the model's :class:`CurveSpace`), the
fit's result around them (:class:`JointResult`), and several groups
(:class:`JointKnobModel`: the LA-2A, one per mode). Fitting them is
:mod:`dsp.fitting.joint`; this module only evaluates and stores them.

What the curves are of (:class:`CurveSpace`):

- :class:`FiveParameterSpace`: the five-parameter compressor (``P = 5``); the gray-box's
  joint fit adds its shared blocks outside the curves (:class:`dsp.fitting.joint.SharedBlocks`);
- :class:`OptoCellSpace`: the optical cell's free coordinates (``P`` 11, or 12 where limit
  mode's input tap is fitted), with the unit's blocks held inside: they were fitted once for
  the group, and the curves were fitted through them, so they are part of the curves' record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from dsp.knobs.basis import KnobBasis
from dsp.models.graybox import BLOCK_NAMES
from dsp.models.opto import OPTO_NAMES, OptoParameterisation, OptoRanges
from dsp.models.parameters import PARAM_NAMES, Parameterisation, Ranges

__all__ = ["CurveSpace", "FiveParameterSpace", "OptoCellSpace", "space_from_record", "JointCurves", "SettingFit",
           "JointResult", "JointKnobModel"]


def _ranges_record(r: Ranges) -> dict:
    return {"ratio": list(r.ratio), "attack_ms": list(r.attack_ms), "release_ms": list(r.release_ms)}


def _ranges_from_record(d: dict) -> Ranges:
    return Ranges(ratio=tuple(map(float, d["ratio"])), attack_ms=tuple(map(float, d["attack_ms"])),
                  release_ms=tuple(map(float, d["release_ms"])))


class CurveSpace:
    """What a joint fit's curves are of: the solver's coordinates at one setting and the
    physical parameters they map to.

    Attributes:
        kind: the record's name for it (``"ff5"``, ``"opto"``).
        names: the physical parameters at a setting (:meth:`physical`'s keys).
    """
    kind: str = ""
    names: tuple[str, ...] = ()

    def param(self, sample_rate: float):
        """The map between the solver's ``z`` at a setting and physical units."""
        raise NotImplementedError

    def width(self, sample_rate: float) -> int:
        """Solver coordinates per setting: the coefficient matrix's columns."""
        return int(self.param(sample_rate).size)

    def physical(self, param, z: torch.Tensor) -> dict[str, float]:
        """Every parameter of :attr:`names` at one setting's ``z``."""
        return param.to_physical(z)

    def to_record(self) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class FiveParameterSpace(CurveSpace):
    """The five-parameter compressor's coordinates (:class:`dsp.models.parameters.Parameterisation`)."""
    ranges: Ranges = field(default_factory=Ranges)
    kind = "ff5"
    names = PARAM_NAMES

    def param(self, sample_rate: float) -> Parameterisation:
        return Parameterisation(sample_rate, self.ranges)

    def to_record(self) -> dict:
        return {"kind": self.kind, "ranges": _ranges_record(self.ranges)}


@dataclass(frozen=True)
class OptoCellSpace(CurveSpace):
    """The optical cell's free coordinates (:class:`dsp.models.opto.OptoParameterisation`)
    with the unit's six blocks held: :meth:`physical` gives every name of
    :data:`dsp.models.opto.OPTO_NAMES`.

    Attributes:
        ranges: the cell's ranges.
        fit_mix: limit mode's input tap is a coordinate (else held at 0).
        blocks: the block values (physical, :data:`dsp.models.graybox.BLOCK_NAMES`).
    """
    ranges: OptoRanges = field(default_factory=OptoRanges)
    fit_mix: bool = False
    blocks: tuple[tuple[str, float], ...] = ()
    kind = "opto"
    names = OPTO_NAMES

    def __post_init__(self):
        blocks = dict(self.blocks)
        missing = [k for k in BLOCK_NAMES if k not in blocks]
        if missing:
            raise ValueError(f"opto curves need the unit's blocks; missing {', '.join(missing)}")
        object.__setattr__(self, "blocks", tuple((k, float(blocks[k])) for k in BLOCK_NAMES))

    @property
    def block_values(self) -> dict[str, float]:
        return dict(self.blocks)

    def param(self, sample_rate: float) -> OptoParameterisation:
        return OptoParameterisation(sample_rate, self.ranges, self.fit_mix)

    def physical(self, param, z: torch.Tensor) -> dict[str, float]:
        return {**param.to_physical(z), **self.block_values}

    def to_record(self) -> dict:
        return {"kind": self.kind, "ranges": {k: list(v) for k, v in self.ranges.items()},
                "fit_mix": bool(self.fit_mix), "blocks": self.block_values}


def space_from_record(record: dict | None, ranges: dict | None = None) -> CurveSpace:
    """The space of a stored fit (None, as records before the opto curves: five parameters
    with ``ranges``)."""
    if record is None:
        return FiveParameterSpace(_ranges_from_record(ranges) if ranges else Ranges())
    kind = record.get("kind")
    if kind == "ff5":
        return FiveParameterSpace(_ranges_from_record(record["ranges"]))
    if kind == "opto":
        return OptoCellSpace(OptoRanges.from_dict(record["ranges"]), bool(record["fit_mix"]),
                             tuple((str(k), float(v)) for k, v in dict(record["blocks"]).items()))
    raise ValueError(f"unknown curve space {kind!r} (expected ff5 or opto)")


@dataclass
class JointCurves:
    """The fitted curves of one group: ``z(k) = B(k) C`` in the solver's domain.

    Attributes:
        basis: the knob basis.
        coefficients: ``C``, ``(size, P)``, ``P`` the space's coordinates per setting.
        sample_rate: rate of the fitting audio (the time-constant logits depend on it).
        space: what the curves are of (default: the five-parameter compressor with its
            default ranges).
    """
    basis: KnobBasis
    coefficients: np.ndarray
    sample_rate: int
    space: CurveSpace = field(default_factory=FiveParameterSpace)

    @property
    def knob_names(self) -> tuple[str, ...]:
        return self.basis.names

    @property
    def ranges(self):
        """The fit's parameter ranges (the five-parameter model's or the cell's)."""
        return self.space.ranges

    def _param(self):
        return self.space.param(self.sample_rate)

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
        """Solver coordinates at knob vectors. Shape: ``(G, d)`` -> ``(G, P)``."""
        rows = self.basis.design(self.knob_matrix(knobs))
        return torch.from_numpy(rows @ np.asarray(self.coefficients, dtype=np.float64))

    def params_at(self, knobs) -> dict[str, float]:
        """Physical parameters (the space's :attr:`CurveSpace.names`) at one knob vector."""
        z = self.z_at(knobs)
        if z.shape[0] != 1:
            raise ValueError("params_at takes one knob vector; use sample() for several")
        return self.space.physical(self._param(), z[0])

    def sample(self, knobs) -> dict[str, np.ndarray]:
        """Physical parameters at several knob vectors, one array ``(G,)`` per name."""
        param = self._param()
        rows = [self.space.physical(param, z) for z in self.z_at(knobs)]
        return {k: np.array([r[k] for r in rows]) for k in self.space.names}

    def to_record(self) -> dict:
        record = {"basis": self.basis.to_record(),
                  "coefficients": [[float(v) for v in row] for row in np.asarray(self.coefficients)],
                  "sample_rate": int(self.sample_rate), "space": self.space.to_record()}
        if isinstance(self.space, FiveParameterSpace):   # readable by the records before the spaces
            record["ranges"] = _ranges_record(self.space.ranges)
        return record

    @classmethod
    def from_record(cls, record: dict) -> "JointCurves":
        basis = KnobBasis.from_record(record["basis"])
        space = space_from_record(record.get("space"), record.get("ranges"))
        sample_rate = int(record["sample_rate"])
        width = space.width(sample_rate)
        coef = np.asarray(record["coefficients"], dtype=np.float64)
        if coef.shape != (basis.size, width) or not np.all(np.isfinite(coef)):
            raise ValueError(f"coefficients must be finite and {basis.size}x{width}, got shape {coef.shape}")
        return cls(basis, coef, sample_rate, space)


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
        """Chain-summary-like rows (``mode``, the knob columns, the space's parameters, ``esr``,
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
