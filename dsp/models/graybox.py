"""The gray-box model of a recorded unit: the feed-forward compressor with the rest of the unit around it.

Signal flow (``compressor=graybox``)::

    y = Hout(S(m g(x) Hin(x)))

    x -> input filter Hin -> u --(x) m g --> tube shaper S -> output filter Hout -> y
    x -> peak detector -> gain g (the five-parameter compressor, make-up m)

- input filter: a transformer's low-frequency roll-off (first-order high-pass,
  ``input_highpass_hz``) and its top end (first-order high shelf,
  ``input_shelf_hz``, ``input_shelf_db``; a cut is a gentle low-pass);
- compressor: the five parameters of ``compressor=ff5`` with torchcomp semantics. Its
  peak detector sees the input ``x`` itself: a transformer's roll-offs (about 20 Hz and
  16 kHz) barely move a peak level smoothed over milliseconds, and keeping the detector
  on ``x`` makes the gain ``g`` a function of the five compressor parameters only, which
  is what makes the fit cheap (:mod:`dsp.fitting.graybox`);
- tube shaper: :func:`dsp.models.blocks.shaper` (``tube_drive``, ``tube_asymmetry``):
  unity small-signal gain, even harmonics from the asymmetry;
- output filter: the output coupling / transformer high-pass (``output_highpass_hz``),
  which also removes the shaper's DC.

"Block" here means one of these filter or shaper stages (``BLOCK_NAMES``), never a block
of samples. Eleven parameters: physical units at the boundary (:data:`GRAYBOX_NAMES`);
for the solver an unconstrained ``z`` ``(11,)`` (:class:`GrayboxParameterisation`).
Streaming: :mod:`dsp.models.graybox_streaming`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchcomp import db2amp

from dsp.models.blocks import (decay_samples, fft_filter, fft_length, highpass_coefficients, section_response,
                               shaper, shelf_coefficients)
from dsp.models.ff5 import compressor_gain
from dsp.models.parameters import PARAM_NAMES, Parameterisation
from dsp.models.preemphasis import POLE

__all__ = ["BLOCK_NAMES", "GRAYBOX_NAMES", "TRANSPARENT", "FREQUENCY_NAMES", "BlockRanges",
           "GrayboxParameterisation", "graybox", "forward_spectrum", "blocks_forward", "input_sections",
           "output_sections", "stack_sections", "PREEMPHASIS_SECTION", "PREEMPHASIS_CORNER_HZ"]

BLOCK_NAMES = ("input_highpass_hz", "input_shelf_hz", "input_shelf_db",
               "tube_drive", "tube_asymmetry", "output_highpass_hz")
GRAYBOX_NAMES = PARAM_NAMES + BLOCK_NAMES

# The blocks' start: a 6 Hz high-pass (inaudible, and next to nothing after the loss's
# pre-emphasis), a 0 dB shelf (the identity), a drive of 0.05 (cubic term 1e-3 at full
# scale), no asymmetry. Not exactly at a range end, so the solver's gradient is alive.
TRANSPARENT = {"input_highpass_hz": 6.0, "input_shelf_hz": 10000.0, "input_shelf_db": 0.0,
               "tube_drive": 0.05, "tube_asymmetry": 0.0, "output_highpass_hz": 6.0}

_LOG_SCALED = frozenset({"input_highpass_hz", "input_shelf_hz", "tube_drive", "output_highpass_hz"})
FREQUENCY_NAMES = frozenset({"input_highpass_hz", "input_shelf_hz", "output_highpass_hz"})
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
        ranges: compressor ranges (:class:`dsp.models.parameters.Ranges`).
        blocks: block ranges; frequency ranges are capped below 0.45 x the sample rate.
    """

    def __init__(self, sample_rate: float, ranges=None, blocks: BlockRanges = BlockRanges()):
        self.sample_rate = float(sample_rate)
        self.compressor = Parameterisation(sample_rate) if ranges is None else Parameterisation(sample_rate, ranges)
        self.blocks = blocks
        lo, hi = [], []
        for name in BLOCK_NAMES:
            a, b = getattr(blocks, name)
            if name in FREQUENCY_NAMES:
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


def input_sections(blocks: torch.Tensor, sample_rate: float):
    return (highpass_coefficients(blocks[0], sample_rate),
            shelf_coefficients(blocks[1], blocks[2], sample_rate))


def output_sections(blocks: torch.Tensor, sample_rate: float):
    return (highpass_coefficients(blocks[5], sample_rate),)


PREEMPHASIS_SECTION = (1.0, -1.0, -POLE)
def stack_sections(sections) -> torch.Tensor:
    """``(S, 3)`` tensor of first-order section coefficients (floats or 0-d tensors)."""
    return torch.stack([torch.stack([torch.as_tensor(c, dtype=torch.float64) for c in sec]) for sec in sections])


PREEMPHASIS_CORNER_HZ = -math.log(POLE) / (2.0 * math.pi)  # per unit sample rate


def graybox(x: torch.Tensor, natural: torch.Tensor, blocks: torch.Tensor, sample_rate: float,
            preemphasised: bool = False, detector: torch.Tensor | None = None) -> torch.Tensor:
    """Gray-box output from natural compressor values and physical block values.

    Every frame is processed from rest (filters and compressor state).

    Args:
        x: input.
        natural: ``(5,)`` compressor natural vector (:mod:`dsp.models.parameters`).
        blocks: ``(6,)`` block values in the order of :data:`BLOCK_NAMES`.
        sample_rate: Hz.
        preemphasised: also apply the loss pre-emphasis (folded into the output filter).
        detector: what the peak detector reads instead of ``x`` (a linked multichannel unit's).

    Shape:
        x: ``(B, T)``; returns ``(B, T)``.
    """
    slowest = min(float(blocks[0]), float(blocks[5]), PREEMPHASIS_CORNER_HZ * sample_rate)
    n_fft = fft_length(x.shape[-1], decay_samples(slowest, sample_rate))
    return forward_spectrum(torch.fft.rfft(x, n=n_fft), x.shape[-1], n_fft, natural, blocks, sample_rate,
                            preemphasised, x, detector)


def forward_spectrum(x_spec, samples, n_fft, natural, blocks, sample_rate, preemphasised, x=None, detector=None):
    if x is None:
        x = torch.fft.irfft(x_spec, n=n_fft)[..., :samples]
    # the detector sees the input itself (see the module docstring: the transformers'
    # roll-offs barely move a peak detector), so the gain does not depend on the blocks
    g = compressor_gain(x, natural[0], natural[1], natural[2], natural[3], detector) * db2amp(natural[4])
    return blocks_forward(x_spec, g, samples, n_fft, blocks, sample_rate, preemphasised)


def blocks_forward(x_spec, gain, samples, n_fft, blocks, sample_rate, preemphasised):
    """The part after the gain signal: ``Hout(S(gain * Hin(x)))``, differentiable in ``blocks``
    (and in ``gain``); ``gain`` already holds the make-up."""
    kw = {"dtype": blocks.dtype, "device": blocks.device}
    u = fft_filter(x_spec, section_response(input_sections(blocks, sample_rate), n_fft, **kw), samples, n_fft)
    s = shaper(u * gain, blocks[3], blocks[4])
    out_sections = output_sections(blocks, sample_rate) + ((PREEMPHASIS_SECTION,) if preemphasised else ())
    return fft_filter(torch.fft.rfft(s, n=n_fft), section_response(out_sections, n_fft, **kw), samples, n_fft)


