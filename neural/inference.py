"""Rendering through a trained neural model: offline or block by block, from one checkpoint.

:class:`NeuralRenderer` needs nothing but the checkpoint: it holds the model spec and
weights, the variant and the parameter map the model was trained with (which names the
device's knobs), so it rebuilds the DSP compressor at any setting for the hybrids, or
the knob vector for the black box. A setting is a knob dict (:mod:`audio.devices`):
``{"mode": "limit", "peak_reduction": 65}`` for an LA-2A model, the device's own knobs
(``{"threshold": -20, ...}``) for a model of another device.

- ``renderer.render(x, sample_rate, setting)``: a 1-D signal, offline.
- ``renderer.block_processor(sample_rate, setting)``: a stateful callable for
  consecutive ``(channels, n)`` float32 blocks (what :func:`audio.io.process_file`
  and a plug-in host hand over). The offline render runs through the same processor
  with long blocks, and block by block gives the same output (to float rounding).

The DSP parameters at a setting come from the map (:meth:`dsp.knobs.parammap.ParamMap.at`):
interpolated over peak reduction on the LA-2A, the nearest trained setting's fit on
another device (or its knob curves, after a joint fit); a setting the map refuses (:meth:`dsp.knobs.parammap.ParamMap.check`) is an error.

Several channels (stereo): the gain is linked. The DSP compressor detects on the
louder channel (the channels' maximum, as :class:`dsp.models.ff5_streaming.StreamingCompressor` does for
the DSP model and the stand-in) and applies one gain to all channels; the neural model
runs the channels as a batch on that linked DSP output, each with its own state (its
small correction follows each channel's own signal on top of the linked gain). The
maximum rather than the mean keeps a hard-panned source from overshooting.

Sample rates: the models run at the rate they were trained at (their learnt time
constants are in samples). :meth:`NeuralRenderer.render_channels` renders audio at any
other rate by resampling it to the model's rate and the output back, with a polyphase
windowed-sinc resampler (:func:`scipy.signal.resample_poly`, Kaiser window, linear
phase: no delay); :meth:`NeuralRenderer.block_processor` (streaming) needs the model's
rate.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy import signal

from common.errors import UserError
from dsp.models.classes import processor
from dsp.models.ff5_streaming import StreamingCompressor
from neural.checkpoint import load_checkpoint
from neural.conditioning import RENDERED_CLASSES, conditioning, dsp_gain_db, gain_db
from neural.frozen_stream import MAX_BLOCK, FrozenStream, supports
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

    The setting is a knob dict of the model's device. The channel count is fixed by
    the first block. ``reset()`` returns to silence. Blocks of up to
    :data:`neural.frozen_stream.MAX_BLOCK` samples of a control-rate S6, LSTM or LRU model take
    :class:`neural.frozen_stream.FrozenStream` (the same output, without the modules' per-call
    overhead), longer ones the modules; the state passes between the two.
    """

    def __init__(self, renderer: "NeuralRenderer", setting: dict):
        self.renderer = renderer
        self.params = renderer.dsp_params(setting)
        self.cond = torch.from_numpy(renderer.conditioning(setting))[None, :]
        self.frozen_ok = supports(renderer.model)
        self.reset()

    def reset(self) -> None:
        # a gray-box or opto fit: its output is not x * gain; its own compressor (cell) gives the gain feature
        rendered = self.renderer.uses_dsp and self.params.model_class in RENDERED_CLASSES
        self.dsp = processor(self.params, self.renderer.sample_rate) if rendered else None
        self.comp = None
        if self.renderer.uses_dsp and not rendered:
            self.comp = StreamingCompressor(self.params, self.renderer.sample_rate)
        self.make_up_db = float(self.params["make_up_db"]) if self.renderer.uses_dsp else 0.0
        self.state = None
        self.channels = None
        self.frozen = None        # the FrozenStream, made at the first block that takes it
        self.frozen_live = False  # the stream's state is the FrozenStream's (else self.state)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        block = np.atleast_2d(np.asarray(block, dtype=np.float32))
        if block.ndim != 2:
            raise ValueError(f"blocks must be (channels, n), got shape {block.shape}")
        if self.channels is None:
            self.channels = block.shape[0]
        elif block.shape[0] != self.channels:
            raise ValueError(f"block has {block.shape[0]} channels, the stream has {self.channels}")
        block = np.ascontiguousarray(block)
        n = block.shape[1]
        g_db, y_dsp = self._dsp_features(block)
        if self.frozen_ok and 0 < n <= MAX_BLOCK:
            return self._frozen_block(block, y_dsp, g_db)
        with torch.inference_mode():
            if self.frozen_live:   # a long block after short ones: the modules carry on from their state
                self.state, self.frozen_live = self.frozen.state(), False
            cond = self.cond.expand(self.channels, -1)
            t = torch.from_numpy
            y, self.state = run_chunked(self.renderer.model, t(block), None if y_dsp is None else t(y_dsp),
                                        None if g_db is None else t(g_db), cond, self.state)
        return y.numpy().astype(np.float32, copy=False)

    def _dsp_features(self, block: np.ndarray) -> tuple:
        """The DSP gain in dB and the DSP output for one block (advances the DSP model), each
        ``(channels, n)`` float32 (the linked gain on every channel), or None for a black box."""
        if self.comp is not None:
            g = dsp_gain_db(self.comp, block, self.make_up_db)
        elif self.dsp is not None:   # one pass of the DSP model gives its output and the gain (dsp_features)
            y, gain = self.dsp.process_and_gain(block.astype(np.float64))
            g = gain_db(gain, self.make_up_db)
        else:
            return None, None
        g_db = np.repeat(g[None, :], block.shape[0], 0)
        if self.comp is not None:   # an ff5 fit's output is x times its gain (rounded as torch rounds it)
            with torch.inference_mode():
                y_dsp = (torch.from_numpy(block) * torch.pow(10.0, torch.from_numpy(g_db) / 20.0)).numpy()
            return g_db, y_dsp
        return g_db, y.astype(np.float32)

    def _frozen_block(self, x, y_dsp, g_db) -> np.ndarray:
        if self.frozen is None:
            self.frozen = FrozenStream(self.renderer.model, self.cond, self.channels)
        if not self.frozen_live:
            self.frozen.load(self.state)
            self.frozen_live = True
        return self.frozen(x, y_dsp, g_db)


class NeuralRenderer:
    """A trained neural compressor, loaded from its checkpoint.

    Attributes:
        name: e.g. ``"s6 hybrid"``.
        variant: ``"hybrid"`` or ``"blackbox"``.
        head: the output form (``hybrid_gain``, ``hybrid_add``, ``blackbox``).
        num_parameters: trainable parameters of the model.
        sample_rate: the rate it was trained at and streams at (others are resampled).
        record: the checkpoint's other entries (config, metrics, levels).
        param_map: the :class:`dsp.knobs.parammap.ParamMap` it was trained with.
        device: the :class:`audio.devices.Device` whose settings it renders at.
        knobs: the device's knob names.
    """

    def __init__(self, record: dict, model: torch.nn.Module, source: str = "checkpoint"):
        self.record, self.model, self.source = record, model.float().eval(), source
        spec = record["model"]
        self.backbone, self.head, self.conditioning_name = spec["backbone"], spec["head"], spec["conditioning"]
        self.variant = str(record["variant"])
        self.name = f"{self.backbone} {self.variant}"
        self.sample_rate = int(record["sample_rate"])
        self.param_map = record["param_map_obj"]
        self.device = self.param_map.device
        self.knobs = list(self.device.knobs)
        self.uses_dsp = bool(getattr(model, "uses_dsp", True))
        self.num_parameters = count_parameters(model)

    @classmethod
    def load(cls, path: str | Path) -> "NeuralRenderer":
        record, model = load_checkpoint(path)
        return cls(record, model, str(path))

    # --- settings -----------------------------------------------------------------
    def dsp_params(self, setting: dict) -> dict:
        """The DSP parameters at a setting (the map's: exact at fitted settings, interpolated
        or the nearest fit's between); ``{}`` for a black box whose map lacks the setting."""
        try:
            self.device.check(setting)
        except UserError as exc:
            raise UserError(f"{self.source}: {exc}") from None
        try:
            self.param_map.check(setting, self.source)
        except UserError:
            if self.uses_dsp:
                raise
            return {}   # a black box needs no DSP parameters
        return self.param_map.at(setting)

    def conditioning(self, setting: dict) -> np.ndarray:
        """The model's conditioning vector at a setting. Shape ``(C,)``."""
        params = self.dsp_params(setting)
        return conditioning(self.conditioning_name, params, setting, self.device)

    def _check_rate(self, sample_rate: int) -> None:
        if int(sample_rate) != self.sample_rate:
            raise UserError(f"sample rate {int(sample_rate)} Hz: streaming runs at the model's {self.sample_rate} Hz "
                            "(render_channels resamples any other rate)")

    # --- rendering ----------------------------------------------------------------
    def block_processor(self, sample_rate: int, setting: dict) -> BlockProcessor:
        """A stateful callable for consecutive ``(channels, n)`` float32 blocks at ``setting``
        (at the model's own rate; :meth:`render_channels` resamples any other)."""
        self._check_rate(sample_rate)
        return BlockProcessor(self, setting)

    def render(self, x: np.ndarray, sample_rate: int, setting: dict, block: int = 1 << 16) -> np.ndarray:
        """Render a whole 1-D signal (from silence) at ``setting``. Returns float32 ``(T,)``."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise UserError(f"render expects a 1-D signal, got shape {x.shape} (use block_processor for channels)")
        if not np.all(np.isfinite(x)):
            raise UserError("input holds NaN or infinite samples")
        return self.render_channels(x[None, :], sample_rate, setting, block)[0]

    def render_channels(self, x: np.ndarray, sample_rate: int, setting: dict, block: int = 1 << 16,
                        progress=None) -> np.ndarray:
        """Render ``(channels, T)`` audio at any sample rate (from silence) at ``setting``.

        At another rate than the model's, the audio is resampled to the model's rate, rendered
        and resampled back (polyphase, linear phase: no added delay, the length kept).

        Args:
            x: the audio. **Shape:** ``(channels, T)``.
            sample_rate: its rate, Hz.
            setting: a knob dict of the model's device.
            block: samples per block at the model's rate.
            progress: called with the fraction of the render done after each block (or None).

        Returns:
            float32 ``(channels, T)``.
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if not np.all(np.isfinite(x)):
            raise UserError("input holds NaN or infinite samples")
        if x.shape[1] == 0:
            return np.zeros_like(x)
        up, down = _rate_ratio(self.sample_rate, int(sample_rate))
        xm = x if up == down else signal.resample_poly(x, up, down, axis=1).astype(np.float32)
        proc = BlockProcessor(self, setting)
        out = []
        for i in range(0, xm.shape[1], block):
            out.append(proc(xm[:, i:i + block]))
            if progress is not None:
                progress(min(1.0, (i + block) / xm.shape[1]))
        y = np.concatenate(out, axis=1)
        if up != down:
            y = signal.resample_poly(y, down, up, axis=1)
            n = x.shape[1]
            y = y[:, :n] if y.shape[1] >= n else np.pad(y, ((0, 0), (0, n - y.shape[1])))
        return np.ascontiguousarray(y, dtype=np.float32)


def _rate_ratio(model_rate: int, rate: int) -> tuple[int, int]:
    """``(up, down)`` taking ``rate`` to ``model_rate`` (1, 1 when equal)."""
    if rate <= 0:
        raise UserError(f"sample rate {rate} Hz is not positive")
    g = math.gcd(int(model_rate), int(rate))
    return int(model_rate) // g, int(rate) // g
