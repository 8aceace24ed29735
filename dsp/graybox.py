"""The gray-box model of a recorded unit: the feed-forward compressor with the rest of the unit around it.

Signal flow (``compressor=graybox``)::

    y = Hout(S(m g(x) Hin(x)))

    x -> input filter Hin -> u --(x) m g --> tube shaper S -> output filter Hout -> y
    x -> peak detector -> gain g (the five-parameter compressor, make-up m)

- input filter: a transformer's low-frequency roll-off (first-order high-pass,
  ``input_highpass_hz``) and its top end (first-order high shelf,
  ``input_shelf_hz``, ``input_shelf_db``; a cut is a gentle low-pass);
- compressor: the five parameters of ``compressor=ff5`` with torchcomp semantics. Its
  peak detector sees the input ``x`` itself, as in the ``ff5`` model: a transformer's
  roll-offs (about 20 Hz and 16 kHz) barely move a peak level smoothed over
  milliseconds, and keeping the detector on ``x`` makes the gain signal ``g`` a
  function of the five compressor parameters only, which is what makes the fit cheap
  (below); the gain multiplies the filtered input ``u``;
- tube shaper: :func:`dsp.blocks.shaper` (``tube_drive``, ``tube_asymmetry``): unity
  small-signal gain, even harmonics from the asymmetry;
- output filter: the output coupling / transformer high-pass
  (``output_highpass_hz``), which also removes the shaper's DC.

Eleven parameters; physical units at the boundary (:data:`GRAYBOX_NAMES`), and for
the solver an unconstrained vector ``z`` (``(11,)``): the first five exactly as
:class:`dsp.params.Parameterisation`, then a sigmoid onto each block range, on a
log scale for frequencies and the drive (:class:`GrayboxParameterisation`).

Fit (:func:`fit_graybox_frames`), Newton (:mod:`dsp.newton`) with exact derivatives
in two stages: the five compressor parameters by the fused kernel (:mod:`dsp.fit`, as
``ff5``); then, the gain signal held, the make-up gain and the six block parameters
(:class:`BlockObjective`): FFT filters (zero-padded frames, the pre-emphasis folded
into the output filter's response) and a pointwise shaper, whose exact 7x7 gradient
and Hessian come from first-order sensitivity signals and adjoints in about 24 FFTs
(:mod:`dsp.block_derivatives`; autograd, many times slower, stays as the reference).
With ``blocks_fixed`` and a previous level's blocks in ``init``, stage 2 refits only the
make-up (:func:`fit_make_up`). The old joint path (autograd
through the compressor recursion for all eleven, :class:`GrayboxObjective`) stays
behind ``joint_autograd`` (``compressor.joint_autograd=true``); its cost and the
two-stage fit's against ``ff5`` are measured by ``benchmarks/graybox_fit.py``.

Rendering: :class:`BlockGraybox` (stateful, block by block, any channel count, linked
detection as :class:`dsp.render.BlockCompressor`) and :func:`render`.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import scipy.signal
import torch
from torchcomp import db2amp

from audio.framing import Frames
from dsp.block_derivatives import HeldGainStage, shaper_partials, stage_loss_grad_hess
from dsp.blocks import (cascade, decay_samples, fft_filter, fft_length, highpass_coefficients, section_response,
                        shaper, shaper_np, shelf_coefficients, unit_delay)
from dsp.compressor import compressor_gain
from dsp.fit import FitOptions, FitResult, fit_frames
from dsp.newton import NewtonOptions, newton
from dsp.objective import autograd_loss_grad, autograd_loss_grad_hess
from dsp.params import PARAM_NAMES, Parameterisation
from dsp.preemphasis import POLE, preemphasis_np
from dsp.render import BlockCompressor

__all__ = ["BLOCK_NAMES", "GRAYBOX_NAMES", "TRANSPARENT", "BlockRanges", "GrayboxParameterisation",
           "GrayboxFitOptions", "GrayboxObjective", "BlockObjective", "STAGE2_NAMES", "graybox", "fit_graybox_frames", "fit_blocks", "fit_make_up", "MakeUpObjective", "evaluate_graybox_esr",
           "BlockGraybox", "render"]

BLOCK_NAMES = ("input_highpass_hz", "input_shelf_hz", "input_shelf_db",
               "tube_drive", "tube_asymmetry", "output_highpass_hz")
GRAYBOX_NAMES = PARAM_NAMES + BLOCK_NAMES

# The blocks' start: a 6 Hz high-pass (inaudible, and next to nothing after the loss's
# pre-emphasis), a 0 dB shelf (the identity), a drive of 0.05 (cubic term 1e-3 at full
# scale), no asymmetry. Not exactly at a range end, so the solver's gradient is alive.
TRANSPARENT = {"input_highpass_hz": 6.0, "input_shelf_hz": 10000.0, "input_shelf_db": 0.0,
               "tube_drive": 0.05, "tube_asymmetry": 0.0, "output_highpass_hz": 6.0}

_LOG_SCALED = frozenset({"input_highpass_hz", "input_shelf_hz", "tube_drive", "output_highpass_hz"})
_FREQUENCIES = frozenset({"input_highpass_hz", "input_shelf_hz", "output_highpass_hz"})
NYQUIST_FRACTION = 0.45  # corners are kept below this fraction of the sample rate


@dataclass(frozen=True)
class BlockRanges:
    """Ranges of the block parameters (physical units); see ``cfg/compressor/graybox.yaml``."""
    # high-pass corners from 5 Hz: the fit's FFT padding grows as 1 / the lowest corner
    # (12 s frames: 56k samples at 5 Hz, 560k at 0.5 Hz), and below 5 Hz a corner is
    # inaudible and nearly invisible to the pre-emphasised loss
    input_highpass_hz: tuple[float, float] = (5.0, 500.0)
    input_shelf_hz: tuple[float, float] = (1000.0, 20000.0)
    input_shelf_db: tuple[float, float] = (-24.0, 6.0)
    tube_drive: tuple[float, float] = (0.01, 10.0)
    tube_asymmetry: tuple[float, float] = (-0.5, 0.5)
    output_highpass_hz: tuple[float, float] = (5.0, 500.0)

    def __post_init__(self):
        for name in BLOCK_NAMES:
            lo, hi = (float(v) for v in getattr(self, name))
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"range for {name} must satisfy low < high, got {lo}..{hi}")
            if name in _LOG_SCALED and lo <= 0:
                raise ValueError(f"range for {name} must be positive, got {lo}..{hi}")
            object.__setattr__(self, name, (lo, hi))

    @classmethod
    def from_dict(cls, ranges: dict) -> "BlockRanges":
        """From a config mapping ``{name: [low, high]}``; other keys are ignored."""
        return cls(**{k: tuple(ranges[k]) for k in BLOCK_NAMES if k in ranges})

    def check(self, params: dict[str, float], where: str = "parameters") -> None:
        """Raise ValueError if physical block ``params`` are missing or outside the ranges."""
        for name in BLOCK_NAMES:
            if name not in params:
                raise ValueError(f"{where}: {name} is missing")
            lo, hi = getattr(self, name)
            v = float(params[name])
            if not (lo <= v <= hi):
                raise ValueError(f"{where}: {name} = {v:g} is outside {lo:g}..{hi:g}")


class GrayboxParameterisation:
    """Maps unconstrained ``z`` (shape ``(11,)``) to the gray-box parameters.

    Args:
        sample_rate: Hz of the audio being fitted.
        ranges: compressor ranges (:class:`dsp.params.Ranges`).
        blocks: block ranges; frequency ranges are capped below 0.45 x the sample rate.
    """

    def __init__(self, sample_rate: float, ranges=None, blocks: BlockRanges = BlockRanges()):
        self.sample_rate = float(sample_rate)
        self.compressor = Parameterisation(sample_rate) if ranges is None else Parameterisation(sample_rate, ranges)
        self.blocks = blocks
        lo, hi = [], []
        for name in BLOCK_NAMES:
            a, b = getattr(blocks, name)
            if name in _FREQUENCIES:
                cap = NYQUIST_FRACTION * self.sample_rate
                if a >= cap:
                    raise ValueError(f"range for {name} ({a:g}..{b:g} Hz) is above "
                                     f"{NYQUIST_FRACTION:g} x the sample rate {sample_rate:g} Hz")
                b = min(b, cap)
            if name in _LOG_SCALED:
                a, b = math.log(a), math.log(b)
            lo.append(a)
            hi.append(b)
        self._lo = torch.tensor(lo, dtype=torch.float64)
        self._hi = torch.tensor(hi, dtype=torch.float64)
        self._log = torch.tensor([n in _LOG_SCALED for n in BLOCK_NAMES])

    @property
    def size(self) -> int:
        return len(GRAYBOX_NAMES)

    def natural(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(compressor natural (5,), block values in physical units (6,))``; differentiable."""
        return self.compressor.natural(z[:5]), self.block_values(z[5:])

    def block_values(self, zb: torch.Tensor) -> torch.Tensor:
        """Block values in physical units ``(6,)`` from their logits ``zb`` ``(6,)``; differentiable."""
        lo, hi = self._lo.to(zb), self._hi.to(zb)
        mapped = lo + (hi - lo) * torch.sigmoid(zb)
        return torch.where(self._log.to(zb.device), torch.exp(mapped), mapped)

    def to_physical(self, z: torch.Tensor) -> dict[str, float]:
        z = z.detach().to(torch.float64).cpu()
        out = self.compressor.to_physical(z[:5])
        _, blocks = self.natural(z)
        out.update({name: float(v) for name, v in zip(BLOCK_NAMES, blocks.tolist())})
        return out

    def from_physical(self, params: dict[str, float], dtype=torch.float64) -> torch.Tensor:
        """Inverse map; values at or beyond a bound are pulled just inside it."""
        head = self.compressor.from_physical(params, dtype)
        tail = []
        for i, name in enumerate(BLOCK_NAMES):
            v = float(params[name])
            if name in _LOG_SCALED:
                v = math.log(max(v, 1e-300))
            lo, hi = float(self._lo[i]), float(self._hi[i])
            u = min(max((v - lo) / (hi - lo), 1e-9), 1 - 1e-9)
            tail.append(math.log(u / (1 - u)))
        return torch.cat([head, torch.tensor(tail, dtype=dtype)])


def _input_sections(blocks: torch.Tensor, sample_rate: float):
    return (highpass_coefficients(blocks[0], sample_rate),
            shelf_coefficients(blocks[1], blocks[2], sample_rate))


def _output_sections(blocks: torch.Tensor, sample_rate: float):
    return (highpass_coefficients(blocks[5], sample_rate),)


_PREEMPHASIS_SECTION = (1.0, -1.0, -POLE)
def _stack_sections(sections) -> torch.Tensor:
    """``(S, 3)`` tensor of first-order section coefficients (floats or 0-d tensors)."""
    return torch.stack([torch.stack([torch.as_tensor(c, dtype=torch.float64) for c in sec]) for sec in sections])


_PREEMPHASIS_CORNER_HZ = -math.log(POLE) / (2.0 * math.pi)  # per unit sample rate


def graybox(x: torch.Tensor, natural: torch.Tensor, blocks: torch.Tensor, sample_rate: float,
            preemphasised: bool = False) -> torch.Tensor:
    """Gray-box output from natural compressor values and physical block values.

    Every frame is processed from rest (filters and compressor state).

    Args:
        x: input.
        natural: ``(5,)`` compressor natural vector (:mod:`dsp.params`).
        blocks: ``(6,)`` block values in the order of :data:`BLOCK_NAMES`.
        sample_rate: Hz.
        preemphasised: also apply the loss pre-emphasis (folded into the output filter).

    Shape:
        x: ``(B, T)``; returns ``(B, T)``.
    """
    slowest = min(float(blocks[0]), float(blocks[5]), _PREEMPHASIS_CORNER_HZ * sample_rate)
    n_fft = fft_length(x.shape[-1], decay_samples(slowest, sample_rate))
    return _forward(torch.fft.rfft(x, n=n_fft), x.shape[-1], n_fft, natural, blocks, sample_rate,
                    preemphasised, x)


def _forward(x_spec, samples, n_fft, natural, blocks, sample_rate, preemphasised, x=None):
    if x is None:
        x = torch.fft.irfft(x_spec, n=n_fft)[..., :samples]
    # the detector sees the input itself (see the module docstring: the transformers'
    # roll-offs barely move a peak detector), so the gain does not depend on the blocks
    g = compressor_gain(x, natural[0], natural[1], natural[2], natural[3]) * db2amp(natural[4])
    return _blocks_forward(x_spec, g, samples, n_fft, blocks, sample_rate, preemphasised)


def _blocks_forward(x_spec, gain, samples, n_fft, blocks, sample_rate, preemphasised):
    """The part after the gain signal: ``Hout(S(gain * Hin(x)))``, differentiable in ``blocks``
    (and in ``gain``); ``gain`` already holds the make-up."""
    kw = {"dtype": blocks.dtype, "device": blocks.device}
    u = fft_filter(x_spec, section_response(_input_sections(blocks, sample_rate), n_fft, **kw), samples, n_fft)
    s = shaper(u * gain, blocks[3], blocks[4])
    out_sections = _output_sections(blocks, sample_rate) + ((_PREEMPHASIS_SECTION,) if preemphasised else ())
    return fft_filter(torch.fft.rfft(s, n=n_fft), section_response(out_sections, n_fft, **kw), samples, n_fft)


class GrayboxObjective:
    """Sum of squared pre-emphasised error of the gray-box over the scored samples.

    Offers the solver interface of :class:`dsp.objective.AutogradObjective`
    (``loss``, ``loss_grad``, ``loss_grad_hess``, ``energy``, ``output``) for the
    ``(11,)`` vector ``z``. Exact derivatives by autograd: one graph with
    ``create_graph``, then one backward pass per Hessian row.

    Args:
        frames: the framed pair.
        param: the parameter map.
        device: torch device.
    """

    def __init__(self, frames: Frames, param: GrayboxParameterisation, device="cpu", dtype=torch.float64):
        self.param = param
        self.device = torch.device(device)
        self.dtype = dtype
        self.samples = frames.x.shape[1]
        # padding long enough for the slowest high-pass the ranges allow
        slowest = min(param.blocks.input_highpass_hz[0], param.blocks.output_highpass_hz[0],
                      _PREEMPHASIS_CORNER_HZ * param.sample_rate)
        self.n_fft = fft_length(self.samples, decay_samples(slowest, param.sample_rate))
        self.x = torch.as_tensor(frames.x, dtype=dtype, device=self.device)
        self.x_spec = torch.fft.rfft(self.x, n=self.n_fft)
        mask = frames.score_mask()
        self.mask = torch.as_tensor(mask, device=self.device)
        self.target_pe = torch.as_tensor(preemphasis_np(frames.y) * mask, dtype=dtype, device=self.device)
        self.energy = float((self.target_pe ** 2).sum())

    def _run(self, z: torch.Tensor, preemphasised: bool) -> torch.Tensor:
        natural, blocks = self.param.natural(z)
        return _forward(self.x_spec, self.samples, self.n_fft, natural, blocks,
                        self.param.sample_rate, preemphasised, self.x)

    def _loss_tensor(self, z: torch.Tensor) -> torch.Tensor:
        err = torch.where(self.mask, self._run(z, True) - self.target_pe, 0.0)
        return (err ** 2).sum()

    def loss(self, z: torch.Tensor) -> float:
        with torch.no_grad():
            try:
                f = float(self._loss_tensor(self._z(z)))
            except AssertionError:  # torchcomp rejects a saturated parameter (e.g. ratio == 1)
                return math.inf
        return f if math.isfinite(f) else math.inf

    def loss_grad(self, z: torch.Tensor) -> tuple[float, torch.Tensor]:
        return autograd_loss_grad(self._loss_tensor, self._z(z))

    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        return autograd_loss_grad_hess(self._loss_tensor, self._z(z))

    def output(self, z: torch.Tensor) -> np.ndarray:
        """The gray-box output (not pre-emphasised), ``(B, T)`` numpy."""
        with torch.no_grad():
            return self._run(self._z(z), False).cpu().numpy()

    def _z(self, z) -> torch.Tensor:
        return torch.as_tensor(z).detach().to(device=self.device, dtype=self.dtype)

    def output_energy(self, z: torch.Tensor) -> float:
        """Pre-emphasised output energy over the scored samples (for the level match)."""
        with torch.no_grad():
            out = torch.where(self.mask, self._run(self._z(z), True), 0.0)
            return float((out ** 2).sum())


# z coordinates of the second stage: the make-up gain (dB) and the six block logits
STAGE2_NAMES = ("make_up_db",) + BLOCK_NAMES


class BlockObjective(GrayboxObjective):
    """The second stage's objective: the compressor's gain signal held, the blocks free.

    With the detector on the input, the five compressor parameters fix the gain signal
    ``g`` (computed once here by :func:`dsp.compressor.compressor_gain`); what is left,
    ``Hout(S(m g Hin(x)))``, is FFT filtering and a pointwise shaper, whose exact
    gradient and Hessian :func:`dsp.block_derivatives.stage_loss_grad_hess` computes from
    seven first-order signals and two adjoints (no second-order signals, no autograd over
    the audio). The autograd reference stays as :meth:`loss_grad_hess_autograd`.

    ``z`` is ``(7,)``: the make-up gain ``m`` in dB (it trades with the filters' pass-band
    gain and the shaper's drive, and costs nothing to free) and the six block logits
    (:meth:`GrayboxParameterisation.block_values`), in the order of :data:`STAGE2_NAMES`.

    Args:
        frames: the framed pair.
        param: the parameter map.
        compressor: the five compressor parameters (physical); make-up is ignored here.
        device: torch device.
    """

    def __init__(self, frames: Frames, param: GrayboxParameterisation, compressor: dict[str, float],
                 device="cpu", dtype=torch.float64):
        super().__init__(frames, param, device, dtype)
        natural = param.compressor.natural(param.compressor.from_physical({**compressor, "make_up_db": 0.0}))
        with torch.no_grad():
            self.gain = compressor_gain(self.x, *natural[:4].to(self.x))

    def _run(self, z: torch.Tensor, preemphasised: bool) -> torch.Tensor:
        blocks = self.param.block_values(z[1:])
        return _blocks_forward(self.x_spec, self.gain * db2amp(z[0]), self.samples, self.n_fft, blocks,
                               self.param.sample_rate, preemphasised)

    def loss_grad(self, z: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Loss and exact gradient (first-order signals, :mod:`dsp.block_derivatives`)."""
        f, g, _ = stage_loss_grad_hess(self._stage(self._z(z)), self._z(z), hessian=False)
        return f, g

    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Loss, exact gradient and exact Hessian from first-order signals and adjoints
        (:func:`dsp.block_derivatives.stage_loss_grad_hess`); no autograd over the audio."""
        z = self._z(z)
        return stage_loss_grad_hess(self._stage(z), z)

    def loss_grad_autograd(self, z: torch.Tensor) -> tuple[float, torch.Tensor]:
        """The reference: :meth:`loss_grad` by autograd through the whole stage."""
        return autograd_loss_grad(self._loss_tensor, self._z(z))

    def loss_grad_hess_autograd(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """The reference: :meth:`loss_grad_hess` by autograd (reverse over reverse, one
        backward pass per Hessian row); many times slower."""
        return autograd_loss_grad_hess(self._loss_tensor, self._z(z))

    def _stage(self, z: torch.Tensor) -> HeldGainStage:
        """The held-gain problem at ``z``; each response is a function of its own logits only."""
        zb = z[1:].detach()
        sr, n_fft = self.param.sample_rate, self.n_fft

        def input_sections(zi):
            blocks = self.param.block_values(torch.cat([zi, zb[3:]]))
            return _stack_sections(_input_sections(blocks, sr))

        def output_sections(zo):
            blocks = self.param.block_values(torch.cat([zb[:5], zo]))
            return _stack_sections(_output_sections(blocks, sr) + (_PREEMPHASIS_SECTION,))

        def shaper_values(zs):
            return self.param.block_values(torch.cat([zb[:3], zs, zb[5:]]))[3:5]

        return HeldGainStage(self.x_spec, self.gain, self.mask, self.target_pe, n_fft,
                             unit_delay(n_fft, z.dtype, z.device), input_sections, output_sections, shaper_values)

    def stage_vector(self, params: dict[str, float]) -> torch.Tensor:
        """``(7,)`` start vector from physical gray-box parameters."""
        full = self.param.from_physical(params)
        return torch.cat([full[4:5], full[5:]])

    def full_vector(self, zs: torch.Tensor, params: dict[str, float]) -> torch.Tensor:
        """The ``(11,)`` vector: compressor of ``params`` with make-up and blocks from ``zs``."""
        full = self.param.from_physical(params)
        full[4] = zs[0]
        full[5:] = zs[1:]
        return full


class MakeUpObjective:
    """The make-up gain alone, the compressor's gain and every block held (``blocks_fixed``).

    The blocks of a recorded unit (transformers, tube stage) do not move with the
    peak-reduction knob, so a chain can fit them once and refit only the make-up at the
    other settings. With the blocks held, the filtered input ``u0`` and the output
    response are fixed; each step costs one forward pass plus two FFT pairs for the
    exact first and second derivative signals.

    ``z`` is ``(1,)``: the make-up gain in dB. Solver interface as :class:`BlockObjective`.

    Args:
        stage: the :class:`BlockObjective` of the frames (its gain, input spectrum, mask
            and target are reused).
        blocks: the six held block values, physical, in the order of :data:`BLOCK_NAMES`.
    """

    def __init__(self, stage: BlockObjective, blocks: torch.Tensor):
        self.stage = stage
        self.energy = stage.energy
        kw = {"dtype": stage.dtype, "device": stage.device}
        self.blocks = torch.as_tensor(blocks, **kw)
        sr = stage.param.sample_rate
        h_in = section_response(_input_sections(self.blocks, sr), stage.n_fft, **kw)
        self.u0 = fft_filter(stage.x_spec, h_in, stage.samples, stage.n_fft)
        self.out = section_response(_output_sections(self.blocks, sr) + (_PREEMPHASIS_SECTION,), stage.n_fft, **kw)

    def _filter_out(self, s: torch.Tensor) -> torch.Tensor:
        n = self.stage.n_fft
        return fft_filter(torch.fft.rfft(s, n=n), self.out, self.stage.samples, n)

    def _residual(self, z: torch.Tensor):
        v = self.stage.gain * self.u0 * torch.exp(_DB_TO_LOG * z[0])
        sp = shaper_partials(v, self.blocks[3], self.blocks[4])
        return v, sp, torch.where(self.stage.mask, self._filter_out(sp["s"]) - self.stage.target_pe, 0.0)

    def loss(self, z: torch.Tensor) -> float:
        with torch.no_grad():
            _, _, r = self._residual(self.stage._z(z))
            f = float((r * r).sum())
        return f if math.isfinite(f) else math.inf

    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Exact: ``y_m = L(S_v c v)``, ``y_mm = L(S_vv (c v)^2 + S_v c^2 v)``, ``c = ln 10 / 20``."""
        with torch.no_grad():
            v, sp, r = self._residual(self.stage._z(z))
            cv = _DB_TO_LOG * v
            y_m = torch.where(self.stage.mask, self._filter_out(sp["v"] * cv), 0.0)
            y_mm = self._filter_out(sp["vv"] * cv * cv + sp["v"] * _DB_TO_LOG * cv)
            grad = 2.0 * (r * y_m).sum()
            hess = 2.0 * ((y_m * y_m).sum() + (r * y_mm).sum())
        return float((r * r).sum()), grad.reshape(1).cpu(), hess.reshape(1, 1).cpu()


_DB_TO_LOG = math.log(10.0) / 20.0


@dataclass
class GrayboxFitOptions(FitOptions):
    """:class:`dsp.fit.FitOptions` (used as is by the five-parameter stage) plus the blocks'.

    Attributes:
        blocks: block ranges.
        start: the blocks' start (transparent by default).
        block_max_step: largest move of one Newton step of a block logit.
        joint_autograd: after the two stages, Newton on all eleven parameters with
            autograd through the compressor (slow: see :func:`fit_graybox_frames`).
        blocks_fixed: when ``init`` brings the six block values (a chain's previous
            level), hold them and refit only the make-up in stage 2 (:func:`fit_make_up`);
            without them the blocks are fitted as usual (the chain's first level).
    """
    blocks: BlockRanges = field(default_factory=BlockRanges)
    start: dict = field(default_factory=lambda: dict(TRANSPARENT))
    block_max_step: float = 2.0
    joint_autograd: bool = False
    blocks_fixed: bool = False


def _ff5_options(options: FitOptions) -> FitOptions:
    """The plain five-parameter options inside ``options``."""
    return FitOptions(**{f.name: getattr(options, f.name) for f in fields(FitOptions)})


def _newton_options(options: FitOptions, energy: float, max_step) -> NewtonOptions:
    return NewtonOptions(**{**options.newton.__dict__, "atol": options.atol_esr * energy,
                            "max_step": tuple(max_step)})


def fit_graybox_frames(frames: Frames, init: dict[str, float] | None = None,
                       options: FitOptions | None = None,
                       progress: Callable[[int, float, float], None] | None = None,
                       level_match: bool | None = None) -> FitResult:
    """Fit the eleven gray-box parameters to ``frames``, in two Newton stages.

    1. The five compressor parameters: :func:`dsp.fit.fit_frames` (the fused exact
       kernel) from the five of ``init`` (``level_match`` as there).
    2. The make-up gain and the six block parameters, the compressor's gain signal held
       (:class:`BlockObjective`): Newton with the exact 7x7 gradient and Hessian
       (:mod:`dsp.block_derivatives`). With ``options.blocks_fixed`` and ``init``'s
       blocks, only the make-up is refitted, the blocks held (:func:`fit_make_up`). It starts from ``init``'s
       blocks when ``init`` has them (a chain's previous level), else from
       ``options.start``; its make-up starts from whichever of stage 1's and ``init``'s
       gives the lower loss.
    3. Only with ``options.joint_autograd``: Newton on all eleven with autograd through
       the compressor recursion (:class:`GrayboxObjective`, an 11-row Hessian of
       reverse over reverse through torchcomp). Measured: 67 s per gradient and Hessian
       on 3 s of 44.1 kHz audio on a loaded 2-core machine, so it is a check, not a default.

    The five compressor parameters are not refitted with the blocks held: the fused
    kernel has no post-processing stage, and the compressor detector sees the input, so
    the blocks change only what follows the gain.

    Args:
        frames: the framed input/target pair.
        init: physical start (five or eleven parameters) or None (the published start).
        options: :class:`GrayboxFitOptions` (a plain :class:`FitOptions` gets block defaults).
        progress: per-iteration callback ``(iteration, loss, decrement)`` (every stage).
        level_match: see :func:`dsp.fit.fit_frames` (stage 1).

    Returns:
        :class:`dsp.fit.FitResult` with ``params`` holding all of :data:`GRAYBOX_NAMES`;
        ``iterations``, ``seconds`` and ``history`` cover every stage, ``reason`` is the
        last stage's.
    """
    options = options if options is not None else GrayboxFitOptions()
    blocks = getattr(options, "blocks", BlockRanges())
    param = GrayboxParameterisation(frames.sample_rate, options.ranges, blocks)
    start_time = time.perf_counter()
    five = None if init is None else {k: float(init[k]) for k in PARAM_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the last stage decides convergence
        first = fit_frames(frames, five, _ff5_options(options), progress, level_match)
    warm = init is not None and all(k in init for k in BLOCK_NAMES)
    start = {**first.params, **({k: float(init[k]) for k in BLOCK_NAMES} if warm
                                else dict(getattr(options, "start", TRANSPARENT)))}
    make_up_starts = [first.params["make_up_db"]] + ([float(init["make_up_db"])] if warm else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if warm and getattr(options, "blocks_fixed", False):
            second = fit_make_up(frames, first.params, start, options, progress, make_up_starts)
        else:
            second = fit_blocks(frames, first.params, start, options, progress, make_up_starts)
    iterations = first.iterations + second.iterations
    history = first.history + second.history
    last = second
    if getattr(options, "joint_autograd", False):
        joint = GrayboxObjective(frames, param, options.device)
        max_step = tuple(options.max_step) + (_block_step(options),) * len(BLOCK_NAMES)
        z0 = param.from_physical(second.params)
        result = newton(joint, z0, _newton_options(options, joint.energy, max_step), progress)
        last = FitResult(param.to_physical(result.z), result.loss / joint.energy, result.loss, result.iterations,
                         result.converged, result.reason, result.seconds, second.params, result.history)
        iterations += last.iterations
        history += last.history
    if not last.converged:
        warnings.warn(f"gray-box fit did not converge: {last.reason}", RuntimeWarning, stacklevel=2)
    return FitResult(params=last.params, esr=last.esr, loss=last.loss, iterations=iterations,
                     converged=last.converged, reason=last.reason, seconds=time.perf_counter() - start_time,
                     initial_params=second.initial_params, history=history)


def _block_step(options) -> float:
    return float(getattr(options, "block_max_step", 2.0))


def fit_blocks(frames: Frames, compressor: dict[str, float], start: dict[str, float],
               options: FitOptions | None = None,
               progress: Callable[[int, float, float], None] | None = None,
               make_up_starts: list[float] | None = None) -> FitResult:
    """Stage 2: the make-up gain and the six block parameters, the compressor's gain held.

    Newton on :class:`BlockObjective` with its exact gradient and Hessian.

    Args:
        frames: the framed input/target pair.
        compressor: the five compressor parameters (physical), held; their make-up is
            only a start.
        start: physical start of the blocks (and ``make_up_db``, used if present).
        options: ranges, block ranges, solver tolerances (:class:`GrayboxFitOptions`).
        progress: per-iteration callback ``(iteration, loss, decrement)``.
        make_up_starts: candidate make-up starts (dB); the one with the lowest loss wins.

    Returns:
        :class:`dsp.fit.FitResult` with all of :data:`GRAYBOX_NAMES` (the compressor's
        four held, make-up and blocks fitted); ``initial_params`` is the stage's start.
    """
    options = options if options is not None else GrayboxFitOptions()
    param = GrayboxParameterisation(frames.sample_rate, options.ranges, getattr(options, "blocks", BlockRanges()))
    objective = BlockObjective(frames, param, compressor, options.device)
    if objective.energy <= 0:
        raise ValueError("the target is silent after the warm-up; nothing to fit")
    base = {**compressor, **{k: v for k, v in start.items() if k in STAGE2_NAMES}}
    z0 = objective.stage_vector(base)
    for m in make_up_starts or []:
        other = z0.clone()
        other[0] = float(m)
        if objective.loss(other) < objective.loss(z0):
            z0 = other
    max_step = (options.max_step[4],) + (_block_step(options),) * len(BLOCK_NAMES)
    result = newton(objective, z0, _newton_options(options, objective.energy, max_step), progress)
    if not result.converged:
        warnings.warn(f"gray-box block fit did not converge: {result.reason}", RuntimeWarning, stacklevel=2)
    return FitResult.from_newton(result, objective.energy, param.to_physical(objective.full_vector(result.z, base)),
                                 param.to_physical(objective.full_vector(z0, base)))


def fit_make_up(frames: Frames, compressor: dict[str, float], blocks: dict[str, float],
                options: FitOptions | None = None,
                progress: Callable[[int, float, float], None] | None = None,
                make_up_starts: list[float] | None = None) -> FitResult:
    """Stage 2 with the blocks held: Newton on the make-up gain alone (:class:`MakeUpObjective`).

    Args:
        frames: the framed input/target pair.
        compressor: the five compressor parameters (physical), held; their make-up is a start.
        blocks: the six block values (physical), held (e.g. fitted at a chain's first level).
        options: as :func:`fit_blocks`.
        progress: per-iteration callback ``(iteration, loss, decrement)``.
        make_up_starts: candidate make-up starts (dB); the one with the lowest loss wins.

    Returns:
        :class:`dsp.fit.FitResult` with all of :data:`GRAYBOX_NAMES` (only make-up fitted).
    """
    options = options if options is not None else GrayboxFitOptions()
    param = GrayboxParameterisation(frames.sample_rate, options.ranges, getattr(options, "blocks", BlockRanges()))
    param.blocks.check(blocks, where="held blocks")
    stage = BlockObjective(frames, param, compressor, options.device)
    if stage.energy <= 0:
        raise ValueError("the target is silent after the warm-up; nothing to fit")
    base = {**compressor, **{k: float(blocks[k]) for k in BLOCK_NAMES}}
    objective = MakeUpObjective(stage, torch.tensor([base[k] for k in BLOCK_NAMES], dtype=torch.float64))
    z0 = torch.tensor([float(compressor["make_up_db"])], dtype=torch.float64)
    for m in make_up_starts or []:
        other = torch.tensor([float(m)], dtype=torch.float64)
        if objective.loss(other) < objective.loss(z0):
            z0 = other
    result = newton(objective, z0, _newton_options(options, objective.energy, (options.max_step[4],)), progress)
    if not result.converged:
        warnings.warn(f"gray-box make-up fit did not converge: {result.reason}", RuntimeWarning, stacklevel=2)

    def physical(z):
        return {**base, "make_up_db": float(z[0])}
    return FitResult.from_newton(result, objective.energy, {k: physical(result.z)[k] for k in GRAYBOX_NAMES},
                                 {k: physical(z0)[k] for k in GRAYBOX_NAMES})


def evaluate_graybox_esr(frames: Frames, params: dict[str, float], ranges=None,
                         blocks: BlockRanges = BlockRanges()) -> float:
    """Pre-emphasised ESR of fixed physical gray-box ``params`` on ``frames`` (no fitting)."""
    param = GrayboxParameterisation(frames.sample_rate, ranges, blocks)
    objective = GrayboxObjective(frames, param)
    return objective.loss(param.from_physical(params)) / objective.energy


class _Filter:
    """A cascade of first-order sections with per-channel state (scipy ``lfilter``)."""

    def __init__(self, sections):
        self.b, self.a = cascade(*sections)
        self.state = None

    def process(self, block: np.ndarray) -> np.ndarray:
        if self.state is None:
            self.state = np.zeros((block.shape[0], len(self.a) - 1))
        out, self.state = scipy.signal.lfilter(self.b, self.a, block, axis=-1, zi=self.state)
        return out


class BlockGraybox:
    """Stateful gray-box for consecutive blocks of ``(channels, samples)`` audio.

    Same model as :func:`graybox` (from rest at the first block); the compressor's gain
    is :class:`dsp.render.BlockCompressor`'s on the input (linked detection), applied to
    the filtered input.

    Args:
        params: physical parameters, all of :data:`GRAYBOX_NAMES`.
        sample_rate: Hz.
    """

    def __init__(self, params: dict[str, float], sample_rate: int):
        missing = [k for k in GRAYBOX_NAMES if k not in params]
        if missing:
            raise ValueError(f"gray-box parameters missing: {', '.join(missing)}")
        p = {k: float(params[k]) for k in GRAYBOX_NAMES}
        for k in _FREQUENCIES:
            if not 0.0 < p[k] < 0.5 * sample_rate:
                raise ValueError(f"{k} = {p[k]:g} Hz must be between 0 and half the sample rate "
                                 f"({0.5 * sample_rate:g} Hz)")
        self.input_filter = _Filter((highpass_coefficients(p["input_highpass_hz"], sample_rate),
                                     shelf_coefficients(p["input_shelf_hz"], p["input_shelf_db"], sample_rate)))
        self.output_filter = _Filter((highpass_coefficients(p["output_highpass_hz"], sample_rate),))
        self.compressor = BlockCompressor(p, sample_rate)
        self.drive, self.asymmetry = p["tube_drive"], p["tube_asymmetry"]

    def process(self, block: np.ndarray) -> np.ndarray:
        """Process one ``(channels, samples)`` block (float64 inside, input dtype out)."""
        block = np.atleast_2d(block)
        x = block.astype(np.float64)
        gain = np.atleast_2d(self.compressor.gain(x)) * self.compressor.make_up  # detector on the input
        u = self.input_filter.process(x)
        y = self.output_filter.process(shaper_np(u * gain, self.drive, self.asymmetry))
        return y.astype(block.dtype, copy=False)


def render(x: np.ndarray, sample_rate: int, params: dict[str, float], block: int = 1 << 18) -> np.ndarray:
    """Process a whole ``(channels, samples)`` (or 1-D) signal through the gray-box in blocks."""
    one_d = np.ndim(x) == 1
    x2 = np.atleast_2d(x)
    model = BlockGraybox(params, sample_rate)
    out = np.concatenate([model.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)], axis=1)
    return out[0] if one_d else out
