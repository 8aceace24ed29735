"""The conditioned stack: the skeleton of the S6, LSTM and LRU backbones.

``Linear(F_in -> width)``, then ``layers`` times ``[block -> FiLM(cond) -> GLU, added to
its input]``, then ``Linear(width -> F_out)``, where the block is a sequence block with
the interface ``block(x, state) -> (y, state)`` and ``block.initial_state(batch_size)``
(:class:`~neural.backbones.s6.S6Block`, :class:`~neural.backbones.lstm.LSTMBlock`,
:class:`~neural.backbones.lru.LRUBlock`). Family signature: :mod:`neural.backbones.base`.

Shape: see :mod:`neural.backbones.base`; the state has one entry per layer (the block's state).

Compiled inference (S6, LSTM, LRU): a subclass whose whole stack runs in one compiled call
(:mod:`neural.kernels.s6_stack`, :mod:`neural.kernels.lstm_stack`, :mod:`neural.kernels.lru_stack`) packs its weights for the
kernel (``_pack``); :meth:`ConditionedStack._packed_weights` keeps them until the weights
change (their version counters) and :meth:`ConditionedStack._film_coefficients` keeps the
FiLM scales and shifts for the last conditioning vector, so a streaming block costs a
handful of operations.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..kernels.compiled import use_compiled
from .base import Backbone, State
from .film import FiLM, GLU

__all__ = ["COMPILED_STEPS", "ConditionedStack", "kernel_array", "per_layer"]

# steps (control frames) per block up to which the S6, LSTM and LRU stacks run their compiled kernel:
# a host's buffers; longer blocks (files rendered offline) are faster through the torch path
# (a 20 s render: S6 149x real time against 129x through the kernel, LSTM 205-217x against 174x)
COMPILED_STEPS = 64


def kernel_array(t: Tensor, dtype) -> np.ndarray:
    """One weight as a compiled kernel takes it: detached, in ``dtype``, contiguous, a NumPy view."""
    return t.detach().to(dtype).contiguous().numpy()


def per_layer(items, get, dtype) -> np.ndarray:
    """``get(i, item)`` of every layer stacked on a first axis, as :func:`kernel_array`."""
    return kernel_array(torch.stack([get(i, item).detach() for i, item in enumerate(items)]), dtype)


class ConditionedStack(Backbone):
    """The shared backbone skeleton around a list of sequence blocks.

    Args:
        in_features: F_in, features per input sample.
        out_features: F_out, features per output sample.
        cond_dim: C, size of the conditioning vector (0: unconditioned).
        width: channels inside the stack.
        blocks: the sequence blocks (``width`` to ``width`` channels), created by the
            subclass before this constructor runs (their weights are drawn first).
        film_hidden: hidden width of each FiLM MLP.
    """

    fused = False                    # use the compiled kernel (a subclass with one sets it per model)
    compiled_steps = COMPILED_STEPS  # the longest block (steps) the kernel takes

    def __init__(self, in_features: int, out_features: int, cond_dim: int, width: int, blocks: Sequence[nn.Module],
                 film_hidden: int = 16):
        super().__init__(in_features, out_features, cond_dim, width=width, layers=len(blocks))
        self.in_proj = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(blocks)
        self.films = nn.ModuleList(FiLM(cond_dim, width, film_hidden) for _ in blocks)
        self.glus = nn.ModuleList(GLU(width) for _ in blocks)
        self.out_proj = nn.Linear(width, out_features)
        self._packed = None   # (weights' key, packed arrays): see _packed_weights
        self._film = None     # (weights' key, cond, (scale, shift)): see _film_coefficients

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` signals (silence before the first block)."""
        return tuple(block.initial_state(batch_size) for block in self.blocks)

    def _run(self, x: Tensor, cond: Optional[Tensor], state: Optional[State]) -> Tuple[Tensor, State]:
        kernel = self.compiled_kernel()
        if (kernel is not None and x.shape[1] <= self.compiled_steps and (cond is None or cond.dim() == 2)
                and use_compiled(self, x, self.fused, kernel[0])):
            return self._run_compiled(x, cond, state, kernel)
        return self._run_modules(x, cond, state)

    def _run_modules(self, x: Tensor, cond: Optional[Tensor], state: Optional[State]) -> Tuple[Tensor, State]:
        h = self.in_proj(x)
        new_state = []
        for i, (block, film, glu) in enumerate(zip(self.blocks, self.films, self.glus)):
            y, s = block(h, None if state is None else state[i])
            h = h + glu(film(y, cond))
            new_state.append(s)
        return self.out_proj(h), tuple(new_state)

    # --- compiled inference (subclasses with a kernel) --------------------------------------
    def compiled_kernel(self):
        """``(kernel, weight arrays before its FiLM arguments)``, or None: the stack has no compiled path.
        The kernel's arguments: ``x``, the first weight arrays, the FiLM scales and shifts, the
        rest, the two state arrays (:meth:`kernel_state`), the output."""
        return None

    def kernel_state(self, state: Optional[State], batch: int, dtype) -> Tuple[Tensor, Tensor]:
        """The kernel's two state arrays (``(layers, B, ...)``, fresh copies) from a state tuple."""
        raise NotImplementedError

    def layer_states(self, first: Tensor, second: Tensor) -> State:
        """The state tuple from the kernel's two state arrays."""
        raise NotImplementedError

    def _pack(self, dtype) -> tuple:
        """The compiled kernel's weight arguments in ``dtype``."""
        raise NotImplementedError

    def _run_compiled(self, x: Tensor, cond: Optional[Tensor], state: Optional[State], kernel) -> Tuple[Tensor, State]:
        """The stack in one compiled call; the caller's state stays as it was."""
        run, split = kernel
        key, weights = self._packed_weights(x.dtype)
        scale, shift = self._film_coefficients(key, cond, x)
        first, second = self.kernel_state(state, x.shape[0], x.dtype)
        y = x.new_empty(x.shape[0], x.shape[1], self.out_features)
        run(x.detach().contiguous().numpy(), *weights[:split], scale, shift, *weights[split:], first.numpy(),
            second.numpy(), y.numpy())
        return y, self.layer_states(first, second)

    def _weights_key(self, dtype) -> Optional[tuple]:
        """What identifies the current weights (storage and version of every parameter); None when
        they carry no version counter (created under ``torch.inference_mode``): then nothing is kept.

        The parameters are looked up by (module, name) on every call, a list made once:
        ``self.parameters()`` walks the module tree, which costs more than the kernel."""
        slots = self.__dict__.get("_param_slots")
        if slots is None:
            slots = [(m._parameters, name) for m in self.modules() for name, p in m._parameters.items()
                     if p is not None]
            self.__dict__["_param_slots"] = slots
        key = [dtype]
        for params, name in slots:
            p = params[name]
            if p.is_inference():
                return None
            key.append(p.data_ptr())
            key.append(p._version)
        return tuple(key)

    def _packed_weights(self, dtype):
        """``(key, arrays)``: :meth:`_pack`'s arrays, kept while the weights stay the same."""
        key = self._weights_key(dtype)
        if key is not None and self._packed is not None and self._packed[0] == key:
            return self._packed
        packed = (key, self._pack(dtype))
        if key is not None:
            self._packed = packed
        return packed

    def _film_coefficients(self, key, cond: Optional[Tensor], x: Tensor):
        """The FiLM layers' ``(1 + gamma, beta)`` for ``cond``, each ``(B, layers, width)`` in x's dtype,
        kept for the last cond (compared by value) while the weights stay the same."""
        batch, width = x.shape[0], self.in_proj.out_features
        kept = self._film
        if key is not None and kept is not None and kept[0] == key and kept[2][0].shape[0] == batch:
            if cond is None if kept[1] is None else (cond is not None and cond.shape == kept[1].shape
                                                      and torch.equal(cond, kept[1])):
                return kept[2]
        scales, shifts = [], []
        for film in self.films:
            if film.net is None:
                scales.append(x.new_ones(batch, width))
                shifts.append(x.new_zeros(batch, width))
            else:
                gamma, beta = film.coefficients(cond)
                scales.append(gamma + 1.0)
                shifts.append(beta)
        coefficients = (torch.stack(scales, 1).to(x.dtype).contiguous().numpy(),
                        torch.stack(shifts, 1).to(x.dtype).contiguous().numpy())
        if key is not None:
            self._film = (key, None if cond is None else cond.clone(), coefficients)
        return coefficients
