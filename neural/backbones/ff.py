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

from torch import Tensor, nn

from .base import Backbone, register
from .film import FiLM

__all__ = ["FFModel"]

_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "silu": nn.SiLU}


@register("ff")
class FFModel(Backbone):
    """Per-sample MLP with FiLM conditioning (stateless).

    Args:
        in_features, out_features, cond_dim: see :class:`neural.backbones.base.Backbone`.
        width: units per hidden layer.
        layers: number of hidden layers (each followed by FiLM).
        activation: ``tanh`` (the study's choice), ``sigmoid``, ``relu`` or ``silu``.
        film_hidden: hidden width of each FiLM MLP.
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, width: int = 32, layers: int = 2,
                 activation: str = "tanh", film_hidden: int = 16):
        super().__init__(in_features, out_features, cond_dim, width=width, layers=layers)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
        self.hidden = nn.ModuleList(nn.Linear(in_features if i == 0 else width, width) for i in range(layers))
        self.act = _ACTIVATIONS[activation]()
        self.films = nn.ModuleList(FiLM(cond_dim, width, film_hidden) for _ in range(layers))
        self.out_proj = nn.Linear(width, out_features)

    def initial_state(self, batch_size: int) -> Tuple[()]:
        """The empty state (the model has no memory)."""
        return ()

    def state_entries(self) -> int:
        return 0

    def _run(self, x: Tensor, cond: Optional[Tensor], state: Optional[Tuple[()]]) -> Tuple[Tensor, Tuple[()]]:
        h = x
        for layer, film in zip(self.hidden, self.films):
            h = film(self.act(layer(h)), cond)
        return self.out_proj(h), ()
