"""Trained neural compressors (S6, LSTM and FF backbones) as streaming TorchScript modules.

The project's own modules are not scriptable as they stand (the S6 scan calls a numba
kernel, the stack's state is a tuple of anything), so this module rebuilds the same
computation from their weights in plain torch, written for ``torch.jit.script``:

- :class:`ScriptS6`: the S6 block with a sequential scan over the block (a loop of one
  fused multiply-add per step; no numba).
- :class:`ScriptLSTM`: the LSTM block (``torch.nn.LSTM`` scripts as it is).
- :class:`ScriptLayer`: block, FiLM, GLU and the residual; :class:`ScriptStack` the
  conditioned stack (:mod:`neural.backbones.stack`); :class:`ScriptFF` the stateless
  per-sample MLP (:mod:`neural.backbones.ff`); :class:`ScriptHead` the output form (``hybrid_gain``, ``hybrid_add``,
  ``blackbox``), per sample or at the control rate (:mod:`neural.control`).
- :class:`NeuralCompressor`: the model with its knob map, ``forward(x, peak_reduction,
  mode)``, the DSP compressor for the hybrids and the conditioning computed inside,
  state kept between calls.

:data:`EXPORTABLE_BACKBONES` lists what converts; :func:`neural_module` builds the
module from a loaded checkpoint or raises :class:`common.errors.UserError`.

Shape (``NeuralCompressor.forward``): x :math:`(T,)` or :math:`(C, T)` (the channels
run as a batch, linked DSP detection, as :class:`neural.inference.BlockProcessor`);
returns the same shape and dtype.
"""
# no "from __future__ import annotations": TorchScript reads the class annotations as types
import copy
import math
from typing import Final, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import UserError
from deploy.audio_path import ScriptAudioPath
from deploy.compressor import KnobCurves, PeakCompressor, _mode_slot, _setting
from deploy.graybox import GRAYBOX_ORDER, GrayboxCurves, GrayboxStage

__all__ = ["EXPORTABLE_BACKBONES", "ScriptS6", "ScriptLSTM", "ScriptLayer", "ScriptStack", "ScriptFF",
           "ScriptHead", "NeuralCompressor", "neural_module"]

EXPORTABLE_BACKBONES = ("s6", "lstm", "ff")


class ScriptS6(nn.Module):
    """:class:`neural.backbones.s6.S6Block` from its weights. State: ``[conv_tail, h]``."""

    def __init__(self, block: nn.Module):
        super().__init__()
        d = block.d_inner
        self.d_inner, self.d_state, self.d_conv = d, block.d_state, block.d_conv
        w_in = block.in_proj.weight.detach()
        self.register_buffer("w_u", w_in[:d].clone())
        self.register_buffer("w_z", w_in[d:].clone())
        self.register_buffer("conv_weight", block.conv_weight.detach().clone())  # (d_inner, d_conv)
        self.register_buffer("conv_bias", block.conv_bias.detach().clone())
        w_x, b_x = block.x_proj.weight.detach(), block.x_proj.bias.detach()
        self.register_buffer("w_delta", w_x[:d].clone())
        self.register_buffer("b_delta", b_x[:d].clone())
        self.register_buffer("w_bc", w_x[d:].clone())
        self.register_buffer("b_bc", b_x[d:].clone())
        self.register_buffer("neg_a", -torch.exp(block.A_log.detach()))
        self.register_buffer("D", block.D.detach().clone())
        self.register_buffer("w_out", block.out_proj.weight.detach().clone())

    def initial_state(self, batch: int) -> List[Tensor]:
        return [self.D.new_zeros(batch, self.d_conv - 1, self.d_inner),
                self.D.new_zeros(batch, self.d_inner, self.d_state)]

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        steps = x.shape[1]
        u = torch.cat([state[0], F.linear(x, self.w_u)], dim=1)
        z = F.linear(x, self.w_z)
        tail = u[:, steps:]
        u = (u.unfold(1, self.d_conv, 1) * self.conv_weight).sum(-1) + self.conv_bias  # causal depthwise conv
        u = F.silu(u)
        delta = F.softplus(F.linear(u, self.w_delta, self.b_delta))
        bc = F.linear(u, self.w_bc, self.b_bc)
        b_in, c_out = bc[..., :self.d_state], bc[..., self.d_state:]
        a = torch.exp(delta.unsqueeze(-1) * self.neg_a)                # (B, T, d_inner, N)
        b = (delta * u).unsqueeze(-1) * b_in.unsqueeze(2)              # (B, T, d_inner, N)
        h = state[1]
        states: List[Tensor] = []
        for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
            h = torch.addcmul(b_t, a_t, h)
            states.append(h)
        hs = torch.stack(states, 1)
        y = (hs * c_out.unsqueeze(2)).sum(-1) + u * self.D
        return F.linear(y * F.silu(z), self.w_out), [tail, h]


class ScriptLSTM(nn.Module):
    """:class:`neural.backbones.lstm.LSTMBlock` from its weights. State: ``[h, c]``, each (1, B, width)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.width = block.width
        self.lstm = copy.deepcopy(block.lstm)

    def initial_state(self, batch: int) -> List[Tensor]:
        w = self.lstm.weight_hh_l0
        return [w.new_zeros(1, batch, self.width), w.new_zeros(1, batch, self.width)]

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, (h, c) = self.lstm(x, (state[0], state[1]))
        return y, [h, c]


_BLOCKS = {"s6": ScriptS6, "lstm": ScriptLSTM}


class ScriptLayer(nn.Module):
    """``h + GLU(FiLM(block(h), cond))`` with the block's state."""

    def __init__(self, block: nn.Module, film: nn.Module, glu: nn.Module, backbone: str):
        super().__init__()
        self.block = _BLOCKS[backbone](block)
        self.conditioned = film.net is not None
        self.film = _film_net(film)
        self.glu = copy.deepcopy(glu.proj)

    def initial_state(self, batch: int) -> List[Tensor]:
        return self.block.initial_state(batch)

    def forward(self, h: Tensor, cond: Optional[Tensor], state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, state = self.block(h, state)
        if self.conditioned and cond is not None:
            scale, shift = self.film(cond).chunk(2, dim=-1)
            y = torch.addcmul(shift.unsqueeze(1), y, scale.unsqueeze(1) + 1.0)
        return h + F.glu(self.glu(y), dim=-1), state


class ScriptStack(nn.Module):
    """:class:`neural.backbones.stack.ConditionedStack` (S6 or LSTM blocks) from its weights."""

    def __init__(self, stack: nn.Module, backbone: str):
        super().__init__()
        self.in_proj = copy.deepcopy(stack.in_proj)
        self.layers = nn.ModuleList(ScriptLayer(b, f, g, backbone)
                                    for b, f, g in zip(stack.blocks, stack.films, stack.glus))
        self.out_proj = copy.deepcopy(stack.out_proj)

    def initial_state(self, batch: int) -> List[List[Tensor]]:
        return [layer.initial_state(batch) for layer in self.layers]

    def forward(self, x: Tensor, cond: Optional[Tensor], state: List[List[Tensor]]) -> Tuple[Tensor, List[List[Tensor]]]:
        h = self.in_proj(x)
        new_state: List[List[Tensor]] = []
        i = 0
        for layer in self.layers:
            h, s = layer(h, cond, state[i])
            new_state.append(s)
            i += 1
        return self.out_proj(h), new_state


def _film_net(film: nn.Module) -> nn.Module:
    # an unconditioned FiLM is the identity; keep a placeholder so the code compiles either way
    return copy.deepcopy(film.net) if film.net is not None else nn.Sequential(nn.Identity())


class ScriptFFLayer(nn.Module):
    """``FiLM(act(Linear(h)), cond)``: one hidden layer of :class:`neural.backbones.ff.FFModel`."""

    def __init__(self, layer: nn.Module, act: nn.Module, film: nn.Module):
        super().__init__()
        self.layer = copy.deepcopy(layer)
        self.act = copy.deepcopy(act)
        self.conditioned = film.net is not None
        self.film = _film_net(film)

    def forward(self, h: Tensor, cond: Optional[Tensor]) -> Tensor:
        y = self.act(self.layer(h))
        if self.conditioned and cond is not None:
            scale, shift = self.film(cond).chunk(2, dim=-1)
            y = torch.addcmul(shift.unsqueeze(1), y, scale.unsqueeze(1) + 1.0)
        return y


class ScriptFF(nn.Module):
    """:class:`neural.backbones.ff.FFModel` from its weights: no memory, its state the empty list."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(ScriptFFLayer(layer, model.act, film)
                                    for layer, film in zip(model.hidden, model.films))
        self.out_proj = copy.deepcopy(model.out_proj)

    def initial_state(self, batch: int) -> List[List[Tensor]]:
        empty: List[List[Tensor]] = []
        return empty

    def forward(self, x: Tensor, cond: Optional[Tensor], state: List[List[Tensor]]) -> Tuple[Tensor, List[List[Tensor]]]:
        h = x
        for layer in self.layers:
            h = layer(h, cond)
        return self.out_proj(h), state


def _backbone(head: nn.Module) -> nn.Module:
    if head.backbone_name == "ff":
        return ScriptFF(head.backbone)
    return ScriptStack(head.backbone, head.backbone_name)


def _log_level(v: Tensor) -> Tensor:
    return torch.log10(v.clamp_min(1e-4))


class ScriptHead(nn.Module):
    """A head of :mod:`neural.heads` around a :class:`ScriptStack` or :class:`ScriptFF`, per sample or per frame.

    ``forward(x, y_dsp, g_db, cond, state, frame_state)``: shapes (B, T); the frame state
    (control rate only) is ``[pending x, pending g, x before, last two predictions]``.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        self.kind = {"HybridGainDB": "hybrid_gain", "HybridAdditive": "hybrid_add",
                     "BlackBoxGain": "blackbox"}[type(head).__name__]
        self.uses_dsp = bool(head.uses_dsp)
        self.level_feature = bool(head.level_feature)
        self.frame = int(head.frame)
        self.stack = _backbone(head)

    def _features(self, x: Tensor, y_dsp: Tensor, g_db: Tensor) -> Tensor:
        if self.uses_dsp:
            f = torch.stack([x, y_dsp, g_db * 0.05], dim=-1)
        else:
            f = x.unsqueeze(-1)
        if self.level_feature:
            f = torch.cat([f, _log_level(x.abs()).unsqueeze(-1)], dim=-1)
        return f

    def _frame_features(self, x: Tensor, g_db: Tensor, x_before: Tensor) -> Tensor:
        b, n = x.shape[0], x.shape[1]
        frames = n // self.frame
        xf = x.reshape(b, frames, self.frame)
        dx = torch.diff(x, dim=1, prepend=x_before).reshape(b, frames, self.frame)
        feats = [_log_level(xf.square().mean(-1).sqrt()), _log_level(xf.abs().amax(-1)),
                 _log_level(dx.square().mean(-1).sqrt())]
        if self.uses_dsp:
            feats.append(g_db.reshape(b, frames, self.frame)[:, :, -1] * 0.05)
        return torch.stack(feats, dim=-1)

    def _interpolate(self, c: Tensor, start: int, stop: int) -> Tensor:
        frames = (stop + self.frame - 1) // self.frame
        prev, cur = c[:, :frames], c[:, 1:frames + 1]
        ramp = torch.arange(1, self.frame + 1, dtype=c.dtype) / self.frame
        per_sample = prev.unsqueeze(-1) + (cur - prev).unsqueeze(-1) * ramp
        return per_sample.reshape(c.shape[0], -1)[:, start:stop]

    def _frames(self, x: Tensor, g_db: Tensor, cond: Optional[Tensor], state: List[List[Tensor]],
                frame_state: List[Tensor]) -> Tuple[Tensor, List[List[Tensor]], List[Tensor]]:
        pend_x, pend_g, x_before, last2 = frame_state[0], frame_state[1], frame_state[2], frame_state[3]
        lead = pend_x.shape[1]
        xs = torch.cat([pend_x, x], dim=1)
        gs = torch.cat([pend_g, g_db], dim=1)
        span = xs.shape[1]
        whole = span // self.frame * self.frame
        c = last2
        if whole > 0:
            feats = self._frame_features(xs[:, :whole], gs[:, :whole], x_before)
            o, state = self.stack(feats, cond, state)
            c = torch.cat([last2, o.squeeze(-1)], dim=1)
            x_before = xs[:, whole - 1:whole]
        out = self._interpolate(c, lead, span)
        return out, state, [xs[:, whole:], gs[:, whole:], x_before, c[:, -2:]]

    def initial_frame_state(self, batch: int) -> List[Tensor]:
        z = torch.zeros(batch, 0)
        return [z, z.clone(), torch.zeros(batch, 1), torch.zeros(batch, 2)]

    def forward(self, x: Tensor, y_dsp: Tensor, g_db: Tensor, cond: Optional[Tensor], state: List[List[Tensor]],
                frame_state: List[Tensor]) -> Tuple[Tensor, List[List[Tensor]], List[Tensor]]:
        if self.frame > 1:
            o, state, frame_state = self._frames(x, g_db, cond, state, frame_state)
        else:
            out, state = self.stack(self._features(x, y_dsp, g_db), cond, state)
            o = out.squeeze(-1)
        if self.kind == "hybrid_gain":
            y = y_dsp * torch.exp(o * 2.302585092994046)  # ln 10, as neural.heads
        elif self.kind == "hybrid_add":
            y = y_dsp + o
        else:
            y = x * torch.exp(o * 2.302585092994046)  # ln 10, as neural.heads
        return y, state, frame_state


class NeuralCompressor(nn.Module):
    """A trained LA-2A model with its knob map: ``forward(x, peak_reduction, mode)``.

    Peak reduction is clamped to 0..100 and mode at or above 0.5 is limit. The DSP
    parameters (hybrids, fitted conditioning) come from the knob map inside; the state
    (DSP gain, backbone, control-rate frame) carries between calls; ``reset()`` returns
    to silence, and a block with another number of channels starts a fresh stream.

    Args:
        model: the loaded model (a head, or :class:`neural.checkpoint.CondNormalised`).
        table: the knob map's table ``{mode: {pr: params}}``.
        conditioning: ``fitted``, ``knobs`` or ``fitted+knobs``.
        sample_rate: the rate it was trained at (the only one it runs at).
    """

    channels: int
    state: List[List[Tensor]]
    frame_state: List[Tensor]
    graybox: Final[bool]     # constants: TorchScript compiles only the branches they select
    has_path: Final[bool]

    def __init__(self, model: nn.Module, table, conditioning: str, sample_rate: int):
        super().__init__()
        head = getattr(model, "head", model)
        self.head = ScriptHead(head)
        self.normalise = hasattr(model, "mean")
        dim = int(head.cond_dim)
        self.register_buffer("cond_mean", model.mean.detach().clone() if self.normalise else torch.zeros(dim))
        self.register_buffer("cond_std", model.std.detach().clone() if self.normalise else torch.ones(dim))
        self.cond_clip = float(model.clip) if self.normalise else 0.0
        self.conditioning = conditioning
        self.needs_params = self.head.uses_dsp or conditioning != "knobs"
        # a gray-box map: the hybrid's DSP output is the gray-box's, its gain feature the compressor's
        self.graybox = any(all(k in p for k in GRAYBOX_ORDER) for lv in table.values() for p in lv.values())
        self.curves = GrayboxCurves(table) if self.graybox else KnobCurves(table)
        self.dsp = PeakCompressor(sample_rate)
        self.stage = GrayboxStage()
        path = getattr(head, "audio_path", None)
        self.has_path = path is not None
        self.path = ScriptAudioPath(path) if path is not None else nn.Identity()
        self.sample_rate = int(sample_rate)
        self.requires_grad_(False)  # an inference module: outputs carry no autograd graph
        self.reset()

    @torch.jit.export
    def reset(self) -> None:
        self.dsp.reset()
        self.stage.reset()
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
    def set_sample_rate(self, sample_rate: int) -> None:
        """The model's time constants are learnt in samples: it runs at its training rate only."""
        if sample_rate != self.sample_rate:
            raise RuntimeError("this neural model runs at its training sample rate only (see sample_rate)")

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
        xf = x2.to(torch.float32)
        channels = xf.shape[0]
        if channels != self.channels:
            self.reset()
            self.channels = channels
            self.state = self.head.stack.initial_state(channels)
            self.frame_state = self.head.initial_frame_state(channels)
        if xf.shape[1] == 0:
            return x.clone()
        pr = min(max(_setting(peak_reduction), 0.0), 100.0)
        slot = _mode_slot(_setting(mode))
        params: List[float] = [1.0, 2.0, 1.0, 1.0, 0.0]
        if self.needs_params:
            params = self.curves.parameters_at(pr, slot)
        g_db = xf.new_zeros(xf.shape)
        y_dsp = xf
        if self.head.uses_dsp:
            g = self.dsp.gain(xf, params)
            g_row = (20.0 * torch.log10(g.clamp_min(1e-12)) + params[4]).to(torch.float32)
            g_db = g_row.unsqueeze(0).expand(channels, -1).contiguous()
            y_dsp = xf * torch.pow(10.0, g_db / 20.0)
            if self.graybox:
                gain = g * math.pow(10.0, params[4] / 20.0)
                y_dsp = self.stage(xf.to(torch.float64), gain, params[5:], self.sample_rate).to(torch.float32)
        cond = self._cond(params, pr, slot).expand(channels, -1)
        y, self.state, self.frame_state = self.head(xf, y_dsp, g_db, cond, self.state, self.frame_state)
        if self.has_path:
            y = self.path(y, cond)
        return y.to(x.dtype).reshape(x.shape)


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
    return NeuralCompressor(model.float().eval(), pm.table, spec["conditioning"], int(record["sample_rate"]))
