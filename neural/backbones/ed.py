"""The encoder-decoder (ED) backbone of the CL 1B study, without teacher forcing.

For every output sample ``t`` the encoder reads the ``window`` input samples before
it, ``x[t - window], ..., x[t - 1]``, and hands its final state to the decoder, which
predicts the output at ``t`` from the input at ``t`` alone (one decoder step started
from the encoder's state). No ground-truth output is fed back, so training and
inference are the same computation. The conditioning (knobs, or the fitted DSP
parameters) modulates the encoder's final hidden state with FiLM before it starts
the decoder: the study fed threshold and ratio to the encoder; here, as in every
backbone of this package, it is a FiLM layer.

Encoders (``encoder=``):

- ``"lstm"`` (the study's): one LSTM layer run over each window from a zero state;
  its final ``(h, c)``.
- ``"conv"``: a causal convolution with kernel ``window`` (one matmul on the
  window), ``tanh``, and a 1x1 convolution to ``(h, c)``; the ED-CNN variant, much
  cheaper to train.

The decoder is one ``LSTMCell`` step; a linear layer reads its hidden state out.

Training cost: the windows of all ``B * T`` samples are encoded as batches of
``(2048, window, F_in)`` sequences (``Tensor.unfold``, no Python loop over time):
``window`` LSTM steps per sample, parallel over time. The LSTM encoder keeps its
gates for the backward pass (about ``B * T * window * 6 * hidden`` floats); the conv
encoder about ``B * T * 3 * hidden``, and is faster (``docs/experiments.md``).

Streaming: the state is the last ``window`` input samples; block-wise output equals
the offline output. Before the first sample the input is taken as silence.

Shape:
    - x: :math:`(B, T, F_{in})`, y: :math:`(B, T, F_{out})`
    - cond: :math:`(B, C)` or :math:`(B, T, C)`; None when ``cond_dim = 0``
    - state: ``(past,)`` with past :math:`(B, window, F_{in})`, oldest sample first
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .base import Backbone, register
from .film import FiLM

__all__ = ["EDModel"]

EDState = Tuple[Tensor]
_ENCODER_BATCH = 2048  # windows per LSTM call when encoding


@register("ed")
class EDModel(Backbone):
    """Window encoder, FiLM on its state, one-step LSTM decoder, linear read-out.

    Args:
        in_features, out_features, cond_dim: see :class:`neural.backbones.base.Backbone`.
        hidden: units of the encoder and of the decoder.
        window: past input samples the encoder reads (the study's best: 16).
        encoder: ``"lstm"`` or ``"conv"`` (see the module doc).
        film_hidden: hidden width of the FiLM MLP.
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, hidden: int = 16, window: int = 16,
                 encoder: str = "lstm", film_hidden: int = 16):
        super().__init__(in_features, out_features, cond_dim, hidden=hidden, window=window)
        if encoder not in ("lstm", "conv"):
            raise ValueError(f"unknown encoder {encoder!r}; choose 'lstm' or 'conv'")
        self.hidden, self.window, self.encoder_kind = hidden, window, encoder
        if encoder == "lstm":
            self.encoder = nn.LSTM(in_features, hidden, batch_first=True)
        else:
            self.encoder = nn.Sequential(
                nn.Linear(window * in_features, hidden), nn.Tanh(), nn.Linear(hidden, 2 * hidden)
            )
        self.film = FiLM(cond_dim, hidden, film_hidden)
        self.decoder = nn.LSTMCell(in_features, hidden)
        self.out_proj = nn.Linear(hidden, out_features)

    def initial_state(self, batch_size: int) -> EDState:
        """Silence before the first block."""
        w = self.out_proj.weight
        return (w.new_zeros(batch_size, self.window, self.in_features),)

    def check_state(self, state: EDState, x: Tensor) -> None:
        if len(state) != 1 or state[0].shape != (x.shape[0], self.window, x.shape[2]):
            raise ValueError(f"ED state must be ((B, {self.window}, {x.shape[2]}),)")

    def _encode(self, windows: Tensor) -> Tuple[Tensor, Tensor]:
        """Windows (B, T, F_in, window) -> the decoder's initial (h, c), each (B, T, hidden)."""
        b, t = windows.shape[:2]
        if self.encoder_kind == "lstm":
            seq = windows.permute(0, 1, 3, 2).reshape(b * t, self.window, self.in_features)
            # a few thousand windows per call: the LSTM kernels stay in cache (2-3x faster)
            finals = [self.encoder(part)[1] for part in seq.split(_ENCODER_BATCH)]  # (h, c), each (1, n, H)
            h, c = (torch.cat([final[i][0] for final in finals]) for i in (0, 1))
            return h.reshape(b, t, self.hidden), c.reshape(b, t, self.hidden)
        h, c = self.encoder(windows.transpose(2, 3).reshape(b, t, self.window * self.in_features)).chunk(2, dim=-1)
        return torch.tanh(h), c

    def _run(self, x: Tensor, cond: Optional[Tensor], state: Optional[EDState]) -> Tuple[Tensor, EDState]:
        b, t, f = x.shape
        if state is None:
            state = self.initial_state(b)
        seq = torch.cat([state[0], x], dim=1)  # (B, window + T, F)
        windows = seq[:, :-1].unfold(1, self.window, 1)  # (B, T, F, window): samples t - window .. t - 1
        h, c = self._encode(windows)
        h = self.film(h, cond)
        h, _ = self.decoder(x.reshape(b * t, f), (h.reshape(b * t, self.hidden), c.reshape(b * t, self.hidden)))
        y = self.out_proj(h).reshape(b, t, self.out_features)
        return y, (seq[:, -self.window:].clone(),)
