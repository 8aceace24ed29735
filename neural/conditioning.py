"""Conditioning: what FiLM sees, and the DSP features a hybrid reads, shared by training and inference.

A conditioning vector is the fitted DSP parameters normalised to about unit range
(``threshold / 40, ln(ratio), log10(attack ms), log10(release ms) - 2, make-up / 10``,
if the conditioning takes them) followed by knob features
(:meth:`audio.devices.Device.feature`) in the order the device's conditioning names them
(:attr:`audio.devices.Device.conditionings`):

- LA-2A ``fitted`` (hybrid): the parameters and the switch (0 compress, 1 limit);
  ``knobs`` (black box): ``PR / 100`` and the switch; ``fitted+knobs`` (hybrid, the
  default): the parameters, the switch, then ``PR / 100``.
- A device with arbitrary knobs: ``fitted+knobs`` (the parameters, then the K raw knob
  values) and ``knobs`` (the K values), standardised over the trained settings
  (``fit_cond_norm``).

One function (:func:`conditioning`) serves training and inference, so a checkpoint
renders exactly as it was trained.
"""
from __future__ import annotations

import math

import numpy as np

from audio.devices import LA2A, Device
from common.errors import UserError
from dsp.models.classes import ModelParams, processor
from dsp.models.ff5_streaming import StreamingCompressor

__all__ = ["NEURAL_DSP_CLASSES", "check_dsp_class", "DEFAULT_SAMPLE_RATE", "SAMPLE_RATE", "CONDITIONING_NAMES", "conditioning", "conditioning_size",
           "dsp_gain_db", "gain_db", "dsp_features", "RENDERED_CLASSES"]

DEFAULT_SAMPLE_RATE = 44100
SAMPLE_RATE = DEFAULT_SAMPLE_RATE   # the former name (every model used to run at this rate)
# every conditioning a device may declare (a checkpoint names one)
CONDITIONING_NAMES = ("fitted", "knobs", "fitted+knobs")


def _parameter_features(params: dict) -> list[float]:
    """The five physical DSP parameters, each brought to about unit range."""
    return [float(params["threshold_db"]) / 40.0, math.log(float(params["ratio"])),
            math.log10(float(params["attack_ms"])), math.log10(float(params["release_ms"])) - 2.0,
            float(params["make_up_db"]) / 10.0]


def conditioning(name: str, params: dict, setting: dict, device: Device = LA2A) -> np.ndarray:
    """The conditioning vector ``name`` at ``setting`` with the DSP ``params`` fitted there.

    Returns:
        float32 ``(C,)``, ``C = conditioning_size(name, device)``.
    """
    with_params, knobs = _declared(name, device)
    values = (_parameter_features(params) if with_params else []) + [device.feature(k, setting[k]) for k in knobs]
    return np.asarray(values, dtype=np.float32)


def conditioning_size(name: str, device: Device = LA2A) -> int:
    _declared(name, device)
    return device.conditioning_size(name)


def _declared(name: str, device: Device) -> tuple[bool, tuple]:
    if name not in device.conditionings:
        raise ValueError(f"unknown conditioning {name!r}; choose from {sorted(device.conditionings)}")
    return device.conditionings[name]


# the DSP model classes a hybrid (or a black box's DSP-side corpus) can be trained on: the
# hybrids take the ff5 compressor's gain, or a gray-box's or an opto fit's output and gain
NEURAL_DSP_CLASSES = ("ff5", "graybox", "opto")
# the classes whose output is not ``x * gain`` (their blocks shape it): a hybrid takes their
# rendered output and their compressor's (or cell's) gain from one pass
RENDERED_CLASSES = ("graybox", "opto")


def check_dsp_class(name: str, where: str = "") -> None:
    """UserError unless neural models can be trained on DSP fits of class ``name``."""
    if name not in NEURAL_DSP_CLASSES:
        raise UserError(f"{where + ': ' if where else ''}neural models on compressor={name} fits are not supported "
                        f"(hybrids take the gain of {', '.join(NEURAL_DSP_CLASSES)})")


def dsp_gain_db(comp: StreamingCompressor, block: np.ndarray, make_up_db: float) -> np.ndarray:
    """The DSP compressor's gain in dB, make-up included, for one block (advances ``comp``).

    Shape: block ``(channels, n)`` or ``(n,)`` -> ``(n,)`` float32 (linked detection).
    """
    return gain_db(comp.gain(block), make_up_db)


def gain_db(gain: np.ndarray, make_up_db: float) -> np.ndarray:
    """A DSP model's linear gain (before make-up) as the hybrids' feature: dB with the make-up, float32."""
    return (20.0 * np.log10(np.maximum(gain, 1e-12)) + make_up_db).astype(np.float32)


def dsp_features(x: np.ndarray, params: ModelParams, sample_rate: int = DEFAULT_SAMPLE_RATE
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """A hybrid's DSP features of a mono ``(T,)`` take: the gain in dB, make-up included
    (float32 ``(T,)``), and the DSP output (float32 ``(T,)``; None for ff5, whose output
    is ``x * 10^(g_db / 20)`` and is not stored).

    A gray-box or opto fit renders once: its output and its compressor's (the cell's) gain
    come from the same pass (``process_and_gain``), as in :class:`neural.inference.BlockProcessor`.
    """
    make_up_db = float(params["make_up_db"])
    if params.model_class not in RENDERED_CLASSES:
        return dsp_gain_db(StreamingCompressor(params, sample_rate), np.atleast_2d(x), make_up_db), None
    y, gain = processor(params, sample_rate).process_and_gain(np.asarray(x, dtype=np.float64)[None, :])
    return gain_db(gain, make_up_db), y[0].astype(np.float32)
