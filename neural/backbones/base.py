"""The backbone family: one base class, its streaming contract and the registry.

Every backbone maps a feature sequence and a conditioning vector to an output
sequence, with one signature for the whole family (what the heads and ``compare.py``
rely on):

- ``model(x, cond) -> y``: offline, the whole signal from silence.
- ``model.process(block, cond, state) -> (y_block, state)``: streaming; ``state=None``
  (or ``model.initial_state(batch_size)``) means silence before the first block.
  Running a signal block by block gives the offline output (to float rounding).
  An empty block changes nothing.
- ``model.zero_output_()``: zero the output layer ``out_proj`` (a head then starts
  as the DSP model exactly, or as unity gain).
- constructors ``BACKBONES[name](in_features, out_features, cond_dim, **hyperparameters)``.

The conditioning (knobs, or fitted DSP parameters) enters every backbone through
FiLM layers (:mod:`neural.backbones.film`); :class:`Backbone` checks it.

Adding a backbone: a module in this package with a :class:`Backbone` subclass
decorated with ``@register("name")`` (the package imports every module in it), and
a model file ``cfg/model/<name>.yaml``.

Shape:
    - x: :math:`(B, T, F_{in})`, y: :math:`(B, T, F_{out})`
    - cond: :math:`(B, C)`, or :math:`(B, T, C)` covering the same samples as x;
      None when ``cond_dim = 0``
    - state: a tuple, opaque to callers (one entry per layer for the stacks)

Streaming speed: run under ``torch.inference_mode()`` (the recurrences then use their
compiled kernels, :mod:`neural.kernels`) with ``torch.set_num_threads(1)``: on blocks
of a few hundred samples extra threads only add synchronisation. ``benchmarks/streaming.py``
measures the real-time factor.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Type

import torch
from torch import Tensor, nn

__all__ = ["Backbone", "BACKBONES", "State", "register", "detach_state"]

State = Tuple[Any, ...]


class Backbone(nn.Module):
    """Base of every backbone: sizes, input checks, zero output and the streaming contract.

    Subclasses create their layers (ending with the output layer ``out_proj``) after
    calling ``super().__init__``, and implement :meth:`initial_state` and :meth:`_run`.

    Args:
        in_features: F_in, features per input sample.
        out_features: F_out, features per output sample.
        cond_dim: C, size of the conditioning vector (0: unconditioned).
        **sizes: the subclass's sizes that must be at least 1 (named in the error).
    """

    out_proj: nn.Linear

    def __init__(self, in_features: int, out_features: int, cond_dim: int, **sizes: int):
        super().__init__()
        if min(in_features, out_features, *sizes.values()) < 1 or cond_dim < 0:
            named = "".join(f", {k}={v}" for k, v in sizes.items())
            raise ValueError(f"bad {type(self).__name__} sizes: in={in_features}, out={out_features}, "
                             f"cond={cond_dim}{named}")
        self.in_features, self.out_features, self.cond_dim = in_features, out_features, cond_dim

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` signals (silence before the first block)."""
        raise NotImplementedError

    def state_entries(self) -> int:
        """Entries of a state tuple (default: one per block in ``self.blocks``)."""
        return len(self.blocks)

    def check_state(self, state: State, x: Tensor) -> None:
        """Raise ValueError when ``state`` cannot be this model's state for ``x``."""
        if len(state) != self.state_entries():
            raise ValueError(f"state has {len(state)} entries, the {type(self).__name__} expects "
                             f"{self.state_entries()}")

    def check_io(self, x: Tensor, cond: Optional[Tensor]) -> None:
        """The family's input checks (x is ``(B, T, F_in)``, cond matches ``cond_dim``); raises ValueError."""
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must be (B, T, {self.in_features}), got {tuple(x.shape)}")
        if self.cond_dim:
            if cond is None or cond.dim() not in (2, 3) or cond.shape[0] != x.shape[0] or cond.shape[-1] != self.cond_dim:
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond must be ({x.shape[0]}, {self.cond_dim}) or (B, T, C), got {got}")

    @torch.no_grad()
    def zero_output_(self) -> "Backbone":
        """Zero the output layer, so the model starts by predicting exactly 0."""
        self.out_proj.weight.zero_()
        self.out_proj.bias.zero_()
        return self

    def _run(self, x: Tensor, cond: Optional[Tensor], state: Optional[State]) -> Tuple[Tensor, State]:
        """One non-empty, checked block; ``state=None`` means silence before it."""
        raise NotImplementedError

    def process(self, x: Tensor, cond: Optional[Tensor], state: Optional[State] = None) -> Tuple[Tensor, State]:
        """Run one block of a stream (any length, 0 included); returns the output block and the new state.

        Shape: x :math:`(B, T, F_{in})` -> :math:`(B, T, F_{out})`; cond :math:`(B, C)` or :math:`(B, T, C)`.
        """
        self.check_io(x, cond)
        if state is not None:
            self.check_state(state, x)
        if x.shape[1] == 0:  # an empty block changes nothing
            state = self.initial_state(x.shape[0]) if state is None else state
            return x.new_zeros(x.shape[0], 0, self.out_features), state
        return self._run(x, cond, state)

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Offline: the whole signal from silence. Shape :math:`(B, T, F_{in})` -> :math:`(B, T, F_{out})`."""
        return self.process(x, cond, None)[0]


BACKBONES: Dict[str, Type[Backbone]] = {}


def register(name: str) -> Callable[[Type[Backbone]], Type[Backbone]]:
    """Class decorator: add a :class:`Backbone` subclass to :data:`BACKBONES` under ``name``."""

    def add(cls: Type[Backbone]) -> Type[Backbone]:
        if name in BACKBONES and BACKBONES[name] is not cls:
            raise ValueError(f"two backbones named {name!r}: {BACKBONES[name].__name__} and {cls.__name__}")
        BACKBONES[name] = cls
        return cls

    return add


def detach_state(state: Any) -> Any:
    """The same nested tuple of tensors, cut from the autograd graph (for truncated BPTT)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state
