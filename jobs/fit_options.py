"""Turning the ``compressor`` and ``optimiser`` config sections into fit options."""
from __future__ import annotations

import dataclasses

import torch

from common.errors import UserError
from dsp.fitting.ff5 import HESSIAN_METHODS, FitOptions
from dsp.fitting.newton import NewtonOptions
from dsp.models.parameters import PARAM_NAMES, Ranges

__all__ = ["fit_options", "initial_params", "resolve_device", "compressor_name", "graybox_options",
           "opto_options"]

COMPRESSORS = ("ff5", "graybox", "opto")


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
        ranges = Ranges() if compressor_name(cfg) == "opto" else \
            Ranges(ratio=tuple(map(float, r.ratio)), attack_ms=tuple(map(float, r.attack_ms)),
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
    name = compressor_name(cfg)
    if name == "opto":
        return opto_options(cfg.compressor, options)
    return graybox_options(cfg.compressor, options) if name == "graybox" else options


def compressor_name(cfg) -> str:
    """``compressor.name`` (ff5 when absent: configs from before the config group)."""
    name = str(cfg.compressor.get("name", "ff5"))
    if name not in COMPRESSORS:
        raise UserError(f"compressor must be one of {', '.join(COMPRESSORS)}, got {name!r}")
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


def opto_options(section, options: FitOptions):
    """:class:`dsp.fitting.opto.OptoFitOptions` from the ``compressor`` section of ``compressor=opto``."""
    from dsp.fitting.opto import OptoFitOptions
    from dsp.models.graybox import BLOCK_NAMES, BlockRanges
    from dsp.models.opto import CORE_NAMES, OptoRanges
    try:
        ranges = section.get("ranges") or {}
        plain = {str(k): tuple(map(float, v)) for k, v in ranges.items()}
        cell, blocks = OptoRanges.from_dict(plain), BlockRanges.from_dict(plain)
        start = {k: float(section.init[k]) for k in CORE_NAMES}
        cell.check(start, where="compressor.init")
        block_start = {k: float(section.start[k]) for k in BLOCK_NAMES}
        blocks.check(block_start, where="compressor.start")
        steps = float(section.get("cell_max_step", 2.0)), float(section.get("block_max_step", 2.0))
        rounds = int(section.get("rounds", 1))
        mix_modes = tuple(str(m) for m in section.get("mix_modes", ["limit"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"compressor (opto): missing or non-numeric {exc}") from None
    except ValueError as exc:
        raise UserError(f"compressor (opto): {exc}") from None
    if not min(steps) > 0:
        raise UserError("compressor.cell_max_step and block_max_step must be positive")
    if rounds < 1:
        raise UserError("compressor.rounds must be at least 1")
    if section.get("ftol") is not None:   # the class's own stopping rule (cfg/compressor/opto.yaml)
        options = dataclasses.replace(options, newton=dataclasses.replace(options.newton, ftol=float(section.ftol)))
    return OptoFitOptions(**options.__dict__, cell=cell, blocks=blocks, start=start, block_start=block_start,
                          cell_max_step=steps[0], block_max_step=steps[1], rounds=rounds,
                          blocks_fixed=bool(section.get("blocks_fixed", True)), mix_modes=mix_modes,
                          one_unit=bool(section.get("one_unit", False)))


def initial_params(cfg, ranges: Ranges) -> dict[str, float]:
    if compressor_name(cfg) == "opto":   # the cell's start (checked by opto_options)
        from dsp.models.opto import CORE_NAMES
        try:
            return {k: float(cfg.compressor.init[k]) for k in CORE_NAMES}
        except (KeyError, TypeError) as exc:
            raise UserError(f"compressor.init: missing or non-numeric {exc}") from None
    try:
        init = {k: float(cfg.compressor.init[k]) for k in PARAM_NAMES}
        ranges.check(init, where="compressor.init")
    except (KeyError, TypeError) as exc:
        raise UserError(f"compressor.init: missing or non-numeric {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return init
