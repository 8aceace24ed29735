"""The LSTM block: one ``torch.nn.LSTM`` layer with the sequence-block interface.

Same interface as :class:`neural.s6.S6Block`, so both plug into one conditioned
stack (:mod:`neural.models`).
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor, nn

__all__ = ["LSTMBlock"]

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
