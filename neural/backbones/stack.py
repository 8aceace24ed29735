"""The conditioned stack: the skeleton of the S6, LSTM and LRU backbones.

``Linear(F_in -> width)``, then ``layers`` times ``[block -> FiLM(cond) -> GLU, added to
its input]``, then ``Linear(width -> F_out)``, where the block is a sequence block with
the interface ``block(x, state) -> (y, state)`` and ``block.initial_state(batch_size)``
(:class:`~neural.backbones.s6.S6Block`, :class:`~neural.backbones.lstm.LSTMBlock`,
:class:`~neural.backbones.lru.LRUBlock`). Family signature: :mod:`neural.backbones.base`.

Shape: see :mod:`neural.backbones.base`; the state has one entry per layer (the block's state).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from torch import Tensor, nn

from .base import Backbone, State
from .film import FiLM, GLU

__all__ = ["ConditionedStack"]


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

    def __init__(self, in_features: int, out_features: int, cond_dim: int, width: int, blocks: Sequence[nn.Module],
                 film_hidden: int = 16):
        super().__init__(in_features, out_features, cond_dim, width=width, layers=len(blocks))
        self.in_proj = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(blocks)
        self.films = nn.ModuleList(FiLM(cond_dim, width, film_hidden) for _ in blocks)
        self.glus = nn.ModuleList(GLU(width) for _ in blocks)
        self.out_proj = nn.Linear(width, out_features)

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` signals (silence before the first block)."""
        return tuple(block.initial_state(batch_size) for block in self.blocks)

    def _run(self, x: Tensor, cond: Optional[Tensor], state: Optional[State]) -> Tuple[Tensor, State]:
        h = self.in_proj(x)
        new_state = []
        for i, (block, film, glu) in enumerate(zip(self.blocks, self.films, self.glus)):
            y, s = block(h, None if state is None else state[i])
            h = h + glu(film(y, cond))
            new_state.append(s)
        return self.out_proj(h), tuple(new_state)
