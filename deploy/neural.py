"""Trained neural compressors (S6, LSTM, LRU and FF backbones) as streaming TorchScript modules.

The project's own modules are not scriptable as they stand (the S6 stack calls a numba
kernel, the stack's state is a tuple of anything), so this module rebuilds the same
computation from their weights in plain torch, written for ``torch.jit.script`` and for
few tensor operations per block (each costs about a microsecond of dispatch, whatever
its size; a 64-sample block holds one or two control frames):

- What depends only on the setting is computed when the setting changes, not per block:
  the DSP constants, the conditioning vector, every FiLM layer's scale and shift, folded
  with the GLU's projection (and the S6 block's output projection) into one matrix per
  layer, and the audio path's shaper coefficients.
- The first layer's projections take the frame features directly (the stack's input
  projection folded in); the S6 block's causal convolution is one matrix product over
  the unfolded window; over many frames (long buffers) its scan is a closed form of cumulative
  sums; an LSTM layer steps its few frames as a handful of operations each (``torch.nn.LSTM``'s
  call costs more than that for short buffers); an LRU layer's step is one real matrix product
  (the diagonal complex ``lambda`` on the state's real and imaginary parts).
- The control rate's per-sample ramp is one product with a matrix cached per block
  length and frame phase.
- The DSP part and the audio path are :mod:`deploy.compressor`, :mod:`deploy.graybox`
  and :mod:`deploy.audio_path` (block matrices, the gain solved over the block).

Classes: :class:`ScriptS6Layer`, :class:`ScriptLSTMLayer`, :class:`ScriptLRULayer` (a block,
FiLM, GLU and the residual), :class:`ScriptStack` (the conditioned stack, :mod:`neural.backbones.stack`),
:class:`ScriptFF` (the per-sample MLP, :mod:`neural.backbones.ff`), :class:`ScriptHead`
(the output form, per sample or at the control rate, :mod:`neural.control`) and
:class:`NeuralCompressor` (the model with its knob map, ``forward(x, peak_reduction,
mode)``, the DSP and the conditioning computed inside, state kept between calls).

:data:`EXPORTABLE_BACKBONES` lists what converts; :func:`neural_module` builds the
module from a loaded checkpoint or raises :class:`common.errors.UserError`.

Shape (``NeuralCompressor.forward``): x :math:`(T,)` or :math:`(C, T)` (the channels
run as a batch, linked DSP detection, as :class:`neural.inference.BlockProcessor`);
returns the same shape and dtype.
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types
import math
from typing import Dict, Final, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import UserError
from deploy.audio_path import ScriptAudioPath
from deploy.compressor import PARAM_ORDER, KnobMapCurves, _mode_slot, _setting, _StreamingDSP, checked_setting
from deploy.graybox import GRAYBOX_ORDER, _StreamingGraybox
from deploy.opto import OPTO_ORDER, _StreamingOpto

# model class -> (its exported DSP module, its parameter order)
_DSP_MODULES = {"ff5": (_StreamingDSP, PARAM_ORDER), "graybox": (_StreamingGraybox, GRAYBOX_ORDER),
                "opto": (_StreamingOpto, OPTO_ORDER)}

__all__ = ["EXPORTABLE_BACKBONES", "ScriptS6Layer", "ScriptLSTMLayer", "ScriptLRULayer", "ScriptStack", "ScriptFF", "ScriptHead",
           "NeuralCompressor", "neural_module"]

EXPORTABLE_BACKBONES = ("s6", "lstm", "lru", "ff")
STREAM_PIECE = 4096   # the longest block processed at once; a longer call (a whole file) runs as consecutive pieces


def _detached(t: Tensor) -> Tensor:
    return t.detach().clone().float()


class _FiLMNet(nn.Module):
    """A FiLM layer's MLP (``Linear, SiLU, Linear``) from its weights, or the identity's (no net)."""

    def __init__(self, film: nn.Module, channels: int):
        super().__init__()
        self.present = film.net is not None
        net = film.net
        self.register_buffer("w1", _detached(net[0].weight) if self.present else torch.zeros(1, 1))
        self.register_buffer("b1", _detached(net[0].bias) if self.present else torch.zeros(1))
        self.register_buffer("w2", _detached(net[2].weight) if self.present else torch.zeros(2 * channels, 1))
        self.register_buffer("b2", _detached(net[2].bias) if self.present else torch.zeros(2 * channels))
        self.channels = channels

    def scale_shift(self, cond: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """``(1 + gamma, beta)`` for a ``(1, C)`` cond, each :math:`(1, D)`."""
        if not self.present or cond is None:
            return torch.ones(1, self.channels), torch.zeros(1, self.channels)
        out = F.linear(F.silu(F.linear(cond, self.w1, self.b1)), self.w2, self.b2)
        gamma, beta = out.chunk(2, dim=-1)
        return gamma + 1.0, beta


def _output_fold(module: nn.Module, glu, film, width: int, inner: int) -> None:
    """The GLU and FiLM after a layer's block, as buffers that ``configure`` folds into one
    map ``(2 width, inner)`` per setting; configured for no conditioning."""
    module.register_buffer("glu_w", _detached(glu.proj.weight))
    module.register_buffer("glu_b", _detached(glu.proj.bias))
    module.film = _FiLMNet(film, width)
    module.register_buffer("w_fold", torch.zeros(2 * width, inner))
    module.register_buffer("b_fold", torch.zeros(2 * width))
    module.configure(None)


def _fold_glu(glu_w: Tensor, glu_b: Tensor, scale: Tensor, shift: Tensor) -> Tuple[Tensor, Tensor]:
    """``W_g (y (1 + gamma) + beta) + b_g`` as one linear map of ``y``."""
    return glu_w * scale, F.linear(shift, glu_w, glu_b).reshape(-1)


def _input_fold(module: nn.Module, w_block: Tensor, b_block: Tensor, in_proj: Optional[nn.Module]) -> None:
    """The block's input map as buffers ``w_in``, ``b_in`` (and ``b_base``, the bias before a
    setting's offset); for the first layer folded with the stack's input projection:
    ``[h, block input] = W [feats] + b``."""
    if in_proj is not None:
        w_in, b_in = in_proj.weight.detach().float(), in_proj.bias.detach().float()
        w = torch.cat([w_in, w_block @ w_in], 0)
        b = torch.cat([b_in, w_block @ b_in + b_block], 0)
    else:
        w, b = w_block, b_block
    module.register_buffer("w_in", w.clone())
    module.register_buffer("b_in", b.clone())
    module.register_buffer("b_base", b.clone())


class _FiLMOutputLayer(nn.Module):
    """A layer whose block output goes straight to FiLM and the GLU (LSTM, LRU): ``configure``
    folds FiLM at ``cond`` (1, C) into the GLU's projection and restores the input bias."""

    @torch.jit.export
    def configure(self, cond: Optional[Tensor]) -> None:
        scale, shift = self.film.scale_shift(cond)
        w, b = _fold_glu(self.glu_w, self.glu_b, scale, shift)
        self.w_fold = w
        self.b_fold = b
        self.b_in = self.b_base


def _scan_closed(log_a: Tensor, b: Tensor, s0: Tensor) -> Tensor:
    """``s_t = exp(log_a_t) s_{t-1} + b_t`` over the frame axis in closed form, for many frames at once.

    With ``L = cumsum(log_a)`` (``<= 0``): ``s_t = exp(L_t) (s0 + sum_{k<=t} exp(-L_k) b_k)``, in
    float64 (each term's error relative to the largest ``|b|``); a few operations for any number
    of frames instead of one per frame. Where ``L`` falls below -600 within the block (``exp(-L)``
    would leave float64's range) it steps frame by frame instead.

    Shapes: log_a, b :math:`(B, T, d, N)`, s0 :math:`(B, 1, d, N)` -> :math:`(B, T, d, N)` in b's dtype.
    """
    cum = log_a.to(torch.float64).cumsum(1)
    if bool(cum.amin() > -600.0):
        acc = (torch.exp(-cum) * b).cumsum(1).add_(s0)
        return torch.exp(cum).mul_(acc).to(b.dtype)
    states: List[Tensor] = []
    s = s0
    for a_t, b_t in zip(torch.exp(log_a).split(1, 1), b.split(1, 1)):
        s = torch.addcmul(b_t, a_t, s)
        states.append(s)
    return torch.cat(states, 1)


class ScriptS6Layer(nn.Module):
    """One S6 layer of the stack (:class:`neural.backbones.s6.S6Block`, FiLM, GLU, residual).

    The first layer takes the frame features and applies the stack's input projection
    itself (folded with the block's input projection). State: ``[conv tail, h]``.
    """

    first: Final[bool]

    def __init__(self, block: nn.Module, film: nn.Module, glu: nn.Module, width: int,
                 in_proj: Optional[nn.Module] = None):
        super().__init__()
        d, n = block.d_inner, block.d_state
        self.d_inner, self.d_state, self.d_conv, self.width = d, n, block.d_conv, width
        self.first = in_proj is not None
        _input_fold(self, block.in_proj.weight.detach().float(), torch.zeros(2 * d), in_proj)   # [h,] u, z
        conv = block.conv_weight.detach().float()                           # (d, taps)
        taps = conv.shape[1]
        # the depthwise conv on the unfolded window (d, taps) -> one matrix (d, d * taps)
        block_diag = torch.zeros(d, d, taps)
        block_diag[torch.arange(d), torch.arange(d)] = conv
        self.register_buffer("w_conv", block_diag.reshape(d, d * taps).clone())
        self.register_buffer("b_conv", _detached(block.conv_bias))
        self.register_buffer("w_x", _detached(block.x_proj.weight))
        self.register_buffer("b_x", _detached(block.x_proj.bias))
        self.register_buffer("neg_a", -torch.exp(block.A_log.detach().float()))
        self.register_buffer("skip", _detached(block.D))
        self.register_buffer("w_out", _detached(block.out_proj.weight))     # (width, d)
        _output_fold(self, glu, film, width, d)

    @torch.jit.export
    def configure(self, cond: Optional[Tensor]) -> None:
        """Fold FiLM at ``cond`` (1, C) and the GLU's projection into one map after the block."""
        scale, shift = self.film.scale_shift(cond)
        w, b = _fold_glu(self.glu_w, self.glu_b, scale, shift)
        self.w_fold = w @ self.w_out
        self.b_fold = b
        self.b_in = self.b_base

    def initial_state(self, batch: int) -> List[Tensor]:
        # the scan state keeps a frame axis, (B, 1, d, N): a one-frame block then needs no reshaping
        return [torch.zeros(batch, self.d_conv - 1, self.d_inner), torch.zeros(batch, 1, self.d_inner, self.d_state)]

    def forward(self, h: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        d = self.d_inner
        steps = h.shape[1]
        if self.first:
            h, u, z = F.linear(h, self.w_in, self.b_in).split([self.width, d, d], -1)
        else:
            u, z = F.linear(h, self.w_in).split([d, d], -1)
        ext = torch.cat([state[0], u], 1)
        tail = ext.narrow(1, steps, self.d_conv - 1)
        u = F.silu(F.linear(ext.unfold(1, self.d_conv, 1).reshape(h.shape[0], steps, d * self.d_conv),
                            self.w_conv, self.b_conv))
        delta, b_in, c_out = F.linear(u, self.w_x, self.b_x).split([d, self.d_state, self.d_state], -1)
        delta = F.softplus(delta)
        a = torch.exp(delta.unsqueeze(-1) * self.neg_a)                      # (B, T, d, N)
        b = (delta * u).unsqueeze(-1) * b_in.unsqueeze(2)                   # (B, T, d, N)
        s = state[1]
        if steps == 1:
            s = torch.addcmul(b, a, s)
            hs = s
        elif steps <= 8:
            states: List[Tensor] = []
            for a_t, b_t in zip(a.split(1, 1), b.split(1, 1)):
                s = torch.addcmul(b_t, a_t, s)
                states.append(s)
            hs = torch.cat(states, 1)
        else:
            hs = _scan_closed(delta.unsqueeze(-1) * self.neg_a, b, s)
            s = hs.narrow(1, steps - 1, 1)
        y = torch.addcmul((hs * c_out.unsqueeze(2)).sum(-1), u, self.skip)
        v = F.linear(y * F.silu(z), self.w_fold, self.b_fold)               # out_proj, FiLM, GLU projection
        return h + F.glu(v, -1), [tail, s]


class ScriptLSTMLayer(_FiLMOutputLayer):
    """One LSTM layer of the stack (:class:`neural.backbones.lstm.LSTMBlock`, FiLM, GLU, residual).

    The first layer takes the frame features and applies the stack's input projection
    itself (folded with the input-to-gates projection). State: ``[h, c]``, each (B, width).
    A few steps (control frames) run as a handful of operations each; longer blocks (a
    per-sample model, long buffers) use ``torch.nn.LSTM``'s loop, whose call costs more but
    its steps less.
    """

    first: Final[bool]

    def __init__(self, block: nn.Module, film: nn.Module, glu: nn.Module, width: int,
                 in_proj: Optional[nn.Module] = None):
        super().__init__()
        lstm = block.lstm
        self.width = width
        self.first = in_proj is not None
        b_gates = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().float()
        _input_fold(self, lstm.weight_ih_l0.detach().float(), b_gates, in_proj)   # [h,] gates from the input
        self.register_buffer("w_hh_t", _detached(lstm.weight_hh_l0).t().contiguous())   # (width, 4 width)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.lstm.load_state_dict(lstm.state_dict())
        self.lstm.float()
        _output_fold(self, glu, film, width, width)

    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, self.width), torch.zeros(batch, self.width)]

    def forward(self, h: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        steps = h.shape[1]
        hx, cx = state[0], state[1]
        if steps > 8:   # a long block: nn.LSTM's loop (its input projection its own)
            if self.first:
                h = F.linear(h, self.w_in.narrow(0, 0, self.width), self.b_in.narrow(0, 0, self.width))
            y, (hn, cn) = self.lstm(h, (hx.unsqueeze(0), cx.unsqueeze(0)))
            v = F.linear(y, self.w_fold, self.b_fold)
            return h + F.glu(v, -1), [hn.squeeze(0), cn.squeeze(0)]
        if self.first:
            h, gates = F.linear(h, self.w_in, self.b_in).split([self.width, 4 * self.width], -1)
        else:
            gates = F.linear(h, self.w_in, self.b_in)
        outs: List[Tensor] = []
        w = self.width
        for g_t in gates.unbind(1):   # torch's gate order: input, forget, cell, output
            z = torch.addmm(g_t, hx, self.w_hh_t)
            i, f, g, o = torch.sigmoid(z).chunk(4, 1)
            cx = torch.addcmul(f * cx, i, torch.tanh(z.narrow(1, 2 * w, w)))
            hx = o * torch.tanh(cx)
            outs.append(hx)
        y = outs[0].unsqueeze(1) if steps == 1 else torch.stack(outs, 1)
        v = F.linear(y, self.w_fold, self.b_fold)                           # FiLM, GLU projection
        return h + F.glu(v, -1), [hx, cx]


class ScriptLRULayer(_FiLMOutputLayer):
    """One LRU layer of the stack (:class:`neural.backbones.lru.LRUBlock`, FiLM, GLU, residual).

    The complex recurrence ``h_t = lambda h_{t-1} + gamma B u_t`` on the state's real and
    imaginary parts side by side, ``[re, im]`` :math:`(B, 2N)`, so that multiplying by the
    diagonal ``lambda`` is one real ``(2N, 2N)`` matrix and a step is one ``addmm``; in float64,
    as the compiled scan of the Python path accumulates it, the carried state rounded to float32
    at the end of a block as that path's complex64 state is. The first layer takes the frame
    features and applies the stack's input projection itself (folded with the LRU's input map).
    State: ``[h]``, :math:`(B, 2N)` float64.
    """

    first: Final[bool]

    def __init__(self, block: nn.Module, film: nn.Module, glu: nn.Module, width: int,
                 in_proj: Optional[nn.Module] = None):
        super().__init__()
        lru = block.lru
        n = lru.state
        self.n_state, self.width = n, width
        self.first = in_proj is not None
        w_b = (lru.B * torch.exp(lru.gamma_log).view(-1, 1, 1)).detach().float()   # (N, width, 2)
        w_u = torch.cat([w_b[..., 0], w_b[..., 1]], 0)                           # rows: all re, then all im
        _input_fold(self, w_u, torch.zeros(2 * n), in_proj)                     # [h,] bu_re, bu_im
        lam = torch.exp(lru.log_eigenvalues().detach())                         # complex128 (N,)
        re, im = torch.diag(lam.real), torch.diag(lam.imag)
        # [re, im] @ step = [lam_re re - lam_im im, lam_im re + lam_re im]: lambda times the state
        self.register_buffer("step", torch.cat([torch.cat([re, im], 1), torch.cat([-im, re], 1)], 0))
        c = lru.C.detach().float()                                               # (width, N, 2)
        self.register_buffer("w_c", torch.cat([c[..., 0], -c[..., 1]], 1).contiguous())   # Re(C h) on [re, im]
        self.register_buffer("skip", _detached(lru.D))
        _output_fold(self, glu, film, width, width)

    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 2 * self.n_state, dtype=torch.float64)]

    def forward(self, h: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        steps = h.shape[1]
        if self.first:
            h, bu = F.linear(h, self.w_in, self.b_in).split([self.width, 2 * self.n_state], -1)
        else:
            bu = F.linear(h, self.w_in)
        s = state[0]
        states: List[Tensor] = []
        for b_t in bu.double().unbind(1):
            s = torch.addmm(b_t, s, self.step)
            states.append(s)
        # the Python path's states are complex64: the read-out and the carried state in float32
        states32 = torch.stack(states, 1).float()
        y = F.gelu(torch.addcmul(F.linear(states32, self.w_c), h, self.skip))
        v = F.linear(y, self.w_fold, self.b_fold)                                # FiLM, GLU projection
        return h + F.glu(v, -1), [states32[:, steps - 1].double()]


class ScriptStack(nn.Module):
    """:class:`neural.backbones.stack.ConditionedStack` (S6, LSTM or LRU blocks) from its weights.

    ``forward(features (B, T, F_in), state) -> (out (B, T), state)``.
    """

    def __init__(self, stack: nn.Module, backbone: str):
        super().__init__()
        width = stack.in_proj.out_features
        kind = {"s6": ScriptS6Layer, "lstm": ScriptLSTMLayer, "lru": ScriptLRULayer}[backbone]
        self.layers = nn.ModuleList(kind(b, f, g, width, stack.in_proj if i == 0 else None)
                                    for i, (b, f, g) in enumerate(zip(stack.blocks, stack.films, stack.glus)))
        self.register_buffer("w_out", _detached(stack.out_proj.weight))
        self.register_buffer("b_out", _detached(stack.out_proj.bias))
        self.register_buffer("g_column", torch.zeros(0))   # the first map's gain column (control rate)

    def permute_inputs(self, order: List[int], scale: List[float]) -> None:
        """Feed the first layer its inputs in another order, each scaled (column j of the
        weight becomes column ``order[j]`` times ``scale[j]``); Python side, before scripting."""
        first = self.layers[0]
        first.w_in = (first.w_in[:, order] * torch.tensor(scale)).contiguous()
        self.g_column = first.w_in[:, -1].clone()

    def scale_output(self, factor: float) -> None:
        """Multiply the output by ``factor`` (folded into the last map); Python side, before scripting."""
        self.w_out = self.w_out * factor
        self.b_out = self.b_out * factor

    @torch.jit.export
    def configure(self, cond: Optional[Tensor], g_offset: float) -> None:
        """At a setting: FiLM at ``cond``; ``g_offset`` added to the gain feature (folded into the bias)."""
        for layer in self.layers:
            layer.configure(cond)
        if g_offset != 0.0:
            first = self.layers[0]
            first.b_in = first.b_in + g_offset * self.g_column

    def initial_state(self, batch: int) -> List[List[Tensor]]:
        return [layer.initial_state(batch) for layer in self.layers]

    def forward(self, x: Tensor, state: List[List[Tensor]]) -> Tuple[Tensor, List[List[Tensor]]]:
        h = x
        new_state: List[List[Tensor]] = []
        i = 0
        for layer in self.layers:
            h, s = layer(h, state[i])
            new_state.append(s)
            i += 1
        return F.linear(h, self.w_out, self.b_out).squeeze(-1), new_state


class ScriptFF(nn.Module):
    """:class:`neural.backbones.ff.FFModel` from its weights: no memory, its state the empty list.

    Each FiLM (after a layer's activation) is folded into the next linear map at the setting.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.act = {"Tanh": "tanh", "Sigmoid": "sigmoid", "ReLU": "relu", "SiLU": "silu"}[type(model.act).__name__]
        self.weights = [_detached(layer.weight) for layer in model.hidden] + [_detached(model.out_proj.weight)]
        self.biases = [_detached(layer.bias) for layer in model.hidden] + [_detached(model.out_proj.bias)]
        self.films = nn.ModuleList(_FiLMNet(film, layer.out_features) for layer, film in zip(model.hidden, model.films))
        self.folded_w: List[Tensor] = list(self.weights)
        self.folded_b: List[Tensor] = list(self.biases)
        self.g_column = torch.zeros(0)

    def permute_inputs(self, order: List[int], scale: List[float]) -> None:
        """As :meth:`ScriptStack.permute_inputs`."""
        self.weights[0] = (self.weights[0][:, order] * torch.tensor(scale)).contiguous()
        self.folded_w[0] = self.weights[0]
        self.g_column = self.weights[0][:, -1].clone()

    def scale_output(self, factor: float) -> None:
        """As :meth:`ScriptStack.scale_output`."""
        self.weights[-1] = self.weights[-1] * factor
        self.biases[-1] = self.biases[-1] * factor
        self.folded_w[-1] = self.weights[-1]
        self.folded_b[-1] = self.biases[-1]

    @torch.jit.export
    def configure(self, cond: Optional[Tensor], g_offset: float) -> None:
        w: List[Tensor] = [self.weights[0]]
        b: List[Tensor] = [self.biases[0] + g_offset * self.g_column if g_offset != 0.0 else self.biases[0]]
        i = 0
        for film in self.films:   # FiLM after layer i's activation: into layer i + 1's map
            scale, shift = film.scale_shift(cond)
            nxt_w, nxt_b = self.weights[i + 1], self.biases[i + 1]
            w.append(nxt_w * scale)
            b.append(F.linear(shift, nxt_w, nxt_b).reshape(-1))
            i += 1
        self.folded_w = w
        self.folded_b = b

    def _act(self, h: Tensor) -> Tensor:
        if self.act == "tanh":
            return torch.tanh(h)
        if self.act == "sigmoid":
            return torch.sigmoid(h)
        if self.act == "relu":
            return torch.relu(h)
        return F.silu(h)

    def initial_state(self, batch: int) -> List[List[Tensor]]:
        empty: List[List[Tensor]] = []
        return empty

    def forward(self, x: Tensor, state: List[List[Tensor]]) -> Tuple[Tensor, List[List[Tensor]]]:
        h = x
        last = len(self.folded_w) - 1
        for i in range(last):
            h = self._act(F.linear(h, self.folded_w[i], self.folded_b[i]))
        return F.linear(h, self.folded_w[last], self.folded_b[last]).squeeze(-1), state


def _backbone(head: nn.Module) -> nn.Module:
    if head.backbone_name == "ff":
        return ScriptFF(head.backbone)
    return ScriptStack(head.backbone, head.backbone_name)


class ScriptHead(nn.Module):
    """A head of :mod:`neural.heads` around a :class:`ScriptStack` or :class:`ScriptFF`, per sample or per frame.

    ``correction(x, y_dsp, gain, log_drive, state, frame_state)``: the backbone's prediction
    per sample (``(C, n)``); ``gain`` is the DSP gain times its make-up (times the tube drive
    ``10^log_drive`` for a gray-box), ``(1, n)`` float64. The frame state (control rate only)
    is ``[pending x, x before them, last two predictions]``.

    At the control rate the frame features come in the order RMS, RMS of the difference,
    peak (each as ``log10`` of the mean square or squared peak, floored at 1e-8) and the
    gain in dB / 20: the first layer's input weights are permuted and halved to match
    (:mod:`neural.control`'s RMS, peak, RMS of the difference, in ``log10`` of the level).
    """

    kind: Final[str]
    uses_dsp: Final[bool]
    level_feature: Final[bool]
    frame: Final[int]
    ramps: Dict[int, Tensor]

    def __init__(self, head: nn.Module):
        super().__init__()
        self.kind = {"HybridGainDB": "hybrid_gain", "HybridAdditive": "hybrid_add",
                     "BlackBoxGain": "blackbox"}[type(head).__name__]
        self.uses_dsp = bool(head.uses_dsp)
        self.level_feature = bool(head.level_feature)
        self.frame = int(head.frame)
        self.stack = _backbone(head)
        if self.frame > 1:
            order = [0, 2, 1] + ([3] if self.uses_dsp else [])
            self.stack.permute_inputs(order, [0.5, 0.5, 0.5, 1.0][:len(order)])
        if self.kind != "hybrid_add":   # a gain in dB / 20: its exp(ln 10 o) with ln 10 in the last map
            self.stack.scale_output(2.302585092994046)
        self.ramps = {}

    def _frame_features(self, xs: Tensor, x_before: Tensor, gain: Tensor, lead: int, frames: int) -> Tensor:
        """(C, frames, 3 or 4) (see the class doc)."""
        c, w = xs.shape[0], self.frame
        whole = xs.narrow(1, 0, frames * w)
        sq = torch.stack([whole.reshape(c, frames, w),
                          torch.diff(whole, dim=1, prepend=x_before).reshape(c, frames, w)], 2).square_()
        levels = torch.cat([sq.mean(-1), sq.select(2, 0).amax(-1, keepdim=True)], -1).clamp_min_(1e-8).log10_()
        if not self.uses_dsp:
            return levels
        # the gain at each frame's last sample (the first frame ends after w - lead samples of this
        # block), in dB / 20: log10 of the scaled gain; the tube drive's share is in the first bias
        g = gain.as_strided([1, frames], [gain.shape[1], w], gain.storage_offset() + w - 1 - lead)
        g = g.to(torch.float32).log10_()
        return torch.cat([levels, g.expand(c, frames).unsqueeze(-1)], -1)

    def _ramp(self, lead: int, n: int, frames: int) -> Tensor:
        """(frames + 2, n): the per-sample ramp between consecutive predictions as one matrix."""
        key = n * self.frame + lead
        r = self.ramps.get(key)
        if r is None:
            if len(self.ramps) >= 256:
                self.ramps.clear()
            t = torch.arange(lead, lead + n)
            q = torch.div(t, self.frame, rounding_mode="floor")
            frac = (t - q * self.frame + 1).float() / float(self.frame)     # neural.control's ramp
            r = torch.zeros(frames + 2, n)
            r.scatter_(0, q.unsqueeze(0), (1.0 - frac).unsqueeze(0))
            r.scatter_add_(0, (q + 1).unsqueeze(0), frac.unsqueeze(0))
            self.ramps[key] = r
        return r

    def _frames(self, x: Tensor, gain: Tensor, state: List[List[Tensor]],
                frame_state: List[Tensor]) -> Tuple[Tensor, List[List[Tensor]], List[Tensor]]:
        pend, x_before, last2 = frame_state[0], frame_state[1], frame_state[2]
        lead = pend.shape[1]
        xs = torch.cat([pend, x], 1)
        span = xs.shape[1]
        frames = span // self.frame
        whole = frames * self.frame
        c = last2
        rest = xs
        if frames > 0:
            o, state = self.stack(self._frame_features(xs, x_before, gain, lead, frames), state)
            c = torch.cat([last2, o], 1)
            before, x_before, rest = xs.split([whole - 1, 1, span - whole], 1)
        out = c @ self._ramp(lead, x.shape[1], frames)
        return out, state, [rest, x_before, c.narrow(1, c.shape[1] - 2, 2)]

    def _features(self, x: Tensor, y_dsp: Tensor, gain: Tensor, log_drive: float) -> Tensor:
        if self.uses_dsp:
            g20 = (torch.log10(gain) - log_drive).to(torch.float32)
            f = torch.stack([x, y_dsp.to(torch.float32), g20.expand(x.shape[0], -1)], dim=-1)
        else:
            f = x.unsqueeze(-1)
        if self.level_feature:
            f = torch.cat([f, torch.log10(x.abs().clamp_min(1e-4)).unsqueeze(-1)], dim=-1)
        return f

    def initial_frame_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 0), torch.zeros(batch, 1), torch.zeros(batch, 2)]

    def correction(self, x: Tensor, y_dsp: Tensor, gain: Tensor, log_drive: float, state: List[List[Tensor]],
                   frame_state: List[Tensor]) -> Tuple[Tensor, List[List[Tensor]], List[Tensor]]:
        if self.frame > 1:
            return self._frames(x, gain, state, frame_state)
        o, state = self.stack(self._features(x, y_dsp, gain, log_drive), state)
        return o, state, frame_state

    def output(self, o: Tensor, x: Tensor, y_dsp: Tensor) -> Tensor:
        """The output form; ``o`` comes times ln 10 for the gain forms (:meth:`__init__`)."""
        if self.kind == "hybrid_gain":
            return y_dsp * torch.exp(o)
        if self.kind == "hybrid_add":
            return y_dsp + o
        return x * torch.exp(o)


class NeuralCompressor(nn.Module):
    """A trained LA-2A model with its knob map: ``forward(x, peak_reduction, mode)``.

    Peak reduction must lie in 0..100 and mode in 0..1, at or above 0.5 limit
    (:func:`deploy.compressor.checked_setting`; anything else raises). The DSP
    parameters (hybrids, fitted conditioning) come from the knob map inside; the state
    (DSP gain, backbone, control-rate frame, audio path) carries between calls;
    ``reset()`` returns to silence, and a block with another number of channels starts a
    fresh stream. What depends on the setting alone is computed when it changes.

    Args:
        model: the loaded model (a head, or :class:`neural.checkpoint.CondNormalised`).
        table: the knob map's table ``{mode: {pr: params}}``.
        conditioning: ``fitted``, ``knobs`` or ``fitted+knobs``.
        sample_rate: the rate it was trained at (the only one it runs at).
        compressor: the map's model class (``ff5``, ``graybox``, ``opto``): its exported DSP
            module gives the hybrid's gain feature and DSP output.
    """

    channels: int
    state: List[List[Tensor]]
    frame_state: List[Tensor]
    staged: Final[bool]      # constants: TorchScript compiles only the branches they select
    has_path: Final[bool]
    needs_params: Final[bool]
    piece: Final[int]
    uses_dsp: Final[bool]
    peak_reduction: float
    mode: int
    cond: Optional[Tensor]
    log_drive: float

    def __init__(self, model: nn.Module, table, conditioning: str, sample_rate: int, compressor: str):
        super().__init__()
        head = getattr(model, "head", model)
        self.head = ScriptHead(head)
        self.piece = STREAM_PIECE
        self.uses_dsp = self.head.uses_dsp
        self.normalise = hasattr(model, "mean")
        dim = int(head.cond_dim)
        self.register_buffer("cond_mean", model.mean.detach().clone() if self.normalise else torch.zeros(dim))
        self.register_buffer("cond_std", model.std.detach().clone() if self.normalise else torch.ones(dim))
        self.cond_clip = float(model.clip) if self.normalise else 0.0
        self.conditioning = conditioning
        self.conditioned = dim > 0
        self.needs_params = self.head.uses_dsp or conditioning != "knobs"
        # the class's exported DSP module: its scaled gain is the hybrid's gain feature, and a gray-box
        # or opto map's output is its stage's (the blocks around that gain), an ff5 map's x * gain
        front, order = _DSP_MODULES[compressor]
        self.drive_index = order.index("tube_drive") if "tube_drive" in order else -1   # -1: no stage
        self.curves = KnobMapCurves(table, order)
        self.dsp = front(sample_rate)
        self.staged = self.drive_index >= 0
        path = getattr(head, "audio_path", None)
        self.has_path = path is not None
        self.path = ScriptAudioPath(path) if path is not None else nn.Identity()
        self.sample_rate = int(sample_rate)
        self.peak_reduction = math.nan   # the setting the module is configured for
        self.mode = -1
        self.cond = None
        self.log_drive = 0.0
        self.no_gain = torch.ones(1, 1, dtype=torch.float64)   # a black box has no DSP gain
        self.requires_grad_(False)  # an inference module: outputs carry no autograd graph
        self.reset()

    @torch.jit.export
    def reset(self) -> None:
        self.dsp.reset()
        if self.has_path:
            self.path.reset()
        self.channels = 0
        empty_state: List[List[Tensor]] = []
        empty_frame: List[Tensor] = []
        self.state = empty_state
        self.frame_state = empty_frame

    @torch.jit.export
    def parameters_at(self, peak_reduction: float, mode: int) -> List[float]:
        return self.curves.parameters_at(peak_reduction, mode)

    @torch.jit.export
    def latency(self) -> int:
        """Samples of delay the module adds: none (the control rate's ramp is causal)."""
        return 0

    @torch.jit.export
    def set_sample_rate(self, sample_rate: int) -> None:
        """The model's time constants are learnt in samples: it runs at its training rate only."""
        if sample_rate != self.sample_rate:
            raise RuntimeError("this neural model runs at its training sample rate only (see sample_rate)")

    def _configure(self, peak_reduction: float, mode: int) -> None:
        """Everything that depends on the setting alone: DSP, conditioning, FiLM, shaper."""
        params: List[float] = [1.0, 2.0, 1.0, 1.0, 0.0]
        if self.needs_params:
            params = self.curves.parameters_at(peak_reduction, mode)
        if self.uses_dsp:   # the gain comes scaled by the make-up (and a stage's tube drive)
            self.dsp.configure(params)
            if self.staged:
                self.log_drive = math.log10(params[self.drive_index])
        cond: Optional[Tensor] = None
        if self.conditioned:
            cond = self._cond(params, peak_reduction, mode)
        # the gain feature is log10 of the scaled gain: the drive's share comes off in the first bias
        self.head.stack.configure(cond, -self.log_drive if self.head.frame > 1 and self.uses_dsp else 0.0)
        if self.has_path:
            self.path.configure(cond)
        self.cond = cond

    def _cond(self, params: List[float], peak_reduction: float, mode: int) -> Tensor:
        fitted = [params[0] / 40.0, math.log(params[1]), math.log10(params[2]), math.log10(params[3]) - 2.0,
                  params[4] / 10.0, float(mode)]
        if self.conditioning == "fitted":
            values = fitted
        elif self.conditioning == "knobs":
            values = [peak_reduction / 100.0, float(mode)]
        else:
            values = fitted + [peak_reduction / 100.0]
        cond = torch.tensor(values, dtype=torch.float32).unsqueeze(0)
        if self.normalise:
            cond = ((cond - self.cond_mean) / self.cond_std).clamp(-self.cond_clip, self.cond_clip)
        return cond

    def forward(self, x: Tensor, peak_reduction: Union[float, int, Tensor], mode: Union[float, int, Tensor]) -> Tensor:
        x2 = x.unsqueeze(0) if x.dim() == 1 else x
        xf = x2 if x2.dtype == torch.float32 else x2.to(torch.float32)
        channels = xf.shape[0]
        if channels != self.channels:
            self.reset()
            self.channels = channels
            self.state = self.head.stack.initial_state(channels)
            self.frame_state = self.head.initial_frame_state(channels)
        if xf.shape[1] == 0:
            return x.clone()
        # a whole file in one call streams as consecutive pieces (the block matrices grow as n^2)
        if xf.shape[1] <= self.piece:
            y = self._block(xf, peak_reduction, mode)
        else:
            y = torch.cat([self._block(part, peak_reduction, mode) for part in xf.split(self.piece, 1)], 1)
        y = y.to(x.dtype)
        return y if x.dim() == 2 else y.reshape(x.shape)

    def _block(self, xf: Tensor, peak_reduction: Union[float, int, Tensor],
               mode: Union[float, int, Tensor]) -> Tensor:
        """One block of at most :data:`STREAM_PIECE` samples: ``(C, n)`` float32 in, the output before its
        cast to the caller's dtype out."""
        pr = _setting(peak_reduction)
        mode_value = _setting(mode)
        slot = _mode_slot(mode_value)
        if pr != self.peak_reduction or slot != self.mode:
            pr, slot = checked_setting(pr, mode_value)
            self._configure(pr, slot)
            self.peak_reduction = pr
            self.mode = slot
        y_dsp = xf
        gain = self.no_gain
        if self.uses_dsp:
            gain = self.dsp.scaled_gain(xf)   # (1, n) float64, times the make-up (and the drive)
            # the DSP output stays float64 (the renderer rounds it to float32 first: 1e-7 apart)
            if self.staged:
                y_dsp = self.dsp.stage(xf, gain)
            else:
                y_dsp = torch.mul(xf, gain)
        o, self.state, self.frame_state = self.head.correction(xf, y_dsp, gain, self.log_drive, self.state,
                                                               self.frame_state)
        y = self.head.output(o, xf, y_dsp)
        if self.has_path:
            y = self.path(y)
        return y


def neural_module(record: dict, model: nn.Module, source: str) -> NeuralCompressor:
    """The scriptable module of a loaded neural checkpoint (:func:`neural.checkpoint.load_checkpoint`).

    Raises:
        UserError: a model of a device with its own knobs (manifest), or a backbone this
            exporter does not convert.
    """
    from dsp.knobs.knobmap import KnobMap
    spec = record["model"]
    pm = record["param_map_obj"]
    if not isinstance(pm, KnobMap):
        raise UserError(f"{source}: a model of a device with its own knobs ({', '.join(pm.knobs)}) cannot be "
                        "exported yet; neural export supports LA-2A models (peak reduction and mode)")
    if spec["backbone"] not in EXPORTABLE_BACKBONES:
        raise UserError(f"{source}: the {spec['backbone']} backbone cannot be exported yet "
                        f"(exportable: {', '.join(EXPORTABLE_BACKBONES)})")
    head = getattr(model, "head", model)
    if head.uses_dsp and not pm.table:
        raise UserError(f"{source}: the hybrid model's knob map is empty")
    return NeuralCompressor(model.float().eval(), pm.table, spec["conditioning"], int(record["sample_rate"]),
                            pm.compressor)
