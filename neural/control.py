"""Control rate: run a backbone once per frame of ``W`` samples instead of once per sample.

A compressor's gain is a slow signal (the stand-in's and the LA-2A's attack is about
10 ms, their release stages 40 ms to seconds), so a sequence model that predicts a
gain (or a gain correction) need not run at the audio rate. Running it on frames of
``W = 32`` samples (0.73 ms at 44.1 kHz) gives it ``W`` times fewer steps: a second of
audio is 1378 steps, the seconds-long memory of an optical cell fits in a training
segment, and training and streaming cost ``W`` times less in the recurrence.

Per frame the backbone sees the frame's level features, in the units of the
``g_dsp / 20`` input (dB / 20, floored at -80 dB):

- the RMS and the peak of ``x``,
- the RMS of the first difference of ``x`` (the brightness: a detector that weighs
  highs more, as an optical cell's panel does, needs it),
- with the DSP model: its gain (dB, make-up included) at the frame's last sample.

Causality and smoothness: the prediction ``c_k`` made at the end of frame ``k`` is
applied to the samples of frame ``k + 1``, interpolated linearly from ``c_{k-1}``
(its first sample) to ``c_k`` (its last). The output therefore depends on past input
only, there is no latency (a streaming block is answered at once), and the gain has
no steps. The corrections before the first frame are 0.

Other sample rates: a model config gives ``frame`` in samples at 44.1 kHz
(:data:`FRAME_REFERENCE_RATE`); a model trained at another rate gets the frame that
lasts as long there (:func:`frame_at_rate`: 35 samples at 48 kHz, 70 at 96 kHz). An
optical cell's time constants are in milliseconds, so a frame fixed in milliseconds
keeps what a backbone step spans, the initial state time constants (set per step) and
the steps per second of audio the same at every rate; a frame fixed in samples would
make a 96 kHz model take twice the steps for the same memory. The checkpoint records
the frame the model was trained with, so a model always runs with its own frame.

:class:`FrameStream` holds what a stream must carry between blocks: the samples of
the unfinished frame, the sample before it, and the last two predictions.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .kernels import frames as compiled_frames

__all__ = ["FRAME_FEATURES", "FRAME_REFERENCE_RATE", "frame_at_rate", "frame_features", "interpolate",
           "initial_frame_state", "run_frames"]

_FLOOR = 1e-4
FRAME_REFERENCE_RATE = 44100   # Hz: the rate a model config's ``frame`` (samples) is given at


def frame_at_rate(frame: int, sample_rate: int, reference_rate: int = FRAME_REFERENCE_RATE) -> int:
    """The control frame at ``sample_rate`` lasting as long as ``frame`` samples at ``reference_rate``.

    ``frame=1`` (a per-sample model) stays 1; a control-rate frame is rounded to whole
    samples and never drops below 2 (it stays a control rate).

    Args:
        frame: samples per frame at ``reference_rate``, >= 1.
        sample_rate: the rate the model runs at, Hz, > 0.

    Returns:
        Samples per frame at ``sample_rate``.
    """
    if int(frame) != frame or frame < 1:
        raise ValueError(f"frame must be a positive integer, got {frame!r}")
    if sample_rate <= 0 or reference_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {sample_rate} and {reference_rate}")
    if frame == 1:
        return 1
    return max(2, int(round(frame * sample_rate / reference_rate)))

FRAME_FEATURES = ("rms_x", "peak_x", "rms_dx")


def _compiled(kernel, *tensors: Optional[Tensor]) -> bool:
    """Whether the compiled kernel serves: no graph recorded (inference: training keeps the torch
    path's roundings), CPU, float32 / float64, numba there."""
    if torch.is_grad_enabled():
        return False
    for t in tensors:
        if t is not None and (t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64)):
            return False
    return kernel.available()


def _log_level(v: Tensor) -> Tensor:
    return torch.log10(v.clamp_min(_FLOOR))


def frame_features(x: Tensor, g_dsp: Optional[Tensor], x_before: Tensor, frame: int) -> Tensor:
    """Features of the whole frames in ``x``.

    Shape: x, g_dsp :math:`(B, F W)`, x_before :math:`(B, 1)` (the sample before x)
    -> :math:`(B, F, 3)` or :math:`(B, F, 4)` with ``g_dsp``.
    """
    if _compiled(compiled_frames.FEATURES_KERNEL, x, g_dsp, x_before):   # a streaming block: one call
        return compiled_frames.frame_features_fused(x, g_dsp, x_before, frame, _FLOOR)
    b, n = x.shape
    xf = x.reshape(b, n // frame, frame)
    dx = torch.diff(x, dim=1, prepend=x_before).reshape(b, n // frame, frame)
    feats = [
        _log_level(xf.square().mean(-1).sqrt()),
        _log_level(xf.abs().amax(-1)),
        _log_level(dx.square().mean(-1).sqrt()),
    ]
    if g_dsp is not None:
        feats.append(g_dsp.reshape(b, n // frame, frame)[..., -1] * 0.05)
    return torch.stack(feats, dim=-1)


def interpolate(c: Tensor, frame: int, start: int, stop: int) -> Tensor:
    """Per-sample values from per-frame predictions.

    ``c[:, i]`` is the prediction made at the end of frame ``i - 2`` of the span (the
    first two come from before it). The samples of frame ``f`` ramp from ``c[:, f]``
    to ``c[:, f + 1]``; returns the samples ``start:stop`` of the span.
    Shape: :math:`(B, F + 2)` -> :math:`(B, stop - start)`.
    """
    if _compiled(compiled_frames.RAMP_KERNEL, c):
        return compiled_frames.interpolate_fused(c, frame, start, stop)
    frames = -(-stop // frame)
    prev, cur = c[:, :frames], c[:, 1:frames + 1]
    ramp = torch.arange(1, frame + 1, dtype=c.dtype, device=c.device) / frame
    per_sample = prev.unsqueeze(-1) + (cur - prev).unsqueeze(-1) * ramp
    return per_sample.reshape(c.shape[0], -1)[:, start:stop]


FrameState = Tuple[object, Tensor, Tensor, Tensor, Tensor]


def initial_frame_state(backbone_state, batch_size: int, dtype=torch.float32, device=None) -> FrameState:
    """Silence: no pending samples, a zero sample before, zero predictions."""
    z = torch.zeros(batch_size, 0, dtype=dtype, device=device)
    return (backbone_state, z, z.clone(), torch.zeros(batch_size, 1, dtype=dtype, device=device),
            torch.zeros(batch_size, 2, dtype=dtype, device=device))


def run_frames(backbone, x: Tensor, g_dsp: Optional[Tensor], cond: Optional[Tensor],
               state: FrameState, frame: int) -> Tuple[Tensor, FrameState]:
    """One block through the backbone at the control rate.

    Returns the per-sample prediction for the block's samples :math:`(B, T)` and the new
    state. ``cond`` is :math:`(B, C)` (constant over the block) or None.
    """
    bb_state, pend_x, pend_g, x_before, last2 = state
    if cond is not None and cond.dim() != 2:
        raise ValueError(f"at the control rate cond must be (B, C), got {tuple(cond.shape)}")
    lead = pend_x.shape[1]
    xs = torch.cat([pend_x, x], dim=1)
    gs = None if g_dsp is None else torch.cat([pend_g, g_dsp], dim=1)
    span = xs.shape[1]
    whole = span // frame * frame
    if whole:
        feats = frame_features(xs[:, :whole], None if gs is None else gs[:, :whole], x_before, frame)
        o, bb_state = backbone.process(feats, cond, bb_state)
        c = torch.cat([last2, o.squeeze(-1)], dim=1)
        x_before = xs[:, whole - 1:whole]
    else:
        c = last2
    out = interpolate(c, frame, lead, span)
    rest_g = pend_g[:, :0] if gs is None else gs[:, whole:]
    return out, (bb_state, xs[:, whole:], rest_g, x_before, c[:, -2:])
