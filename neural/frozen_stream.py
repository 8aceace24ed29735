"""A renderer's streaming path for the control-rate S6, LSTM and LRU models: host blocks without the modules.

:class:`neural.inference.BlockProcessor` streams a fixed model at a fixed setting. Through
the modules, a 64-sample block of the default S6 hybrid costs some 270 Python calls (shape
and state checks, weight-version keys, the conditioning normalised again, FiLM and shaper
coefficients looked up, a dozen small tensors made and viewed), several times the
arithmetic of the compiled kernels underneath. :class:`FrozenStream` does what depends on
the weights and the setting once, keeps the state in NumPy arrays of its own, and runs a
block as the compiled kernels the module path calls on such a block (frame features, the
whole S6, LSTM or LRU stack, the ramp, the audio path's shaper row: :mod:`neural.kernels`) with the
same inputs, and the output form and the audio path's matrix product as the same torch
operations. Its output is the module path's bit for bit, so a stream may switch between
the two from block to block (:meth:`FrozenStream.load`, :meth:`FrozenStream.state`): the
processor takes this path for blocks of up to :data:`MAX_BLOCK` samples and the module
path for longer ones.

What it covers (:func:`supports`): heads at a control rate (``frame > 1``) on an S6, LSTM or LRU
backbone, with or without the audio path, conditioned or not, when the compiled kernels
are there; anything else streams through the modules.

Shapes: blocks ``(B, n)`` float32, the DSP gain in dB ``(B, n)`` float32.
"""
from __future__ import annotations

import numpy as np
import torch

from neural.audio_path import _BLOCK_MAX
from neural.backbones.stack import ConditionedStack
from neural.control import _FLOOR
from neural.heads import BlackBoxGain, HybridGainDB
from neural.kernels import frames, shaper

__all__ = ["MAX_BLOCK", "supports", "FrozenStream"]

MAX_BLOCK = _BLOCK_MAX   # the audio path's one-matrix blocks; longer blocks take the module path
_LN10 = 2.302585092994046
_KEPT_LENGTHS = 8   # block lengths whose audio-path matrix a stream keeps (each up to about 1 MB)


def _head(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "head", model)


def _stack_kernel(backbone: torch.nn.Module):
    """``(kernel, weights before the FiLM arguments)`` of a backbone's compiled stack, or None."""
    return backbone.compiled_kernel() if isinstance(backbone, ConditionedStack) else None


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model`` (a head, or one wrapped in :class:`neural.checkpoint.CondNormalised`)
    can stream through :class:`FrozenStream` on this machine."""
    head = _head(model)
    stack = _stack_kernel(head.backbone)
    if getattr(head, "frame", 1) <= 1 or stack is None:
        return False
    if MAX_BLOCK > head.frame * head.backbone.compiled_steps:
        return False   # the modules would run such a block without the kernel: not the same roundings
    if not isinstance(head, (HybridGainDB, BlackBoxGain)):   # the output forms it computes
        return False
    if next(model.parameters()).dtype != torch.float32 or next(model.parameters()).device.type != "cpu":
        return False
    kernels = [stack[0], frames.FEATURES_KERNEL, frames.RAMP_KERNEL]
    if head.audio_path is not None:
        kernels.append(shaper.KERNEL)
    return all(k.available() for k in kernels)


class FrozenStream:
    """The streaming state and constants of one model at one setting for ``channels`` signals.

    Args:
        model: the renderer's model (weights that do not change while it streams).
        cond: the conditioning vector as the model takes it (before its normalisation),
            :math:`(1, C)` float32, or None.
        channels: signals streamed as a batch.
    """

    def __init__(self, model: torch.nn.Module, cond, channels: int):
        head = _head(model)
        self.model, self.channels = model, channels
        self.frame = head.frame
        self.gain_out = isinstance(head, HybridGainDB)   # y_dsp * gain; else the black box, x * gain
        self.uses_dsp = bool(head.uses_dsp)
        backbone = head.backbone
        self.backbone = backbone
        self.kernel, self.split = _stack_kernel(backbone)
        with torch.inference_mode():
            c = None if cond is None else cond.expand(channels, -1)
            c = model._cond(c) if hasattr(model, "_cond") else c   # normalised as the module path does
            probe = torch.zeros(channels, 1, backbone.in_features)
            key, weights = backbone._packed_weights(torch.float32)
            self.weights = weights
            self.scale, self.shift = backbone._film_coefficients(key, c, probe)
            path = head.audio_path
            self.path = path
            if path is not None:
                a = path._coefficients(c) if path.use_shaper else torch.zeros(channels, 2)
                self.shape_coefficients = a.expand(channels, 2).to(torch.float32).contiguous().numpy()
                self.matrices: dict = {}
        self.features = backbone.in_features
        # the ramp as neural.kernels.frames.interpolate_fused makes it (the torch path's roundings)
        self.ramp = (torch.arange(1, self.frame + 1, dtype=torch.float32) / self.frame).numpy()
        self.layers = len(backbone.blocks)
        self.load(None)

    # --- state -----------------------------------------------------------------------
    def load(self, state) -> None:
        """Take over a module-path state (``model.process``'s; None: silence)."""
        if state is None:
            state = self.model.initial_state(self.channels)
        core, path = (state, None) if self.path is None else state
        layers, pend_x, pend_g, x_before, last2 = core
        first, second = self.backbone.kernel_state(layers, self.channels, torch.float32)   # fresh copies
        self.s1, self.s2 = first.numpy(), second.numpy()
        self.pend_x, self.x_before, self.last2 = pend_x.numpy().copy(), x_before.numpy().copy(), last2.numpy().copy()
        self.pend_g = pend_g.numpy().copy() if self.uses_dsp else self.pend_x[:, :0]
        if self.path is not None:
            self.path_tail, self.path_h = path[0].numpy().copy(), path[1].numpy().copy()

    def state(self):
        """The state in the module path's form (what ``model.process`` takes and returns)."""
        t = torch.from_numpy
        layers = self.backbone.layer_states(t(self.s1.copy()), t(self.s2.copy()))
        pend_g = t(self.pend_g.copy()) if self.uses_dsp else t(self.pend_x[:, :0].copy())
        core = (layers, t(self.pend_x.copy()), pend_g, t(self.x_before.copy()), t(self.last2.copy()))
        if self.path is None:
            return core
        return core, (t(self.path_tail.copy()), t(self.path_h.copy()))

    # --- one block ---------------------------------------------------------------------
    def __call__(self, x: np.ndarray, y_dsp: np.ndarray | None, g_db: np.ndarray | None) -> np.ndarray:
        """One block of at most :data:`MAX_BLOCK` samples: ``(B, n)`` float32 in and out (C-contiguous)."""
        n = x.shape[1]
        w = self.frame
        lead = self.pend_x.shape[1]
        xs = np.concatenate((self.pend_x, x), 1) if lead else x
        gs = None
        if self.uses_dsp:
            gs = np.concatenate((self.pend_g, g_db), 1) if lead else g_db
        span = lead + n
        whole = span // w * w
        if whole:   # neural.control.run_frames on the whole frames: features, the stack
            xw = xs[:, :whole] if whole == span else np.ascontiguousarray(xs[:, :whole])
            gw = xw if gs is None else (gs[:, :whole] if whole == span else np.ascontiguousarray(gs[:, :whole]))
            feats = np.empty((x.shape[0], whole // w, self.features), np.float32)
            frames.FEATURES_KERNEL(xw, gw, self.x_before, w, _FLOOR, feats)
            o = np.empty((x.shape[0], whole // w, 1), np.float32)
            wt, k = self.weights, self.split
            self.kernel(feats, *wt[:k], self.scale, self.shift, *wt[k:], self.s1, self.s2, o)
            c = np.concatenate((self.last2, o[:, :, 0]), 1)
            self.x_before = xs[:, whole - 1:whole].copy()
        else:
            c = self.last2
        ramp = np.empty_like(x)
        frames.RAMP_KERNEL(c, self.ramp, lead, ramp)
        self.pend_x = xs[:, whole:].copy()
        if gs is not None:
            self.pend_g = gs[:, whole:].copy()
        self.last2 = c[:, c.shape[1] - 2:].copy()
        t = torch.from_numpy
        y = t(y_dsp if self.gain_out else x) * torch.exp(t(ramp) * _LN10)   # the head's output form
        if self.path is None:
            return y.numpy()
        taps = self.path_tail.shape[1]
        row = np.empty((x.shape[0], taps + n + self.path_h.shape[1]), np.float32)
        shaper.KERNEL(y.numpy(), self.shape_coefficients, self.path.use_shaper, self.path_tail, self.path_h, row)
        m = self.matrices.get(n)
        if m is None:   # a few block lengths kept (a host's buffer size, its odd last buffers): bounded memory
            if len(self.matrices) >= _KEPT_LENGTHS:
                del self.matrices[next(iter(self.matrices))]
            m = self.matrices[n] = self.path._block_matrix(n, torch.float32, torch.device("cpu"))
        out = (t(row) @ m).numpy()   # AudioPath.process on a host block
        self.path_tail = row[:, n:n + taps].copy()
        self.path_h = out[:, n:].copy()
        return out[:, :n]
