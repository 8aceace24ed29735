"""The LSTM block (one ``torch.nn.LSTM`` layer with the sequence-block interface) and
the LSTM backbone: the conditioned stack of :mod:`neural.backbones.stack` with LSTM blocks.
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor, nn

from .base import register
from .stack import ConditionedStack

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
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, hidden: int = 16, layers: int = 1,
                 film_hidden: int = 16):
        blocks = [LSTMBlock(hidden) for _ in range(layers)]
        super().__init__(in_features, out_features, cond_dim, hidden, blocks, film_hidden)
