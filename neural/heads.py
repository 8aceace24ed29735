"""Output forms: how a backbone's prediction turns into the output signal.

Every head wraps one backbone (built by name from :data:`neural.backbones.BACKBONES`)
and has the same signature, so training and comparison code loop over heads
without special cases:

- ``head(x, y_dsp, g_dsp, cond) -> y``: offline.
- ``head.process(x_blk, y_dsp_blk, g_dsp_blk, cond, state) -> (y_blk, state)``:
  streaming; ``state=None`` or ``head.initial_state(batch_size)`` means silence.

The heads:

- :class:`HybridGainDB` (``"hybrid_gain"``): from ``(x, y_dsp, g_dsp / 20)`` the
  backbone predicts a gain correction per sample, ``y = y_dsp * 10^(dg / 20)``.
  Silence stays silent.
- :class:`HybridAdditive` (``"hybrid_add"``): same inputs, ``y = y_dsp + r``.
- :class:`BlackBoxGain` (``"blackbox"``): from ``x`` alone (and the knobs as cond)
  the backbone predicts the whole gain, ``y = x * 10^(g / 20)`` (as the S6 paper's
  models output a gain times the input). ``y_dsp`` and ``g_dsp`` are ignored.

The backbone's output layer starts at zero: both hybrids start as the DSP model
exactly, the black box as unity gain. Gains are predicted in units of 20 dB
(the backbone outputs ``log10`` of the linear gain, ``dg_db = 20 * output``),
mirroring the ``g_dsp / 20`` input feature.

Level feature (``level_feature=True``): one more input per sample, the input's level
``log10(max(|x|, 1e-4))`` (dB / 20, floored at -80 dB), in the units of the
``g_dsp / 20`` feature. A compressor's gain is a function of the level in dB; with it
the recurrences smooth a level instead of having to learn a rectifier first. It is
stateless, so streaming is unchanged.

Control rate (``frame=W > 1``): the backbone runs once per frame of ``W`` samples on
the frame's level features (and the DSP gain), and its per-frame prediction is
interpolated back to the samples (:mod:`neural.control`); ``level_feature`` is then
moot. The heads' output forms are the same.

Audio path (``audio_path={...}``, off by default): after the output form, a
conditioned per-sample waveshaper and an identity-initialised linear filter
(:class:`neural.audio_path.AudioPath`): harmonics, a transformer's roll-off and its
phase, which a gain cannot make. It starts as the identity, so a head with it starts
exactly as one without. The streaming state is then ``(head state, path state)``.

Shape:
    - x, y_dsp, g_dsp (dB), y: :math:`(B, T)`
    - cond: :math:`(B, C)` (or :math:`(B, T, C)`), None when ``cond_dim = 0``
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .audio_path import AudioPath, audio_path_options
from .backbones import BACKBONES, Backbone, State
from .control import FRAME_FEATURES, initial_frame_state, run_frames

__all__ = ["HybridGainDB", "HybridAdditive", "BlackBoxGain", "HEADS", "build_head", "count_parameters"]

_LN10 = 2.302585092994046
_LEVEL_FLOOR = 1e-4


def _level(x: Tensor) -> Tensor:
    """``log10(max(|x|, 1e-4))``: the level in dB / 20."""
    return torch.log10(x.abs().clamp_min(_LEVEL_FLOOR))


class _Head(nn.Module):
    """Shared plumbing: build the backbone, check shapes, run offline or streaming."""

    in_features: int = 0
    uses_dsp: bool = True
    gain_output: bool = True   # the prediction is a gain (dB / 20), smooth enough for a control rate

    def __init__(self, backbone: str = "s6", cond_dim: int = 0, level_feature: bool = False, frame: int = 1,
                 audio_path: Optional[dict] = None, **hyperparameters):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
        if int(frame) != frame or frame < 1:
            raise ValueError(f"frame must be a positive integer, got {frame!r}")
        self.backbone_name = backbone
        self.cond_dim = cond_dim
        self.level_feature = bool(level_feature)
        self.frame = int(frame)
        if self.frame > 1 and not self.gain_output:
            raise ValueError(f"{type(self).__name__} adds an audio residual; it cannot run at a control rate (frame=1)")
        if self.frame > 1:  # control rate: frame level features (+ the DSP gain)
            features = len(FRAME_FEATURES) + int(self.uses_dsp)
        else:
            features = self.in_features + int(self.level_feature)
        self.backbone: Backbone = BACKBONES[backbone](features, 1, cond_dim, **hyperparameters)
        self.backbone.zero_output_()
        self.audio_path_options = audio_path_options(audio_path)
        self.audio_path = None if self.audio_path_options is None else AudioPath(cond_dim, **self.audio_path_options)

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` signals."""
        if self.audio_path is not None:
            return self._core_initial_state(batch_size), self.audio_path.initial_state(batch_size)
        return self._core_initial_state(batch_size)

    def _core_initial_state(self, batch_size: int) -> State:
        state = self.backbone.initial_state(batch_size)
        if self.frame > 1:
            p = next(self.parameters())
            return initial_frame_state(state, batch_size, p.dtype, p.device)
        return state

    def _check(self, x: Tensor, y_dsp: Optional[Tensor], g_dsp: Optional[Tensor]) -> None:
        if x.dim() != 2:
            raise ValueError(f"x must be (B, T), got {tuple(x.shape)}")
        if self.uses_dsp:
            for name, t in (("y_dsp", y_dsp), ("g_dsp", g_dsp)):
                if t is None or t.shape != x.shape:
                    got = None if t is None else tuple(t.shape)
                    raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {got}")

    def _features(self, x: Tensor, y_dsp: Optional[Tensor], g_dsp: Optional[Tensor]) -> Tensor:
        return torch.stack([x, y_dsp, g_dsp * 0.05], dim=-1)

    def _all_features(self, x: Tensor, y_dsp: Optional[Tensor], g_dsp: Optional[Tensor]) -> Tensor:
        f = self._features(x, y_dsp, g_dsp)
        return torch.cat([f, _level(x).unsqueeze(-1)], dim=-1) if self.level_feature else f

    def _output(self, o: Tensor, x: Tensor, y_dsp: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def process(
        self,
        x: Tensor,
        y_dsp: Optional[Tensor],
        g_dsp: Optional[Tensor],
        cond: Optional[Tensor],
        state: Optional[State] = None,
    ) -> Tuple[Tensor, State]:
        """One block of a stream. Shapes :math:`(B, T_{blk})`; returns ``(y_blk, state)``."""
        self._check(x, y_dsp, g_dsp)
        if self.audio_path is None:
            return self._core(x, y_dsp, g_dsp, cond, state)
        core_state, path_state = (None, None) if state is None else state
        y, core_state = self._core(x, y_dsp, g_dsp, cond, core_state)
        y, path_state = self.audio_path.process(y, cond, path_state)
        return y, (core_state, path_state)

    def _core(self, x: Tensor, y_dsp: Optional[Tensor], g_dsp: Optional[Tensor], cond: Optional[Tensor],
              state: Optional[State]) -> Tuple[Tensor, State]:
        """The output form on one block, before the audio path."""
        if self.frame > 1:
            state = self._core_initial_state(x.shape[0]) if state is None else state
            o, state = run_frames(self.backbone, x, g_dsp if self.uses_dsp else None, cond, state, self.frame)
            return self._output(o, x, y_dsp), state
        o, state = self.backbone.process(self._all_features(x, y_dsp, g_dsp), cond, state)
        return self._output(o.squeeze(-1), x, y_dsp), state

    def forward(
        self,
        x: Tensor,
        y_dsp: Optional[Tensor] = None,
        g_dsp: Optional[Tensor] = None,
        cond: Optional[Tensor] = None,
    ) -> Tensor:
        """Offline, from silence. Shapes :math:`(B, T)` -> :math:`(B, T)`."""
        return self.process(x, y_dsp, g_dsp, cond, None)[0]


class HybridGainDB(_Head):
    """``y = y_dsp * 10^(dg / 20)`` with ``dg`` (dB) predicted from ``(x, y_dsp, g_dsp / 20)``.

    Args:
        backbone: name in :data:`neural.backbones.BACKBONES`.
        cond_dim: size of the conditioning vector (e.g. 5 fitted DSP parameters).
        **hyperparameters: passed to the backbone constructor.
    """

    in_features = 3

    def _output(self, o: Tensor, x: Tensor, y_dsp: Optional[Tensor]) -> Tensor:
        return y_dsp * torch.exp(o * _LN10)


class HybridAdditive(_Head):
    """``y = y_dsp + r`` with the residual ``r`` predicted from ``(x, y_dsp, g_dsp / 20)``.

    Same arguments as :class:`HybridGainDB`.
    """

    in_features = 3
    gain_output = False

    def _output(self, o: Tensor, x: Tensor, y_dsp: Optional[Tensor]) -> Tensor:
        return y_dsp + o


class BlackBoxGain(_Head):
    """``y = x * 10^(g / 20)`` with the gain ``g`` (dB) predicted from ``x`` and cond only.

    Same arguments as :class:`HybridGainDB` (cond: the knobs, e.g. peak reduction and
    the compress/limit switch). ``y_dsp`` and ``g_dsp`` are ignored and may be None.
    """

    in_features = 1
    uses_dsp = False

    def _features(self, x: Tensor, y_dsp: Optional[Tensor], g_dsp: Optional[Tensor]) -> Tensor:
        return x.unsqueeze(-1)

    def _output(self, o: Tensor, x: Tensor, y_dsp: Optional[Tensor]) -> Tensor:
        return x * torch.exp(o * _LN10)


HEADS: Dict[str, Callable[..., _Head]] = {
    "hybrid_gain": HybridGainDB,
    "hybrid_add": HybridAdditive,
    "blackbox": BlackBoxGain,
}


def build_head(head: str, backbone: str = "s6", cond_dim: int = 0, **hyperparameters) -> _Head:
    """``HEADS[head](backbone, cond_dim, **hyperparameters)`` with a readable error for a bad name."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {sorted(HEADS)}")
    return HEADS[head](backbone, cond_dim, **hyperparameters)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model (a head with its backbone, or any module)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
