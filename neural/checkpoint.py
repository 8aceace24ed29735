"""Neural checkpoints (``.pt``): what a trained model is, saved atomically, loaded with checks.

A checkpoint is self-contained: the model spec (backbone, head, conditioning, sizes),
the state dict, the variant, the parameter map the model was trained with
(``param_map``: :meth:`dsp.knobs.parammap.ParamMap.to_record`, the DSP parameters at every
fitted setting, which the hybrids need at render time and which names the device's
knobs), the settings it was trained on and held out, the sample rate it was trained
at (``sample_rate``; a checkpoint without one was trained at 44.1 kHz), the run's
config and its metrics. ``last.pt`` holds the same plus a ``resume`` entry (optimiser and loop state).

Format 3 is the one written. Formats 1 (LA-2A models: a ``knobmap`` table) and 2
(models of a device with arbitrary knobs: a ``manifest`` knob table and the
conditionings ``manifest_fitted`` / ``manifest_knobs``) are still read.

Everything is stored as plain Python types and tensors and read back with
``torch.load(weights_only=True)``: loading a checkpoint runs no pickled code.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from typing import Optional

import numpy as np
import torch
from torch import nn

from audio.devices import LA2A, Device
from common.atomic import atomic_path
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable
from dsp.knobs.parammap import ParamMap
from dsp.storage.open_fit import param_map_from_record
from neural.conditioning import CONDITIONING_NAMES, DEFAULT_SAMPLE_RATE, conditioning_size
from neural.audio_path import audio_path_options
from neural.heads import HEADS, build_head

__all__ = ["KIND", "FORMAT", "model_spec", "fit_cond_norm", "CondNormalised", "build_model", "save_checkpoint",
           "load_checkpoint", "looks_like_checkpoint"]

KIND = "neural-leveller"
FORMAT = 3           # the format written and the newest read
_REQUIRED = ("kind", "format", "model", "variant", "state_dict")   # sample_rate: DEFAULT_SAMPLE_RATE if absent
_OLD_CONDITIONINGS = {"manifest_fitted": "fitted+knobs", "manifest_knobs": "knobs"}   # format 2


def model_spec(backbone: str, head: str, conditioning: str, hyperparameters: dict,
               cond_norm: Optional[dict] = None, device: Device = LA2A, audio_path: Optional[dict] = None) -> dict:
    """The plain description a model is rebuilt from.

    ``cond_norm``: ``{"mean": [...], "std": [...], "clip": c}`` standardising the
    conditioning vector (see :class:`CondNormalised`), or None for none.
    ``device``: whose settings the conditioning describes (its size depends on the knobs).
    ``audio_path``: the head's audio-rate path (:func:`neural.audio_path.audio_path_options`);
    recorded with its defaults filled in, and only when on, so a spec without the key (an
    older checkpoint) is a model without the path.
    """
    spec = {"backbone": str(backbone), "head": str(head), "conditioning": str(conditioning),
            "cond_dim": conditioning_size(conditioning, device), "hyperparameters": dict(hyperparameters)}
    path = audio_path_options(audio_path)
    if path is not None:
        spec["audio_path"] = path
    if cond_norm is not None:
        spec["cond_norm"] = {"mean": [float(v) for v in cond_norm["mean"]],
                             "std": [float(v) for v in cond_norm["std"]], "clip": float(cond_norm["clip"])}
    return spec


def fit_cond_norm(vectors, clip: float = 3.0) -> dict:
    """Mean and spread of the training settings' conditioning vectors (a constant feature keeps std 1)."""
    v = np.asarray(vectors, dtype=np.float64)
    std = v.std(axis=0)
    return {"mean": v.mean(axis=0).tolist(), "std": np.where(std > 1e-6, std, 1.0).tolist(), "clip": clip}


class CondNormalised(nn.Module):
    """A head whose conditioning vector is standardised first: ``clip((c - mean) / std, +-clip)``.

    The fitted parameters differ little between settings in their natural units (a few
    dB of threshold, a fraction of a decade of release); standardised over the trained
    settings they span about unit range, so FiLM tells the settings apart from the
    first step. The clip keeps an outlying fit at an unseen setting (a ratio of 20:1
    where its neighbours have 3:1) inside the range the model was trained on.
    Same interface as the wrapped head (``forward``, ``process``, ``initial_state``).
    """

    def __init__(self, head: nn.Module, mean, std, clip: float):
        super().__init__()
        self.head = head
        self.uses_dsp = getattr(head, "uses_dsp", True)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.clip = float(clip)

    def _cond(self, cond):
        return None if cond is None else ((cond - self.mean) / self.std).clamp(-self.clip, self.clip)

    def initial_state(self, batch_size: int):
        return self.head.initial_state(batch_size)

    def process(self, x, y_dsp, g_dsp, cond, state=None):
        return self.head.process(x, y_dsp, g_dsp, self._cond(cond), state)

    def forward(self, x, y_dsp=None, g_dsp=None, cond=None):
        return self.head(x, y_dsp, g_dsp, self._cond(cond))


def build_model(spec: dict) -> torch.nn.Module:
    """A fresh model (output layer at zero) from a :func:`model_spec` dict.

    Raises:
        ValueError: unknown backbone, head, conditioning or hyperparameter.
    """
    if spec.get("conditioning") not in CONDITIONING_NAMES:
        raise ValueError(f"unknown conditioning {spec.get('conditioning')!r}; choose from {sorted(CONDITIONING_NAMES)}")
    if spec.get("head") not in HEADS:
        raise ValueError(f"unknown head {spec.get('head')!r}; choose from {sorted(HEADS)}")
    try:
        head = build_head(spec["head"], spec["backbone"], int(spec["cond_dim"]), audio_path=spec.get("audio_path"),
                          **spec["hyperparameters"])
    except TypeError as exc:  # an unknown keyword for the backbone
        raise ValueError(f"bad hyperparameters for {spec['backbone']}: {exc}") from None
    norm = spec.get("cond_norm")
    if norm is None:
        return head
    if len(norm["mean"]) != int(spec["cond_dim"]) or len(norm["std"]) != int(spec["cond_dim"]):
        raise ValueError("cond_norm does not match the conditioning size")
    return CondNormalised(head, norm["mean"], norm["std"], norm["clip"])


def save_checkpoint(path: str | Path, record: dict) -> None:
    """Write ``record`` (see the module doc; ``param_map`` a record) with ``torch.save``, atomically."""
    if "param_map" not in record:
        raise ValueError("a neural checkpoint record needs its param_map")
    data = {"kind": KIND, "format": FORMAT, **record}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def looks_like_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a file in torch's zip format (a ``.pt`` whatever its name)."""
    p = Path(path)
    return p.is_file() and zipfile.is_zipfile(p)


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[dict, torch.nn.Module]:
    """Read, validate and rebuild: returns ``(record, model)`` with the weights loaded.

    Raises:
        UserError: missing file, not a torch checkpoint, not a neural checkpoint,
            missing entries, weights that do not fit the described model.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: checkpoint not found")
    if p.is_dir():
        raise UserError(f"{p}: is a folder; expected a neural checkpoint (.pt)")
    try:
        data = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UserError(f"{p}: not a readable torch checkpoint ({reason})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{p}: not a neural compressor checkpoint (kind {kind!r}, expected {KIND!r})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise UserError(f"{p}: checkpoint lacks {', '.join(missing)}")
    if int(data["format"]) > FORMAT:
        raise UserError(f"{p}: checkpoint format {data['format']} is newer than this tool ({FORMAT})")
    data["sample_rate"] = _sample_rate(p, data.get("sample_rate", DEFAULT_SAMPLE_RATE))
    pm = _param_map(p, data)
    try:
        model = build_model(data["model"])
        model.load_state_dict(data["state_dict"])
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise UserError(f"{p}: the weights do not fit the model described in the checkpoint ({reason})") from None
    if not all(torch.isfinite(t).all() for t in model.state_dict().values()):
        raise UserError(f"{p}: checkpoint holds NaN or infinite weights")
    if int(data["model"].get("cond_dim", -1)) != _cond_size(data["model"], pm.device):
        raise UserError(f"{p}: the model's conditioning does not suit the knobs {', '.join(pm.knobs)}")
    data["param_map_obj"] = pm
    model.eval()
    return data, model


def _sample_rate(p: Path, value) -> int:
    """The rate the model was trained at: a positive whole number of Hz."""
    try:
        rate = int(value)
    except (TypeError, ValueError):
        rate = 0
    if rate <= 0 or rate != value:
        raise UserError(f"{p}: checkpoint holds an invalid sample_rate {value!r}")
    return rate


def _cond_size(spec: dict, device: Device):
    try:
        return conditioning_size(spec.get("conditioning"), device)
    except ValueError:
        return None


def _param_map(p: Path, data: dict) -> ParamMap:
    """The checkpoint's parameter map, of any format; renames format 2's conditionings."""
    fmt = int(data["format"])
    try:
        if fmt >= 3:
            pm = param_map_from_record(data["param_map"], f"{p}: its parameter map")
        elif data.get("manifest"):   # formats 1 and 2 predate the gray-box: their fits are ff5
            pm = KnobTable.from_record({"compressor": "ff5", **data["manifest"]})
            old = data["model"].get("conditioning")
            if old not in _OLD_CONDITIONINGS:
                raise UserError(f"{p}: checkpoint holds a knob table but an LA-2A conditioning")
            data["model"] = {**data["model"], "conditioning": _OLD_CONDITIONINGS[old]}
        else:
            if data["model"].get("conditioning") in _OLD_CONDITIONINGS:
                raise UserError(f"{p}: checkpoint of a manifest model lacks its knob table")
            pm = KnobMap.from_record({"compressor": "ff5", "modes": data["knobmap"]})
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(f"{p}: checkpoint holds an invalid knob map") from None
    if not pm.finite():
        raise UserError(f"{p}: checkpoint knob map holds non-finite values")
    return pm
