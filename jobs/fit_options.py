"""Turning the ``compressor`` and ``optimiser`` config sections into fit options."""
from __future__ import annotations

import torch

from common.errors import UserError
from dsp.fitting.ff5 import HESSIAN_METHODS, FitOptions
from dsp.fitting.newton import NewtonOptions
from dsp.models.parameters import PARAM_NAMES, Ranges

__all__ = ["fit_options", "initial_params", "resolve_device", "compressor_name", "graybox_options"]


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
    options = FitOptions(ranges=ranges, hessian=str(o.hessian), newton=newton, atol_esr=float(o.atol_esr),
                         device=resolve_device(cfg.get("device", "cpu")))
    return graybox_options(cfg.compressor, options) if compressor_name(cfg) == "graybox" else options


def compressor_name(cfg) -> str:
    """``compressor.name`` (ff5 when absent: configs from before the config group)."""
    name = str(cfg.compressor.get("name", "ff5"))
    if name not in ("ff5", "graybox"):
        raise UserError(f"compressor must be ff5 or graybox, got {name!r}")
    return name


def graybox_options(section, options: FitOptions):
    """:class:`dsp.fitting.graybox.GrayboxFitOptions` from the ``compressor`` section of ``compressor=graybox``."""
    from dsp.fitting.graybox import GrayboxFitOptions
    from dsp.models.graybox import BLOCK_NAMES, BlockRanges
    try:
        ranges = section.get("ranges") or {}
        blocks = BlockRanges.from_dict({k: tuple(map(float, ranges[k])) for k in BLOCK_NAMES if k in ranges})
        start = {k: float(section.start[k]) for k in BLOCK_NAMES}
        blocks.check(start, where="compressor.start")
        step = float(section.get("block_max_step", 2.0))
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"compressor (graybox): missing or non-numeric {exc}") from None
    except ValueError as exc:
        raise UserError(f"compressor (graybox): {exc}") from None
    if not step > 0:
        raise UserError("compressor.block_max_step must be positive")
    return GrayboxFitOptions(**options.__dict__, blocks=blocks, start=start, block_max_step=step,
                             joint_autograd=bool(section.get("joint_autograd", False)),
                             blocks_fixed=bool(section.get("blocks_fixed", False)))


def initial_params(cfg, ranges: Ranges) -> dict[str, float]:
    try:
        init = {k: float(cfg.compressor.init[k]) for k in PARAM_NAMES}
        ranges.check(init, where="compressor.init")
    except (KeyError, TypeError) as exc:
        raise UserError(f"compressor.init: missing or non-numeric {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return init
