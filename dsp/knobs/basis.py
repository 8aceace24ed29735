"""Smooth bases over a device's knobs: B-splines in one knob, additive over several.

A joint knob fit writes each solver coordinate as ``z(k) = B(k) C``: a row of basis
functions of the knob vector ``k`` times a coefficient matrix ``C`` ``(size, 5)``.

- :class:`SplineBasis`: a clamped B-spline on ``[low, high]`` with ``size`` functions
  and uniform interior knots; cubic from 4 functions up (1: constant, 2: linear,
  3: quadratic). Clamped splines are a partition of unity, so a coefficient step
  of at most ``a`` moves ``z`` by at most ``a`` at every knob value. Outside
  ``[low, high]`` the end values are held (no extrapolation).
- :class:`KnobBasis`: one :class:`SplineBasis` per knob, added (an additive model).
  The first knob keeps all its functions; every further knob drops its first one,
  which pins its term to zero at its ``low`` end and keeps the sum identifiable.
  With one knob it is exactly that knob's spline.

The roughness penalty is the P-spline one (Eilers and Marx): the sum of squared
second differences of neighbouring coefficients, a discrete stand-in for the
integrated squared second derivative when the knots are uniform.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline

__all__ = ["SplineBasis", "KnobBasis", "second_difference_penalty"]


def second_difference_penalty(size: int) -> np.ndarray:
    """``D^T D`` for the second-difference matrix ``D`` ``(size - 2, size)``; zeros if ``size < 3``.

    Shape: ``(size, size)``.
    """
    if size < 3:
        return np.zeros((size, size))
    d = np.diff(np.eye(size), n=2, axis=0)
    return d.T @ d


@dataclass(frozen=True)
class SplineBasis:
    """Clamped B-spline basis in one knob.

    Args:
        low, high: the knob interval the functions live on (the fitted settings' range).
        size: number of basis functions (coefficients), at least 1.
    """
    low: float
    high: float
    size: int

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"spline interval must be finite, got {self.low}..{self.high}")
        if self.size < 1:
            raise ValueError(f"a spline needs at least one basis function, got {self.size}")
        if self.size > 1 and not self.low < self.high:
            raise ValueError(f"spline interval must have low < high, got {self.low}..{self.high}")

    @property
    def degree(self) -> int:
        return min(3, self.size - 1)

    def knots(self) -> np.ndarray:
        """Full clamped knot vector, ``size + degree + 1`` knots."""
        k = self.degree
        interior = np.linspace(self.low, self.high, self.size - k + 1)[1:-1]
        return np.concatenate([[self.low] * (k + 1), interior, [self.high] * (k + 1)])

    def design(self, values, derivative: int = 0) -> np.ndarray:
        """Basis functions (or their ``derivative``-th derivative) at ``values``.

        Values outside ``[low, high]`` are clamped to it; there every derivative is zero.

        Shape: values ``(S,)`` -> ``(S, size)``.
        """
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if self.size == 1:
            return np.full((v.size, 1), 1.0 if derivative == 0 else 0.0)
        inside = (v >= self.low) & (v <= self.high)
        q = np.clip(v, self.low, self.high)
        spline = BSpline(self.knots(), np.eye(self.size), self.degree, extrapolate=False)
        out = spline(q, nu=derivative) if derivative else spline(q)
        out = np.nan_to_num(np.asarray(out, dtype=np.float64))
        if derivative:
            out[~inside] = 0.0
        return out

    def penalty(self) -> np.ndarray:
        return second_difference_penalty(self.size)

    def to_record(self) -> dict:
        return {"low": float(self.low), "high": float(self.high), "size": int(self.size)}

    @classmethod
    def from_record(cls, record: dict) -> "SplineBasis":
        return cls(float(record["low"]), float(record["high"]), int(record["size"]))


@dataclass(frozen=True)
class KnobBasis:
    """Additive spline basis over named knobs.

    Args:
        names: knob names, in the order of a knob vector's entries.
        splines: one :class:`SplineBasis` per knob.
    """
    names: tuple[str, ...]
    splines: tuple[SplineBasis, ...]

    def __post_init__(self):
        if not self.names or len(self.names) != len(self.splines):
            raise ValueError("a knob basis needs one spline per knob name")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate knob names: {self.names}")

    @classmethod
    def uniform(cls, names, knob_values, size: int) -> "KnobBasis":
        """Each knob's spline spans the range of ``knob_values`` ``(S, d)`` with ``size`` functions
        (fewer where a knob takes fewer distinct values: a spline with more functions than
        distinct values is not determined by the data)."""
        kv = np.asarray(knob_values, dtype=np.float64).reshape(len(knob_values), -1)
        splines = []
        for j in range(kv.shape[1]):
            distinct = len(np.unique(kv[:, j]))
            lo, hi = float(kv[:, j].min()), float(kv[:, j].max())
            splines.append(SplineBasis(lo, hi, max(1, min(size, distinct))))
        return cls(tuple(names), tuple(splines))

    @property
    def size(self) -> int:
        return self.splines[0].size + sum(s.size - 1 for s in self.splines[1:])

    def _blocks(self):
        """(knob index, spline, first column kept) for each knob."""
        return [(j, s, 0 if j == 0 else 1) for j, s in enumerate(self.splines)]

    def design(self, knobs, derivative: tuple[int, ...] | None = None) -> np.ndarray:
        """Basis rows at knob vectors ``knobs`` ``(S, d)`` (a 1-D array is ``(S,)`` of one knob).

        ``derivative``: order of the derivative in each knob (additive: a mixed one is zero).

        Shape: ``(S, d)`` -> ``(S, size)``.
        """
        kv = np.asarray(knobs, dtype=np.float64)
        kv = kv.reshape(-1, 1) if kv.ndim <= 1 else kv
        if kv.shape[1] != len(self.names):
            raise ValueError(f"knob vectors have {kv.shape[1]} entries, the basis has {len(self.names)} knobs")
        orders = tuple(derivative) if derivative is not None else (0,) * len(self.names)
        cols = []
        for j, spline, first in self._blocks():
            block = spline.design(kv[:, j], orders[j])[:, first:]
            # a term in knob j carries no derivative in the other knobs
            if any(o for i, o in enumerate(orders) if i != j):
                block = np.zeros_like(block)
            cols.append(block)
        return np.concatenate(cols, axis=1)

    def penalty(self) -> np.ndarray:
        """Block-diagonal second-difference penalty; a dropped first coefficient counts as 0.

        Shape: ``(size, size)``.
        """
        out = np.zeros((self.size, self.size))
        at = 0
        for _, spline, first in self._blocks():
            p = spline.penalty()[first:, first:]
            n = p.shape[0]
            out[at:at + n, at:at + n] = p
            at += n
        return out

    def first_differences(self) -> np.ndarray:
        """Differences of neighbouring coefficients within each knob's block, in knob order
        (a dropped first coefficient counts as 0). A curve whose coefficients all rise along
        these rows rises in every knob (B-splines: monotone coefficients, monotone curve).

        Shape: ``(rows, size)``.
        """
        rows = []
        at = 0
        for _, spline, first in self._blocks():
            d = np.diff(np.eye(spline.size), axis=0)[:, first:]
            block = np.zeros((d.shape[0], self.size))
            block[:, at:at + d.shape[1]] = d
            rows.append(block)
            at += d.shape[1]
        return np.concatenate(rows, axis=0)

    def to_record(self) -> dict:
        return {"kind": "additive_bspline",
                "knobs": [{"name": n, **s.to_record()} for n, s in zip(self.names, self.splines)]}

    @classmethod
    def from_record(cls, record: dict) -> "KnobBasis":
        if record.get("kind") != "additive_bspline":
            raise ValueError(f"unknown basis kind {record.get('kind')!r}")
        knobs = record["knobs"]
        return cls(tuple(str(k["name"]) for k in knobs), tuple(SplineBasis.from_record(k) for k in knobs))
