"""The gray-box model of a recorded unit: the feed-forward compressor with the rest of the unit around it.

Signal flow (``compressor=graybox``)::

    x -> input filter -> u -> feed-forward compressor -> c -> tube shaper -> s -> output filter -> y
         (high-pass +        (dsp.compressor: detector        (drive,              (high-pass)
          high shelf)         on u, make-up)                   asymmetry)

- input filter: a transformer's low-frequency roll-off (first-order high-pass,
  ``input_highpass_hz``) and its top end (first-order high shelf,
  ``input_shelf_hz``, ``input_shelf_db``; a cut is a gentle low-pass);
- compressor: the five parameters of ``compressor=ff5`` with torchcomp semantics,
  its peak detector on the filtered input ``u``;
- tube shaper: :func:`dsp.blocks.shaper` (``tube_drive``, ``tube_asymmetry``): unity
  small-signal gain, even harmonics from the asymmetry;
- output filter: the output coupling / transformer high-pass
  (``output_highpass_hz``), which also removes the shaper's DC.

Eleven parameters; physical units at the boundary (:data:`GRAYBOX_NAMES`), and for
the solver an unconstrained vector ``z`` (``(11,)``): the first five exactly as
:class:`dsp.params.Parameterisation`, then a sigmoid onto each block range, on a
log scale for frequencies and the drive (:class:`GrayboxParameterisation`).

Fit (:func:`fit_graybox_frames`): the five-parameter fit first (the fused kernel,
fast), then the Newton solver (:mod:`dsp.newton`) on all eleven from there with the
blocks transparent (:data:`TRANSPARENT`). The second stage takes its exact gradient
and Hessian from torch autograd (:class:`GrayboxObjective`, reverse over reverse,
one backward pass per Hessian row); the filters run in the frequency domain on
zero-padded frames and the pre-emphasis is folded into the output filter's response.
Its cost relative to the five-parameter fit is measured by ``benchmarks/graybox_fit.py``.

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
from dsp.blocks import (cascade, decay_samples, fft_filter, fft_length, highpass_coefficients, section_response,
                        shaper, shaper_np, shelf_coefficients)
from dsp.compressor import compressor_gain
from dsp.fit import FitOptions, FitResult, fit_frames, level_matched_make_up
from dsp.newton import NewtonOptions, newton
from dsp.params import PARAM_NAMES, Parameterisation
from dsp.preemphasis import POLE, preemphasis_np
from dsp.render import BlockCompressor

__all__ = ["BLOCK_NAMES", "GRAYBOX_NAMES", "TRANSPARENT", "BlockRanges", "GrayboxParameterisation",
           "GrayboxFitOptions", "GrayboxObjective", "graybox", "fit_graybox_frames", "evaluate_graybox_esr",
           "BlockGraybox", "render"]

BLOCK_NAMES = ("input_highpass_hz", "input_shelf_hz", "input_shelf_db",
               "tube_drive", "tube_asymmetry", "output_highpass_hz")
GRAYBOX_NAMES = PARAM_NAMES + BLOCK_NAMES

# The blocks' start: a 2 Hz high-pass (inaudible, and next to nothing after the loss's
# pre-emphasis), a 0 dB shelf (the identity), a drive of 0.05 (cubic term 1e-3 at full
# scale), no asymmetry. Not exactly at a range end, so the solver's gradient is alive.
TRANSPARENT = {"input_highpass_hz": 2.0, "input_shelf_hz": 10000.0, "input_shelf_db": 0.0,
               "tube_drive": 0.05, "tube_asymmetry": 0.0, "output_highpass_hz": 2.0}

_LOG_SCALED = frozenset({"input_highpass_hz", "input_shelf_hz", "tube_drive", "output_highpass_hz"})
_FREQUENCIES = frozenset({"input_highpass_hz", "input_shelf_hz", "output_highpass_hz"})
NYQUIST_FRACTION = 0.45  # corners are kept below this fraction of the sample rate


@dataclass(frozen=True)
class BlockRanges:
    """Ranges of the block parameters (physical units); see ``cfg/compressor/graybox.yaml``."""
    input_highpass_hz: tuple[float, float] = (0.5, 500.0)
    input_shelf_hz: tuple[float, float] = (1000.0, 20000.0)
    input_shelf_db: tuple[float, float] = (-24.0, 6.0)
    tube_drive: tuple[float, float] = (0.01, 10.0)
    tube_asymmetry: tuple[float, float] = (-0.5, 0.5)
    output_highpass_hz: tuple[float, float] = (0.5, 500.0)

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
        lo, hi = self._lo.to(z), self._hi.to(z)
        mapped = lo + (hi - lo) * torch.sigmoid(z[5:])
        blocks = torch.where(self._log.to(z.device), torch.exp(mapped), mapped)
        return self.compressor.natural(z[:5]), blocks

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
                    preemphasised)


def _forward(x_spec, samples, n_fft, natural, blocks, sample_rate, preemphasised):
    kw = {"dtype": natural.dtype, "device": natural.device}
    u = fft_filter(x_spec, section_response(_input_sections(blocks, sample_rate), n_fft, **kw), samples, n_fft)
    g = compressor_gain(u, natural[0], natural[1], natural[2], natural[3])
    c = u * g * db2amp(natural[4])
    s = shaper(c, blocks[3], blocks[4])
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
        x = torch.as_tensor(frames.x, dtype=dtype, device=self.device)
        self.x_spec = torch.fft.rfft(x, n=self.n_fft)
        mask = frames.score_mask()
        self.mask = torch.as_tensor(mask, device=self.device)
        self.target_pe = torch.as_tensor(preemphasis_np(frames.y) * mask, dtype=dtype, device=self.device)
        self.energy = float((self.target_pe ** 2).sum())

    def _run(self, z: torch.Tensor, preemphasised: bool) -> torch.Tensor:
        natural, blocks = self.param.natural(z)
        return _forward(self.x_spec, self.samples, self.n_fft, natural, blocks,
                        self.param.sample_rate, preemphasised)

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
        z = self._z(z).requires_grad_(True)
        f = self._loss_tensor(z)
        (g,) = torch.autograd.grad(f, z)
        return float(f.detach()), g.detach().cpu().to(torch.float64)

    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        z = self._z(z).requires_grad_(True)
        f = self._loss_tensor(z)
        (g,) = torch.autograd.grad(f, z, create_graph=True)
        n = z.shape[0]
        rows = [torch.autograd.grad(g[i], z, retain_graph=i < n - 1)[0] for i in range(n)]
        h = torch.stack(rows)
        h = 0.5 * (h + h.T)
        return float(f.detach()), g.detach().cpu().to(torch.float64), h.detach().cpu().to(torch.float64)

    def output(self, z: torch.Tensor) -> np.ndarray:
        """The gray-box output (not pre-emphasised), ``(B, T)`` numpy."""
        with torch.no_grad():
            return self._run(self._z(z), False).cpu().numpy()

    def _z(self, z) -> torch.Tensor:
        return torch.as_tensor(z).detach().to(device=self.device, dtype=self.dtype)


@dataclass
class GrayboxFitOptions(FitOptions):
    """:class:`dsp.fit.FitOptions` (used as is by the five-parameter stage) plus the blocks'.

    Attributes:
        blocks: block ranges.
        start: the blocks' start (transparent by default).
        block_max_step: largest move of one Newton step of a block logit.
    """
    blocks: BlockRanges = field(default_factory=BlockRanges)
    start: dict = field(default_factory=lambda: dict(TRANSPARENT))
    block_max_step: float = 2.0


def _ff5_options(options: FitOptions) -> FitOptions:
    """The plain five-parameter options inside ``options``."""
    return FitOptions(**{f.name: getattr(options, f.name) for f in fields(FitOptions)})


def fit_graybox_frames(frames: Frames, init: dict[str, float] | None = None,
                       options: FitOptions | None = None,
                       progress: Callable[[int, float, float], None] | None = None,
                       level_match: bool | None = None) -> FitResult:
    """Fit the eleven gray-box parameters to ``frames``.

    Same inputs and result as :func:`dsp.fit.fit_frames`. When ``init`` lacks the
    block parameters (a cold start, or a five-parameter start), the five-parameter
    model is fitted first from ``init`` (with ``level_match`` as there) and the
    gray-box starts from that fit with the blocks at ``options.start``; a full
    gray-box ``init`` (e.g. the previous level of a chain) starts the gray-box fit
    directly (``level_match`` True then re-matches its make-up gain).

    Args:
        frames: the framed input/target pair.
        init: physical start (five or eleven parameters) or None.
        options: :class:`GrayboxFitOptions` (a plain :class:`FitOptions` gets block defaults).
        progress: per-iteration callback ``(iteration, loss, decrement)`` (both stages).
        level_match: see above.

    Returns:
        :class:`dsp.fit.FitResult` with ``params`` holding all of :data:`GRAYBOX_NAMES`;
        ``iterations``, ``seconds`` and ``history`` cover both stages.
    """
    options = options if options is not None else GrayboxFitOptions()
    blocks = getattr(options, "blocks", BlockRanges())
    block_start = dict(getattr(options, "start", TRANSPARENT))
    block_step = float(getattr(options, "block_max_step", 2.0))
    param = GrayboxParameterisation(frames.sample_rate, options.ranges, blocks)
    start_time = time.perf_counter()
    warm = init is not None and all(k in init for k in BLOCK_NAMES)
    history: list[float] = []
    iterations = 0
    if warm:
        start = {k: float(init[k]) for k in GRAYBOX_NAMES}
    else:
        five = None if init is None else {k: init[k] for k in PARAM_NAMES}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the gray-box stage decides convergence
            first = fit_frames(frames, five, _ff5_options(options), progress, level_match)
        start = {**first.params, **block_start}
        history += first.history
        iterations += first.iterations
    objective = GrayboxObjective(frames, param, options.device)
    if objective.energy <= 0:
        raise ValueError("the target is silent after the warm-up; nothing to fit")
    z0 = param.from_physical(start)
    if warm and level_match:
        z0[4] = level_matched_make_up(objective, frames, z0)
    initial = param.to_physical(z0)
    max_step = tuple(options.max_step) + (block_step,) * len(BLOCK_NAMES)
    nopts = NewtonOptions(**{**options.newton.__dict__, "atol": options.atol_esr * objective.energy,
                             "max_step": max_step})
    result = newton(objective, z0, nopts, progress)
    if not result.converged:
        warnings.warn(f"gray-box fit did not converge: {result.reason}", RuntimeWarning, stacklevel=2)
    return FitResult(
        params=param.to_physical(result.z),
        esr=result.loss / objective.energy,
        loss=result.loss,
        iterations=iterations + result.iterations,
        converged=result.converged,
        reason=result.reason,
        seconds=time.perf_counter() - start_time,
        initial_params=initial,
        history=history + result.history,
    )


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

    Same model as :func:`graybox` (from rest at the first block); the compressor is
    :class:`dsp.render.BlockCompressor` on the filtered input (linked detection).

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
        u = self.input_filter.process(block.astype(np.float64))
        c = self.compressor.process(u)
        y = self.output_filter.process(shaper_np(c, self.drive, self.asymmetry))
        return y.astype(block.dtype, copy=False)


def render(x: np.ndarray, sample_rate: int, params: dict[str, float], block: int = 1 << 18) -> np.ndarray:
    """Process a whole ``(channels, samples)`` (or 1-D) signal through the gray-box in blocks."""
    one_d = np.ndim(x) == 1
    x2 = np.atleast_2d(x)
    model = BlockGraybox(params, sample_rate)
    out = np.concatenate([model.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)], axis=1)
    return out[0] if one_d else out
