"""The DSP model classes (``compressor=ff5|graybox|opto``): one registry that names each class's
parameters, checks them and renders them.

A fit record names its class explicitly (its ``compressor`` key); nothing guesses a class
from which keys a dict holds. Parameters travel as :class:`ModelParams`: a plain dict of
physical values that also knows its class, so that rendering them (:func:`render`,
:func:`processor`) needs no second argument.

Adding a class: a :class:`ModelClass` with its parameter names, its physical validity
check and its streaming renderer, passed to :func:`register`; then its fit in
:mod:`dsp.fitting.by_class` and its export in :mod:`deploy.build`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from dsp.models.ff5_streaming import StreamingCompressor
from dsp.models.graybox import BLOCK_NAMES, GRAYBOX_NAMES, BlockRanges
from dsp.models.graybox_streaming import StreamingGraybox
from dsp.models.opto import CORE_NAMES as OPTO_CORE_NAMES
from dsp.models.opto import OPTO_NAMES
from dsp.models.parameters import PARAM_NAMES, Ranges

__all__ = ["ModelClass", "ModelParams", "MODEL_CLASSES", "CLASS_KEY", "register", "model_class", "record_class",
           "params_of", "class_of", "processor", "render"]

CLASS_KEY = "compressor"   # the key of every fit record that names its model class


class ModelParams(dict):
    """Physical parameters of one model class: a dict of floats that knows its class.

    Attributes:
        model_class: the class's name (``ff5``, ``graybox``, ``opto``).
    """

    def __init__(self, model_class: str, values: Mapping[str, float]):
        super().__init__(values)
        self.model_class = model_class

    def __reduce__(self):   # pickles (multiprocessing, torch.save) with its class
        return ModelParams, (self.model_class, dict(self))

    def plain(self) -> dict[str, float]:
        """A plain dict (for YAML and CSV writers)."""
        return dict(self)


@dataclass(frozen=True)
class ModelClass:
    """One DSP model class.

    Attributes:
        name: the value of the records' ``compressor`` key.
        param_names: its physical parameters, in their stored order.
        description: a few words for people.
        valid: ``(params, where) -> None``; ValueError naming ``where`` for a physically
            impossible value (the one check of stored or user parameters).
        streaming: ``(params, sample_rate) -> processor`` with ``.process((C, n)) -> (C, n)``.
    """
    name: str
    param_names: tuple[str, ...]
    description: str
    valid: Callable[[dict, str], None]
    streaming: Callable[[dict, int], object]

    def check(self, params, where: str) -> ModelParams:
        """``params`` as this class's :class:`ModelParams`: every parameter present (no
        other key), numeric, finite and physically possible.

        Raises:
            ValueError: naming ``where`` and the bad entry.
        """
        if not isinstance(params, Mapping):
            raise ValueError(f"{where}: parameters must be a mapping of {', '.join(self.param_names)}")
        missing = [k for k in self.param_names if k not in params]
        if missing:
            raise ValueError(f"{where}: {self.name} parameters lack {', '.join(missing)}")
        extra = sorted(str(k) for k in params if k not in self.param_names)
        if extra:
            raise ValueError(f"{where}: {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not a parameter "
                             f"of {self.name} ({', '.join(self.param_names)})")
        out = {}
        for k in self.param_names:
            value = params[k]
            if isinstance(value, (bool, str)) or value is None:
                raise ValueError(f"{where}: {k} = {value!r} is non-numeric")
            try:
                out[k] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {k} = {value!r} is non-numeric") from None
            if not math.isfinite(out[k]):
                raise ValueError(f"{where}: {k} = {out[k]} is non-finite (NaN or infinite parameter)")
        self.valid(out, where)
        return ModelParams(self.name, out)

    def processor(self, params, sample_rate: int):
        """A stateful block renderer of checked ``params`` at ``sample_rate`` (from rest)."""
        return self.streaming(self.check(params, "parameters"), _sample_rate(sample_rate))

    def render(self, x: np.ndarray, sample_rate: int, params, block: int = 1 << 18) -> np.ndarray:
        """A whole ``(channels, samples)`` or 1-D signal through the model, in blocks."""
        proc = self.processor(params, sample_rate)
        x2 = np.atleast_2d(x)
        parts = [proc.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)] or [x2[:, :0]]
        out = np.concatenate(parts, axis=1)
        return out[0] if np.ndim(x) == 1 else out


def _sample_rate(sample_rate) -> int:
    ok = (not isinstance(sample_rate, bool) and isinstance(sample_rate, (int, float, np.integer, np.floating))
          and math.isfinite(sample_rate) and float(sample_rate).is_integer() and sample_rate > 0)
    if not ok:
        raise ValueError(f"sample rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


# The widest values a stored fit may hold: physically possible, wider than any fit's
# ranges (a fit may have been run with wider ranges than the defaults).
_FF5_LIMITS = Ranges(ratio=(1.0, 1000.0), attack_ms=(1e-3, 1e5), release_ms=(1e-3, 1e6))
_BLOCK_LIMITS = BlockRanges(input_highpass_hz=(1e-3, 1e5), input_shelf_hz=(1.0, 1e6), input_shelf_db=(-60.0, 40.0),
                            tube_drive=(1e-6, 1e3), tube_asymmetry=(-1.0, 1.0), output_highpass_hz=(1e-3, 1e5))


def _ff5_valid(params: dict, where: str) -> None:
    _FF5_LIMITS.check(params, where=where)


def _graybox_valid(params: dict, where: str) -> None:
    _FF5_LIMITS.check(params, where=where)
    _BLOCK_LIMITS.check(params, where=where)


MODEL_CLASSES: dict[str, ModelClass] = {}


def register(cls: ModelClass) -> ModelClass:
    MODEL_CLASSES[cls.name] = cls
    return cls


register(ModelClass("ff5", PARAM_NAMES, "the 5-parameter feed-forward compressor", _ff5_valid,
                    StreamingCompressor))
register(ModelClass("graybox", GRAYBOX_NAMES, "the gray-box of the whole unit (transformers and tube stage "
                    "around the compressor)", _graybox_valid, StreamingGraybox))
assert MODEL_CLASSES["graybox"].param_names[len(PARAM_NAMES):] == BLOCK_NAMES


# The optical cell (dsp.models.opto): physically possible values, wider than the fit's
# ranges (cfg/compressor/opto.yaml); the blocks as the gray-box's.
_OPTO_LIMITS = {"ratio": (1.0, 1000.0), "attack_ms": (1e-3, 1e5), "release_ms": (1e-3, 1e6),
                "release_slow_ms": (1e-3, 1e7), "slow_fraction": (0.0, 1.0), "memory_ms": (1e-3, 1e7),
                "memory_depth": (1.0, 1e12), "sidechain_shelf_hz": (1e-3, 1e6), "sidechain_shelf_db": (-60.0, 60.0),
                "input_mix": (0.0, 1e3), "threshold_db": (-400.0, 400.0), "make_up_db": (-400.0, 400.0)}


def _opto_valid(params: dict, where: str) -> None:
    for k, (lo, hi) in _OPTO_LIMITS.items():
        v = params[k]
        inside = lo < v <= hi if k == "ratio" else lo <= v <= hi   # the cell's exponent ratio - 1 > 0
        if not inside:
            raise ValueError(f"{where}: {k} = {v:g} is outside {lo:g}..{hi:g} (opto)")
    _BLOCK_LIMITS.check(params, where=where)


def _opto_streaming(params: dict, sample_rate: int):
    from dsp.models.opto_streaming import StreamingOpto   # numba kernels: compiled on first use
    return StreamingOpto(params, sample_rate)


register(ModelClass("opto", OPTO_NAMES, "the optical-cell (T4) model inside the gray-box's blocks (feedback "
                    "sidechain, two-stage release with memory, power-law cell)", _opto_valid, _opto_streaming))


def model_class(name) -> ModelClass:
    """The registered class ``name``; ValueError naming the known ones otherwise."""
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {name!r} (compressor must be one of {', '.join(MODEL_CLASSES)})")
    return MODEL_CLASSES[name]


def record_class(record: Mapping, where: str) -> ModelClass:
    """The class a fit record names in its ``compressor`` key.

    Raises:
        ValueError: naming ``where``: the key is missing or names no known class.
    """
    if CLASS_KEY not in record:
        raise ValueError(f"{where}: names no model class (a '{CLASS_KEY}:' entry, one of "
                         f"{', '.join(MODEL_CLASSES)})")
    try:
        return model_class(record[CLASS_KEY])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def params_of(name: str, values: Mapping, where: str = "parameters") -> ModelParams:
    """``values`` checked as class ``name``'s parameters."""
    return model_class(name).check(values, where)


def class_of(params: Mapping, compressor: str | None = None) -> ModelClass:
    """The class of ``params``: a :class:`ModelParams`' own, else ``compressor``, else the one
    class whose parameter names are exactly the dict's keys (a plain dict a user wrote).

    Raises:
        ValueError: a plain dict whose keys are no class's parameter set, or a
            ``compressor`` that disagrees with the parameters' own class.
    """
    own = getattr(params, "model_class", None)
    if own is not None and compressor is not None and own != compressor:
        raise ValueError(f"parameters of {own} given with compressor={compressor!r}")
    if own is not None or compressor is not None:
        return model_class(own or compressor)
    keys = set(params)
    for cls in MODEL_CLASSES.values():
        if keys == set(cls.param_names):
            return cls
    raise ValueError("parameters are no model class's set: give compressor=" + "|".join(MODEL_CLASSES) +
                     f" (ff5 takes {', '.join(PARAM_NAMES)}; graybox adds {', '.join(BLOCK_NAMES)}; opto adds "
                     f"{', '.join(OPTO_CORE_NAMES[len(PARAM_NAMES):])} and the blocks)")


def processor(params: Mapping, sample_rate: int, compressor: str | None = None):
    """A stateful block renderer for ``params`` (their class: :func:`class_of`)."""
    return class_of(params, compressor).processor(params, sample_rate)


def render(x: np.ndarray, sample_rate: int, params: Mapping, compressor: str | None = None,
           block: int = 1 << 18) -> np.ndarray:
    """Render a whole ``(channels, samples)`` or 1-D signal with ``params`` (their class)."""
    return class_of(params, compressor).render(x, sample_rate, params, block)
