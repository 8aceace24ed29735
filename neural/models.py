"""Backbones: conditioned sequence models with one signature for the whole family.

Every backbone is ``Linear(F_in -> width)``, then ``layers`` times
``[block -> FiLM(cond) -> GLU, added to its input]``, then ``Linear(width -> F_out)``,
where the block is an :class:`~neural.s6.S6Block` or an :class:`~neural.lstm.LSTMBlock`.

Family signature (what ``compare.py`` and the heads rely on):

- ``model(x, cond) -> y``: offline, the whole signal at once.
- ``model.process(block, cond, state) -> (y_block, state)``: streaming; ``state=None``
  (or ``model.initial_state(batch_size)``) means silence before the first block.
  Running a signal block by block gives the offline output (to float rounding).
- constructors ``BACKBONES[name](in_features, out_features, cond_dim, **hyperparameters)``.

Shape:
    - x: :math:`(B, T, F_{in})`, y: :math:`(B, T, F_{out})`
    - cond: :math:`(B, C)`, or :math:`(B, T, C)` covering the same samples as x;
      None when ``cond_dim = 0``
    - state: a tuple with one entry per layer (the block's state), opaque to callers

Streaming speed: run under ``torch.inference_mode()`` (the S6 block then uses its
compiled scan) with ``torch.set_num_threads(1)``: on blocks of a few hundred samples
extra threads only add synchronisation, which costs milliseconds per operation on a
busy machine. ``benchmarks/streaming.py`` measures the real-time factor.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .film import FiLM, GLU
from .lstm import LSTMBlock
from .s6 import S6Block

__all__ = ["ConditionedStack", "S6Model", "LSTMModel", "BACKBONES", "count_parameters", "detach_state"]

State = Tuple[Any, ...]


class ConditionedStack(nn.Module):
    """The shared backbone skeleton around a list of sequence blocks.

    Args:
        in_features: F_in, features per input sample.
        out_features: F_out, features per output sample.
        cond_dim: C, size of the conditioning vector (0: unconditioned).
        width: channels inside the stack.
        blocks: the sequence blocks (``width`` to ``width`` channels, interface
            ``block(x, state) -> (y, state)`` and ``block.initial_state(batch_size)``).
        film_hidden: hidden width of each FiLM MLP.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        width: int,
        blocks: Sequence[nn.Module],
        film_hidden: int = 16,
    ):
        super().__init__()
        if min(in_features, out_features, width, len(blocks)) < 1 or cond_dim < 0:
            raise ValueError(
                f"bad backbone sizes: in={in_features}, out={out_features}, cond={cond_dim}, "
                f"width={width}, layers={len(blocks)}"
            )
        self.in_features, self.out_features, self.cond_dim = in_features, out_features, cond_dim
        self.in_proj = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(blocks)
        self.films = nn.ModuleList(FiLM(cond_dim, width, film_hidden) for _ in blocks)
        self.glus = nn.ModuleList(GLU(width) for _ in blocks)
        self.out_proj = nn.Linear(width, out_features)

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` signals (silence before the first block)."""
        return tuple(block.initial_state(batch_size) for block in self.blocks)

    @torch.no_grad()
    def zero_output_(self) -> "ConditionedStack":
        """Zero the output layer, so the model starts by predicting exactly 0."""
        self.out_proj.weight.zero_()
        self.out_proj.bias.zero_()
        return self

    def _check(self, x: Tensor, cond: Optional[Tensor], state: Optional[State]) -> None:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must be (B, T, {self.in_features}), got {tuple(x.shape)}")
        if self.cond_dim:
            if cond is None or cond.dim() not in (2, 3) or cond.shape[0] != x.shape[0] or cond.shape[-1] != self.cond_dim:
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond must be ({x.shape[0]}, {self.cond_dim}) or (B, T, C), got {got}")
        if state is not None and len(state) != len(self.blocks):
            raise ValueError(f"state has {len(state)} layers, the model has {len(self.blocks)}")

    def process(self, x: Tensor, cond: Optional[Tensor], state: Optional[State] = None) -> Tuple[Tensor, State]:
        """Run one block of a stream; returns the output block and the new state.

        Shape: x :math:`(B, T, F_{in})` -> :math:`(B, T, F_{out})`; cond :math:`(B, C)`.
        """
        self._check(x, cond, state)
        if x.shape[1] == 0:  # an empty block changes nothing
            state = self.initial_state(x.shape[0]) if state is None else state
            return x.new_zeros(x.shape[0], 0, self.out_features), state
        h = self.in_proj(x)
        new_state = []
        for i, (block, film, glu) in enumerate(zip(self.blocks, self.films, self.glus)):
            y, s = block(h, None if state is None else state[i])
            h = h + glu(film(y, cond))
            new_state.append(s)
        return self.out_proj(h), tuple(new_state)

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Offline: the whole signal from silence. Shape :math:`(B, T, F_{in})` -> :math:`(B, T, F_{out})`."""
        return self.process(x, cond, None)[0]


class S6Model(ConditionedStack):
    """Conditioned stack of S6 blocks.

    Args:
        in_features, out_features, cond_dim: see :class:`ConditionedStack`.
        width: channels (d_model of each block).
        state: S6 state size N.
        layers: number of [S6, FiLM, GLU] layers.
        expand: inner channels per S6 block = expand * width.
        conv: width of the causal depthwise conv.
        film_hidden: hidden width of each FiLM MLP.
        dt_min, dt_max: initial step-size range (see :mod:`neural.s6`).
        chunk: chunk length of the parallel scan.
        fused: use the compiled inference kernel when no gradient is recorded.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        width: int = 16,
        state: int = 4,
        layers: int = 1,
        expand: int = 1,
        conv: int = 4,
        film_hidden: int = 16,
        dt_min: float = 1e-4,
        dt_max: float = 1e-1,
        chunk: int = 8,
        fused: bool = True,
    ):
        blocks = [S6Block(width, state, expand, conv, dt_min, dt_max, chunk, fused) for _ in range(layers)]
        super().__init__(in_features, out_features, cond_dim, width, blocks, film_hidden)


class LSTMModel(ConditionedStack):
    """Conditioned stack of LSTM layers.

    Args:
        in_features, out_features, cond_dim: see :class:`ConditionedStack`.
        hidden: LSTM hidden size (the stack's width).
        layers: number of [LSTM, FiLM, GLU] layers.
        film_hidden: hidden width of each FiLM MLP.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        hidden: int = 16,
        layers: int = 1,
        film_hidden: int = 16,
    ):
        blocks = [LSTMBlock(hidden) for _ in range(layers)]
        super().__init__(in_features, out_features, cond_dim, hidden, blocks, film_hidden)


# the seed papers' other models; imported here, after ConditionedStack, which
# the S4D and LRU backbones build on
from .ed import EDModel  # noqa: E402
from .ff import FFModel  # noqa: E402
from .lru import LRUModel  # noqa: E402
from .s4d import S4DModel  # noqa: E402

BACKBONES: Dict[str, Callable[..., nn.Module]] = {
    "s6": S6Model,
    "lstm": LSTMModel,
    "ff": FFModel,
    "ed": EDModel,
    "s4d": S4DModel,
    "lru": LRUModel,
}


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def detach_state(state: Any) -> Any:
    """The same nested tuple of tensors, cut from the autograd graph (for truncated BPTT)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state
