"""The LSTM block (one ``torch.nn.LSTM`` layer with the sequence-block interface) and
the LSTM backbone: the conditioned stack of :mod:`neural.backbones.stack` with LSTM blocks.

Without a graph (CPU, cond constant over the block), a block of up to
:data:`neural.backbones.stack.COMPILED_STEPS` steps runs the whole stack in one compiled call
(:mod:`neural.kernels.lstm_stack`), as the S6 stack does: a streaming block of a few
control frames then costs a handful of operations instead of ``torch.nn.LSTM``'s call and
the FiLM, GLU and projections of every layer. Longer blocks (files rendered offline) keep
``torch.nn.LSTM``, whose batched input projection is faster there.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ..kernels import lstm_stack
from .base import register
from .stack import ConditionedStack, kernel_array, per_layer

__all__ = ["LSTMBlock", "LSTMModel"]

LSTMState = Tuple[Tensor, Tensor]


class LSTMBlock(nn.Module):
    """A single-layer LSTM from ``width`` to ``width`` channels.

    ``forward(x, state=None) -> (y, state)``; ``state=None`` means zero state.

    Shape:
        - x, y: :math:`(B, T, width)`
        - state: ``(h, c)``, each :math:`(1, B, width)` (torch.nn.LSTM's layout)
    """

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.lstm = nn.LSTM(width, width, batch_first=True)

    def initial_state(self, batch_size: int) -> LSTMState:
        w = self.lstm.weight_hh_l0
        return (w.new_zeros(1, batch_size, self.width), w.new_zeros(1, batch_size, self.width))

    def forward(self, x: Tensor, state: Optional[LSTMState] = None) -> Tuple[Tensor, LSTMState]:
        y, (h, c) = self.lstm(x, state)
        return y, (h, c)


@register("lstm")
class LSTMModel(ConditionedStack):
    """Conditioned stack of LSTM layers.

    Args:
        in_features, out_features, cond_dim: see :class:`neural.backbones.base.Backbone`.
        hidden: LSTM hidden size (the stack's width).
        layers: number of [LSTM, FiLM, GLU] layers.
        film_hidden: hidden width of each FiLM MLP.
        fused: use the compiled inference kernel when no gradient is recorded.
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, hidden: int = 16, layers: int = 1,
                 film_hidden: int = 16, fused: bool = True):
        blocks = [LSTMBlock(hidden) for _ in range(layers)]
        super().__init__(in_features, out_features, cond_dim, hidden, blocks, film_hidden)
        self.fused = fused

    def compiled_kernel(self):
        return (lstm_stack.KERNEL, 5) if self.fused else None

    def kernel_state(self, state: Optional[Tuple], batch: int, dtype) -> Tuple[Tensor, Tensor]:
        """(h, c) of every layer: ``(layers, B, width)`` each (a layer's own is ``(1, B, width)``)."""
        width = self.in_proj.out_features
        if state is None:
            return (torch.zeros(len(self.blocks), batch, width, dtype=dtype),
                    torch.zeros(len(self.blocks), batch, width, dtype=dtype))
        return torch.cat([s[0] for s in state]).to(dtype), torch.cat([s[1] for s in state]).to(dtype)

    def layer_states(self, first: Tensor, second: Tensor) -> Tuple:
        return tuple(zip(first.split(1), second.split(1)))

    def _pack(self, dtype) -> tuple:
        """The kernel's weight arguments in ``dtype``: input layer, LSTM layers (stacked on a first
        axis), then (FiLM) GLUs and the output layer; projections transposed (input index first)."""
        def stack(get):
            return per_layer([b.lstm for b in self.blocks], get, dtype)

        def own(t):
            return kernel_array(t, dtype)

        return (
            own(self.in_proj.weight.T), own(self.in_proj.bias),
            stack(lambda i, m: m.weight_ih_l0.T), stack(lambda i, m: m.weight_hh_l0.T),
            stack(lambda i, m: m.bias_ih_l0 + m.bias_hh_l0),
            stack(lambda i, m: self.glus[i].proj.weight.T), stack(lambda i, m: self.glus[i].proj.bias),
            own(self.out_proj.weight), own(self.out_proj.bias),
        )
