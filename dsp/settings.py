"""Turning the ``compressor`` and ``optimiser`` config sections into fit options."""
from __future__ import annotations

import torch

from common.errors import UserError
from dsp.fit import HESSIAN_METHODS, FitOptions
from dsp.newton import NewtonOptions
from dsp.params import PARAM_NAMES, Ranges

__all__ = ["fit_options", "initial_params", "resolve_device"]


def resolve_device(name: str) -> str:
    name = str(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu, cuda or auto, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available")
    return name


def fit_options(cfg) -> FitOptions:
    try:
        r = cfg.compressor.ranges
        ranges = Ranges(ratio=tuple(map(float, r.ratio)), attack_ms=tuple(map(float, r.attack_ms)),
                        release_ms=tuple(map(float, r.release_ms)))
    except (ValueError, TypeError) as exc:
        raise UserError(f"compressor.ranges: {exc}") from None
    o = cfg.optimiser
    if str(o.hessian) not in HESSIAN_METHODS:
        raise UserError(f"optimiser.hessian must be one of {', '.join(HESSIAN_METHODS)}, got {o.hessian!r}")
    if int(o.max_iterations) < 1:
        raise UserError("optimiser.max_iterations must be at least 1")
    newton = NewtonOptions(max_iterations=int(o.max_iterations), rtol=float(o.rtol), ftol=float(o.ftol),
                           gtol=float(o.gtol))
    return FitOptions(ranges=ranges, hessian=str(o.hessian), newton=newton, atol_esr=float(o.atol_esr),
                      device=resolve_device(cfg.get("device", "cpu")))


def initial_params(cfg, ranges: Ranges) -> dict[str, float]:
    try:
        init = {k: float(cfg.compressor.init[k]) for k in PARAM_NAMES}
        ranges.check(init, where="compressor.init")
    except (KeyError, TypeError) as exc:
        raise UserError(f"compressor.init: missing or non-numeric {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return init
