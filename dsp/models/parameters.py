"""The one place where physical compressor parameters meet the solver's logits.

Physical units live at every boundary: threshold dB, ratio, attack ms, release ms,
make-up dB. Inside the solver each parameter is an unconstrained value ``z``:

- threshold_db = z0, make_up_db = z4 (identity: dB are already unbounded);
- ratio = r_lo + (r_hi - r_lo) * sigmoid(z1);
- attack and release are mapped by a sigmoid onto the smoothing *coefficient*
  range of their ms range (as the published method does), coefficient
  ``1 - exp(-2200 / (ms * sr))``; a slow time (large ms) is a small coefficient.

The compressor is computed from the "natural" vector ``(threshold_db, ratio,
attack_coef, release_coef, make_up_db)``. :meth:`Parameterisation.natural_derivs`
gives the elementwise first and second derivatives of that map, so a derivative
kernel that works in natural coordinates can be chained back to ``z`` exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["PARAM_NAMES", "DEFAULT_INIT", "Ranges", "check_levels_db", "Parameterisation", "ms_to_coef", "coef_to_ms"]

PARAM_NAMES = ("threshold_db", "ratio", "attack_ms", "release_ms", "make_up_db")

# The published start: -36 dB, 4:1, 1 ms, 200 ms, 0 dB (make-up then level-matched).
DEFAULT_INIT = {"threshold_db": -36.0, "ratio": 4.0, "attack_ms": 1.0,
                "release_ms": 200.0, "make_up_db": 0.0}


def ms_to_coef(ms: float, sample_rate: float) -> float:
    """torchcomp's smoothing coefficient for a time constant in ms."""
    return 1.0 - math.exp(-2200.0 / (ms * sample_rate))


def coef_to_ms(coef: float, sample_rate: float) -> float:
    return -2200.0 / (sample_rate * math.log1p(-coef))


@dataclass(frozen=True)
class Ranges:
    ratio: tuple[float, float] = (1.0, 20.0)
    attack_ms: tuple[float, float] = (0.1, 100.0)
    release_ms: tuple[float, float] = (10.0, 1000.0)

    def __post_init__(self):
        for name in ("ratio", "attack_ms", "release_ms"):
            lo, hi = getattr(self, name)
            if not (0 < lo < hi and math.isfinite(hi)):
                raise ValueError(f"range for {name} must satisfy 0 < low < high, got {lo}..{hi}")
        if self.ratio[0] < 1:
            raise ValueError("ratio range must start at 1 or above")

    def check(self, params: dict[str, float], where: str = "parameters") -> None:
        """Raise ValueError if physical ``params`` are outside the ranges."""
        for name in ("ratio", "attack_ms", "release_ms"):
            lo, hi = getattr(self, name)
            v = float(params[name])
            if not (lo <= v <= hi):
                raise ValueError(f"{where}: {name} = {v:g} is outside {lo:g}..{hi:g}")
        check_levels_db(params, where)


def check_levels_db(params: dict[str, float], where: str = "parameters") -> None:
    """Raise ValueError unless the threshold and the make-up are finite and within -200..200 dB
    (no fit range bounds them: any level is a possible answer)."""
    for name in ("threshold_db", "make_up_db"):
        v = float(params[name])
        if not (math.isfinite(v) and -200.0 <= v <= 200.0):
            raise ValueError(f"{where}: {name} = {v:g} is outside -200..200 dB")


class Parameterisation:
    """Maps unconstrained ``z`` (shape ``(..., 5)``) to compressor parameters.

    Args:
        sample_rate: rate of the audio being fitted (the coefficients depend on it).
        ranges: bounds of ratio, attack and release.
    """
    names = PARAM_NAMES          # the solver's coordinates, in order (as the other classes' maps say)
    size = len(PARAM_NAMES)

    def __init__(self, sample_rate: float, ranges: Ranges = Ranges()):
        self.sample_rate = float(sample_rate)
        self.ranges = ranges
        self._ratio = ranges.ratio
        # coefficient interval: slow end (long ms) is the low coefficient
        self._at = (ms_to_coef(ranges.attack_ms[1], sample_rate), ms_to_coef(ranges.attack_ms[0], sample_rate))
        self._rt = (ms_to_coef(ranges.release_ms[1], sample_rate), ms_to_coef(ranges.release_ms[0], sample_rate))

    # --- natural coordinates (what the compressor consumes) -------------------------
    def natural(self, z: torch.Tensor) -> torch.Tensor:
        """``(threshold_db, ratio, attack_coef, release_coef, make_up_db)`` from ``z``.

        Shape: z ``(..., 5)`` -> ``(..., 5)``. Differentiable.
        """
        s = torch.sigmoid(z[..., 1:4])
        lo = z.new_tensor([self._ratio[0], self._at[0], self._rt[0]])
        hi = z.new_tensor([self._ratio[1], self._at[1], self._rt[1]])
        mid = lo + (hi - lo) * s
        return torch.cat([z[..., :1], mid, z[..., 4:]], dim=-1)

    def natural_derivs(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Natural values and their elementwise first and second derivatives in ``z``."""
        v = self.natural(z)
        s = torch.sigmoid(z)
        width = z.new_tensor([1.0, self._ratio[1] - self._ratio[0], self._at[1] - self._at[0],
                              self._rt[1] - self._rt[0], 1.0])
        sig = z.new_tensor([0.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.bool)
        d1 = torch.where(sig, width * s * (1 - s), torch.ones_like(z))
        d2 = torch.where(sig, width * s * (1 - s) * (1 - 2 * s), torch.zeros_like(z))
        return v, d1, d2

    # --- physical units (what the user sees) -----------------------------------------
    def to_physical(self, z: torch.Tensor) -> dict[str, float]:
        v = self.natural(z.detach().to(torch.float64)).tolist()
        return {
            "threshold_db": v[0],
            "ratio": v[1],
            "attack_ms": coef_to_ms(v[2], self.sample_rate),
            "release_ms": coef_to_ms(v[3], self.sample_rate),
            "make_up_db": v[4],
        }

    def from_physical(self, params: dict[str, float], dtype=torch.float64) -> torch.Tensor:
        """Inverse map; values at or beyond a bound are pulled just inside it."""
        def logit(v: float, lo: float, hi: float) -> float:
            u = (v - lo) / (hi - lo)
            u = min(max(u, 1e-9), 1 - 1e-9)
            return math.log(u / (1 - u))

        at = ms_to_coef(float(params["attack_ms"]), self.sample_rate)
        rt = ms_to_coef(float(params["release_ms"]), self.sample_rate)
        return torch.tensor([
            float(params["threshold_db"]),
            logit(float(params["ratio"]), *self._ratio),
            logit(at, *self._at),
            logit(rt, *self._rt),
            float(params["make_up_db"]),
        ], dtype=dtype)
