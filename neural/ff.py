"""The feed-forward (FF) backbone: a per-sample MLP, as in the CL 1B study.

The CL 1B study's FF model maps the current input sample (and the knobs) to the
current output sample with two fully connected ``tanh`` layers of 32 units and no
memory at all: ``y_n = f(x_n; theta)``. Here the knobs (or the fitted DSP
parameters) enter through a FiLM layer after every hidden layer, as in every
backbone of this package:

    Linear(F_in -> width), tanh, FiLM(cond), [Linear(width -> width), tanh, FiLM(cond)] * (layers - 1),
    Linear(width -> F_out)

The model has no state: streaming is the offline computation on every block, and
its state is the empty tuple. It is the memoryless baseline: it can learn a static
transfer curve per setting, but no attack or release.

Shape:
    - x: :math:`(B, T, F_{in})`, y: :math:`(B, T, F_{out})`
    - cond: :math:`(B, C)` or :math:`(B, T, C)`; None when ``cond_dim = 0``
    - state: ``()``
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .film import FiLM

__all__ = ["FFModel", "check_io"]

_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "silu": nn.SiLU}


def check_io(model: nn.Module, x: Tensor, cond: Optional[Tensor]) -> None:
    """The family's input checks (x is ``(B, T, F_in)``, cond matches ``cond_dim``); raises ValueError."""
    if x.dim() != 3 or x.shape[-1] != model.in_features:
        raise ValueError(f"x must be (B, T, {model.in_features}), got {tuple(x.shape)}")
    if model.cond_dim:
        if cond is None or cond.dim() not in (2, 3) or cond.shape[0] != x.shape[0] or cond.shape[-1] != model.cond_dim:
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"cond must be ({x.shape[0]}, {model.cond_dim}) or (B, T, C), got {got}")


class FFModel(nn.Module):
    """Per-sample MLP with FiLM conditioning (stateless).

    Args:
        in_features: F_in, features per input sample.
        out_features: F_out, features per output sample.
        cond_dim: C, size of the conditioning vector (0: unconditioned).
        width: units per hidden layer.
        layers: number of hidden layers (each followed by FiLM).
        activation: ``tanh`` (the study's choice), ``sigmoid``, ``relu`` or ``silu``.
        film_hidden: hidden width of each FiLM MLP.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        width: int = 32,
        layers: int = 2,
        activation: str = "tanh",
        film_hidden: int = 16,
    ):
        super().__init__()
        if min(in_features, out_features, width, layers) < 1 or cond_dim < 0:
            raise ValueError(
                f"bad FF sizes: in={in_features}, out={out_features}, cond={cond_dim}, width={width}, layers={layers}"
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
        self.in_features, self.out_features, self.cond_dim = in_features, out_features, cond_dim
        self.hidden = nn.ModuleList(nn.Linear(in_features if i == 0 else width, width) for i in range(layers))
        self.act = _ACTIVATIONS[activation]()
        self.films = nn.ModuleList(FiLM(cond_dim, width, film_hidden) for _ in range(layers))
        self.out_proj = nn.Linear(width, out_features)

    def initial_state(self, batch_size: int) -> Tuple[()]:
        """The empty state (the model has no memory)."""
        return ()

    @torch.no_grad()
    def zero_output_(self) -> "FFModel":
        """Zero the output layer, so the model starts by predicting exactly 0."""
        self.out_proj.weight.zero_()
        self.out_proj.bias.zero_()
        return self

    def process(self, x: Tensor, cond: Optional[Tensor], state: Optional[Tuple[()]] = None) -> Tuple[Tensor, Tuple[()]]:
        """One block of a stream (any length, 0 included); returns ``(y_block, ())``."""
        check_io(self, x, cond)
        if state is not None and len(state) != 0:
            raise ValueError(f"the FF model has no state; got a state of {len(state)} entries")
        h = x
        for layer, film in zip(self.hidden, self.films):
            h = film(self.act(layer(h)), cond)
        return self.out_proj(h), ()

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Offline. Shape :math:`(B, T, F_{in})` -> :math:`(B, T, F_{out})`."""
        return self.process(x, cond, None)[0]
