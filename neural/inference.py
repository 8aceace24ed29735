"""Rendering through a trained neural model: offline or block by block, from one checkpoint.

:class:`NeuralRenderer` needs nothing but the checkpoint: it holds the model spec and
weights, the variant and the knob map the model was trained with, so it rebuilds the
DSP compressor at any (mode, peak reduction) for the hybrids, or the knob vector for
the black box.

- ``renderer.render(x, sample_rate, mode, peak_reduction)``: a 1-D signal, offline.
- ``renderer.block_processor(sample_rate, mode, peak_reduction)``: a stateful callable
  for consecutive ``(channels, n)`` float32 blocks (what :func:`audio.io.process_file`
  and a plug-in host hand over). The offline render runs through the same processor
  with long blocks, and block by block gives the same output (to float rounding).

A model trained on a manifest corpus (a device with arbitrary knobs; ``renderer.knobs``
lists them, None for an LA-2A model) renders at a knob setting instead:
``renderer.render_knobs(x, sample_rate, {"threshold": -20, ...})`` and
``renderer.knob_block_processor(sample_rate, knobs)``. Its checkpoint's knob table
gives the DSP parameters: a trained setting's fit, or the nearest trained setting's
for any other (:class:`dsp.knobtable.KnobTable`); a setting far outside the trained
range is refused.

Several channels: the DSP compressor uses linked detection (the louder channel drives
one gain for all, as :class:`dsp.render.BlockCompressor` does), and the neural model
runs the channels as a batch, each with its own state (its correction follows each
channel's own signal on top of the linked DSP gain).

The models run at 44.1 kHz (the rate they were trained at: their learnt time constants
are in samples); another rate is refused with an error rather than silently rendered
with the wrong timing. Resample the file first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from dsp.render import BlockCompressor
from neural.checkpoint import load_checkpoint
from neural.data import CONDITIONINGS, MODE_INDEX, dsp_gain_db, manifest_conditioning
from neural.heads import count_parameters

__all__ = ["NeuralRenderer", "BlockProcessor", "run_chunked"]

_PIECE = 16384  # samples per model call: bounds the memory of the S6 scan's intermediates


def run_chunked(model, x: torch.Tensor, y_dsp, g_db, cond, state=None, piece: int = _PIECE):
    """``model.process`` over ``x`` in pieces of ``piece`` samples, carrying the state.

    Call under ``torch.inference_mode()`` / ``torch.no_grad()``. Shapes ``(B, T)``;
    returns ``(y, state)``.
    """
    outs = []
    for i in range(0, max(x.shape[1], 1), piece):
        sl = slice(i, i + piece)
        y, state = model.process(x[:, sl], None if y_dsp is None else y_dsp[:, sl],
                                 None if g_db is None else g_db[:, sl], cond, state)
        outs.append(y)
    return torch.cat(outs, 1), state


class BlockProcessor:
    """Stateful renderer of consecutive ``(channels, n)`` blocks at one setting.

    The setting is ``(mode, peak_reduction)`` for an LA-2A model, or ``knobs`` (a dict)
    for a manifest model. The channel count is fixed by the first block. ``reset()``
    returns to silence.
    """

    def __init__(self, renderer: "NeuralRenderer", mode: str | None = None, peak_reduction: float | None = None,
                 knobs: dict | None = None):
        self.renderer = renderer
        if knobs is not None:
            self.params = renderer.knob_params(knobs)
            cond = renderer.knob_conditioning(knobs)
        else:
            self.params = renderer.dsp_params(mode, peak_reduction)
            cond = renderer.conditioning(mode, peak_reduction)
        self.cond = torch.from_numpy(cond)[None, :]
        self.reset()

    def reset(self) -> None:
        self.comp = BlockCompressor(self.params, self.renderer.sample_rate) if self.renderer.uses_dsp else None
        self.state = None
        self.channels = None

    def __call__(self, block: np.ndarray) -> np.ndarray:
        block = np.atleast_2d(np.asarray(block, dtype=np.float32))
        if block.ndim != 2:
            raise ValueError(f"blocks must be (channels, n), got shape {block.shape}")
        if self.channels is None:
            self.channels = block.shape[0]
        elif block.shape[0] != self.channels:
            raise ValueError(f"block has {block.shape[0]} channels, the stream has {self.channels}")
        x = torch.from_numpy(np.ascontiguousarray(block))
        y_dsp = g_db = None
        if self.comp is not None:
            g = dsp_gain_db(self.comp, block, self.params["make_up_db"])
            g_db = torch.from_numpy(g)[None, :].expand(self.channels, -1).contiguous()
            y_dsp = x * torch.pow(10.0, g_db / 20.0)
        cond = self.cond.expand(self.channels, -1)
        with torch.inference_mode():
            y, self.state = run_chunked(self.renderer.model, x, y_dsp, g_db, cond, self.state)
        return y.numpy().astype(np.float32, copy=False)


class NeuralRenderer:
    """A trained neural compressor, loaded from its checkpoint.

    Attributes:
        name: e.g. ``"s6 hybrid"``.
        variant: ``"hybrid"`` or ``"blackbox"``.
        head: the output form (``hybrid_gain``, ``hybrid_add``, ``blackbox``).
        num_parameters: trainable parameters of the model.
        sample_rate: the only rate it renders at (44100).
        record: the checkpoint's other entries (config, metrics, levels).
        knobs: the knob names of a manifest model, None for an LA-2A model.
        table: a manifest model's :class:`dsp.knobtable.KnobTable`, else None.
    """

    def __init__(self, record: dict, model: torch.nn.Module, source: str = "checkpoint"):
        self.record, self.model, self.source = record, model.float().eval(), source
        spec = record["model"]
        self.backbone, self.head, self.conditioning_name = spec["backbone"], spec["head"], spec["conditioning"]
        self.variant = str(record["variant"])
        self.name = f"{self.backbone} {self.variant}"
        self.sample_rate = int(record["sample_rate"])
        self.knobmap = record["knobmap_obj"]
        self.table = record.get("manifest_obj")
        self.knobs = None if self.table is None else list(self.table.knobs)
        self.uses_dsp = bool(getattr(model, "uses_dsp", True))
        self.num_parameters = count_parameters(model)

    @classmethod
    def load(cls, path: str | Path) -> "NeuralRenderer":
        record, model = load_checkpoint(path)
        return cls(record, model, str(path))

    # --- settings -----------------------------------------------------------------
    def _check_setting(self, mode: str, peak_reduction: float) -> None:
        if self.knobs is not None:
            raise UserError(f"{self.source}: a model of a device with the knobs {', '.join(self.knobs)} "
                            "renders at a knob setting, not at a mode and peak reduction")
        if mode not in MODE_INDEX:
            raise UserError(f"unknown mode {mode!r} (use compress or limit)")
        if not 0 <= float(peak_reduction) <= 100:
            raise UserError(f"peak reduction {float(peak_reduction):g} is outside 0..100")
        if self.uses_dsp and mode not in self.knobmap.modes:
            raise UserError(f"{self.source}: the model's knob map has no {mode!r} mode "
                            f"(has {', '.join(self.knobmap.modes)})")

    def dsp_params(self, mode: str, peak_reduction: float) -> dict:
        """The DSP parameters at a setting (knob map: exact at fitted levels, interpolated between)."""
        self._check_setting(mode, peak_reduction)
        if mode not in self.knobmap.modes:  # black box without that mode in its map: unused
            return {}
        return self.knobmap.at(mode, peak_reduction)

    def conditioning(self, mode: str, peak_reduction: float) -> np.ndarray:
        """The model's conditioning vector at a setting. Shape ``(C,)``."""
        params = self.dsp_params(mode, peak_reduction)
        return CONDITIONINGS[self.conditioning_name][1](params, mode, peak_reduction)

    def knob_params(self, knobs: dict) -> dict:
        """A manifest model's DSP parameters at a knob setting (nearest trained setting's fit)."""
        if self.table is None:
            raise UserError(f"{self.source}: an LA-2A model renders at a mode and peak reduction, not at knobs "
                            f"{', '.join(map(str, knobs))}")
        try:
            self.table.check(knobs)
        except UserError as exc:
            raise UserError(f"{self.source}: {exc}") from None
        return self.table.at(knobs)

    def knob_conditioning(self, knobs: dict) -> np.ndarray:
        """A manifest model's conditioning vector at a knob setting. Shape ``(C,)``."""
        params = self.knob_params(knobs)
        ordered = {k: float(knobs[k]) for k in self.knobs}
        return manifest_conditioning(self.conditioning_name, params, ordered)

    def _check_rate(self, sample_rate: int) -> None:
        if int(sample_rate) != self.sample_rate:
            raise UserError(f"sample rate {int(sample_rate)} Hz: the neural model runs at {self.sample_rate} Hz "
                            "only (resample the audio first)")

    # --- rendering ----------------------------------------------------------------
    def block_processor(self, sample_rate: int, mode: str, peak_reduction: float) -> BlockProcessor:
        """A stateful callable for consecutive ``(channels, n)`` float32 blocks."""
        self._check_rate(sample_rate)
        return BlockProcessor(self, mode, peak_reduction)

    def knob_block_processor(self, sample_rate: int, knobs: dict) -> BlockProcessor:
        """A manifest model's stateful block callable at a knob setting."""
        self._check_rate(sample_rate)
        return BlockProcessor(self, knobs=knobs)

    def render(self, x: np.ndarray, sample_rate: int, mode: str, peak_reduction: float,
               block: int = 1 << 16) -> np.ndarray:
        """Render a whole 1-D signal (from silence). Returns float32 ``(T,)``."""
        return self._render(x, lambda: self.block_processor(sample_rate, mode, peak_reduction), block)

    def render_knobs(self, x: np.ndarray, sample_rate: int, knobs: dict, block: int = 1 << 16) -> np.ndarray:
        """A manifest model: render a whole 1-D signal at a knob setting. Returns float32 ``(T,)``."""
        return self._render(x, lambda: self.knob_block_processor(sample_rate, knobs), block)

    @staticmethod
    def _render(x, make_processor, block: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise UserError(f"render expects a 1-D signal, got shape {x.shape} (use block_processor for channels)")
        if not np.all(np.isfinite(x)):
            raise UserError("input holds NaN or infinite samples")
        proc = make_processor()
        out = [proc(x[None, i:i + block])[0] for i in range(0, len(x), block)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)
