"""The gray-box fit's objectives: the whole model by autograd, and the held-gain stages by exact
first-order signals and adjoints.

- :class:`GrayboxObjective`: all eleven parameters, derivatives by autograd through the
  compressor recursion (the reference, and ``compressor.joint_autograd``).
- :class:`BlockObjective`: the second stage, the compressor's gain held; its exact 7x7
  gradient and Hessian come from :mod:`dsp.derivatives.graybox_blocks`.
- :class:`MakeUpObjective`: the make-up alone, every block held (a chain's later levels).

Each offers the solver interface of :class:`dsp.derivatives.autograd.AutogradObjective`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torchcomp import db2amp

from audio.framing import Frames
from audio.metrics import preemphasis_np
from common.memory import release_freed_memory
from dsp.derivatives.autograd import autograd_loss_grad, autograd_loss_grad_hess
from dsp.derivatives.graybox_blocks import HeldGainStage, shaper_partials, stage_loss_grad_hess
from dsp.models.blocks import decay_samples, fft_filter, fft_length, section_response, unit_delay
from dsp.models.ff5 import compressor_gain
from dsp.models.graybox import (BLOCK_NAMES, PREEMPHASIS_CORNER_HZ, PREEMPHASIS_SECTION, GrayboxParameterisation,
                                blocks_forward, forward_spectrum, input_sections, output_sections,
                                stack_sections)

__all__ = ["GrayboxObjective", "HeldGainFrames", "BlockObjective", "MakeUpObjective", "STAGE2_NAMES"]


class GrayboxObjective:
    """Sum of squared pre-emphasised error of the gray-box over the scored samples.

    Offers the solver interface of :class:`dsp.derivatives.autograd.AutogradObjective`
    (``loss``, ``loss_grad``, ``loss_grad_hess``, ``energy``, ``output``) for the
    ``(11,)`` vector ``z``. Exact derivatives by autograd: one graph with
    ``create_graph``, then one backward pass per Hessian row.

    Args:
        frames: the framed pair.
        param: the parameterisation (physical parameters from the solver's z).
        device: torch device.
    """

    def __init__(self, frames: Frames, param: GrayboxParameterisation, device="cpu", dtype=torch.float64):
        self.param = param
        self.device = torch.device(device)
        self.dtype = dtype
        self.samples = frames.x.shape[1]
        # padding long enough for the slowest high-pass the ranges allow
        slowest = min(param.blocks.input_highpass_hz[0], param.blocks.output_highpass_hz[0],
                      PREEMPHASIS_CORNER_HZ * param.sample_rate)
        self.n_fft = fft_length(self.samples, decay_samples(slowest, param.sample_rate))
        self.x = torch.as_tensor(frames.x, dtype=dtype, device=self.device)
        detector = frames.detector   # a linked multichannel pair's; None: each frame's own input
        self.detector = None if detector is None else torch.as_tensor(detector, dtype=dtype, device=self.device)
        self.x_spec = torch.fft.rfft(self.x, n=self.n_fft)
        mask = frames.score_mask()
        self.mask = torch.as_tensor(mask, device=self.device)
        self.target_pe = torch.as_tensor(preemphasis_np(frames.y) * mask, dtype=dtype, device=self.device)
        self.energy = float((self.target_pe ** 2).sum())

    def _run(self, z: torch.Tensor, preemphasised: bool) -> torch.Tensor:
        natural, blocks = self.param.natural(z)
        return forward_spectrum(self.x_spec, self.samples, self.n_fft, natural, blocks,
                                self.param.sample_rate, preemphasised, self.x, self.detector)

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
# Below this many padded frame samples the held-gain stages keep every frame's signals (fast);
# above it they make them a few frames at a time on each pass (a long pair's fit in bounded
# memory: a 10-minute pair's frames would hold about 1 GB of them).
KEEP_SAMPLES = 12_000_000
GROUP = 1   # frames made and processed together (one: a long pair's passes hold one frame's signals)


class HeldGainFrames:
    """The held-gain stages' per-frame signals, made from the frames (views into the pair).

    ``part(slice) -> (x_spec, gain, mask, target)``: the input's spectrum, the compressor's
    gain without make-up (its detector on the input, linked over channels), the scored
    samples and the pre-emphasised target (zero outside the mask). Kept for every frame when
    the pair is short (:data:`KEEP_SAMPLES`), else made again for each group on each pass.

    Args:
        frames: the framed pair.
        natural: the compressor's natural vector ``(5,)`` (make-up ignored).
        n_fft: the FFT length of the stages.
    """

    def __init__(self, frames: Frames, natural: torch.Tensor, n_fft: int, device, dtype):
        self.frames, self.n_fft, self.device, self.dtype = frames, n_fft, torch.device(device), dtype
        self.natural = natural[:4].detach().to(dtype)
        self.n_frames, self.samples = frames.n_frames, frames.length
        self._kept = None
        self.energy = 0.0
        if self.n_frames * self.samples <= KEEP_SAMPLES:
            self._kept = self._make(slice(0, self.n_frames))
            self.energy = float((self._kept[3] ** 2).sum())
        else:
            for lo in range(0, self.n_frames, GROUP):
                self.energy += float((self._make(slice(lo, lo + GROUP))[3] ** 2).sum())

    def _make(self, part: slice):
        release_freed_memory()   # the previous group's signals (the caller dropped them), before the next
        x, y, det = self.frames.rows(part)
        kw = {"dtype": self.dtype, "device": self.device}
        x = torch.as_tensor(x, **kw)
        mask = torch.as_tensor(self.frames.mask_rows(part), device=self.device)
        with torch.no_grad():
            gain = compressor_gain(x, *self.natural.to(x),
                                   detector=None if det is None else torch.as_tensor(det, **kw))
        target = torch.as_tensor(preemphasis_np(y) * mask.cpu().numpy(), **kw)
        return torch.fft.rfft(x, n=self.n_fft), gain, mask, target

    def part(self, part: slice):
        if self._kept is not None:
            return tuple(a[part] for a in self._kept)
        return self._make(part)

    def groups(self):
        """Every frame, a group at a time: ``(x_spec, gain, mask, target)`` of each group."""
        for lo in range(0, self.n_frames, GROUP):
            yield self.part(slice(lo, lo + GROUP))


def _fft_length(frames: Frames, param: GrayboxParameterisation) -> int:
    """Padding long enough for the slowest high-pass the ranges allow."""
    slowest = min(param.blocks.input_highpass_hz[0], param.blocks.output_highpass_hz[0],
                  PREEMPHASIS_CORNER_HZ * param.sample_rate)
    return fft_length(frames.length, decay_samples(slowest, param.sample_rate))


class BlockObjective:
    """The second stage's objective: the compressor's gain signal held, the blocks free.

    With the detector on the input, the five compressor parameters fix the gain signal
    ``g`` (:func:`dsp.models.ff5.compressor_gain`); what is left, ``Hout(S(m g Hin(x)))``,
    is FFT filtering and a pointwise shaper, whose exact gradient and Hessian
    :func:`dsp.derivatives.graybox_blocks.stage_loss_grad_hess` computes from seven
    first-order signals and two adjoints (no second-order signals, no autograd over the
    audio). The autograd reference stays as :meth:`loss_grad_hess_autograd`. Every pass
    reads the frames a group at a time (:class:`HeldGainFrames`).

    ``z`` is ``(7,)``: the make-up gain ``m`` in dB (it trades with the filters' pass-band
    gain and the shaper's drive, and costs nothing to free) and the six block logits
    (:meth:`GrayboxParameterisation.block_values`), in the order of :data:`STAGE2_NAMES`.
    Its loss is the whole gray-box's (the gain is the compressor's at its parameters), so it
    also scores fixed parameters (:func:`dsp.fitting.graybox.evaluate_graybox_esr`).

    Args:
        frames: the framed pair.
        param: the parameterisation (physical parameters from the solver's z).
        compressor: the five compressor parameters (physical); make-up is ignored here. None
            with ``held``.
        device: torch device.
        held: instead of the compressor's gain, ``held(n_fft)`` gives the frames with another
            gain held (a :class:`HeldGainFrames`).
    """

    def __init__(self, frames: Frames, param: GrayboxParameterisation, compressor: dict[str, float] | None,
                 device="cpu", dtype=torch.float64, held: Callable[[int], HeldGainFrames] | None = None):
        self.param = param
        self.device = torch.device(device)
        self.dtype = dtype
        self.samples = frames.length
        self.n_fft = _fft_length(frames, param)
        if held is not None:   # another core's gain held (the optical cell's): its frames, from the FFT length
            self.data = held(self.n_fft)
        else:
            natural = param.compressor.natural(param.compressor.from_physical({**compressor, "make_up_db": 0.0}))
            self.data = HeldGainFrames(frames, natural, self.n_fft, self.device, dtype)
        self.energy = self.data.energy

    def _z(self, z) -> torch.Tensor:
        return torch.as_tensor(z).detach().to(device=self.device, dtype=self.dtype)

    def _forward(self, part, z: torch.Tensor, preemphasised: bool) -> torch.Tensor:
        x_spec, gain, _, _ = part
        return blocks_forward(x_spec, gain * db2amp(z[0]), self.samples, self.n_fft, self.param.block_values(z[1:]),
                              self.param.sample_rate, preemphasised)

    def _loss_tensor(self, z: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        for part in self.data.groups():
            err = torch.where(part[2], self._forward(part, z, True) - part[3], 0.0)
            total = total + (err ** 2).sum()
            del part, err   # freed before the next group is made
        return total

    def loss(self, z: torch.Tensor) -> float:
        with torch.no_grad():
            f = float(self._loss_tensor(self._z(z)))
        return f if math.isfinite(f) else math.inf

    def output(self, z: torch.Tensor) -> np.ndarray:
        """The gray-box output (not pre-emphasised), ``(B, T)`` numpy."""
        with torch.no_grad():
            return torch.cat([self._forward(p, self._z(z), False) for p in self.data.groups()]).cpu().numpy()

    def output_energy(self, z: torch.Tensor) -> float:
        """Pre-emphasised output energy over the scored samples (for the level match)."""
        with torch.no_grad():
            return float(sum(float((torch.where(p[2], self._forward(p, self._z(z), True), 0.0) ** 2).sum())
                             for p in self.data.groups()))

    def loss_grad(self, z: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Loss and exact gradient (first-order signals, :mod:`dsp.derivatives.graybox_blocks`)."""
        f, g, _ = stage_loss_grad_hess(self._stage(self._z(z)), self._z(z), hessian=False)
        return f, g

    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Loss, exact gradient and exact Hessian from first-order signals and adjoints
        (:func:`dsp.derivatives.graybox_blocks.stage_loss_grad_hess`); no autograd over the audio."""
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

        def input_of(zi):
            blocks = self.param.block_values(torch.cat([zi, zb[3:]]))
            return stack_sections(input_sections(blocks, sr))

        def output_of(zo):
            blocks = self.param.block_values(torch.cat([zb[:5], zo]))
            return stack_sections(output_sections(blocks, sr) + (PREEMPHASIS_SECTION,))

        def shaper_values(zs):
            return self.param.block_values(torch.cat([zb[:3], zs, zb[5:]]))[3:5]

        return HeldGainStage(self.data, n_fft, unit_delay(n_fft, z.dtype, z.device), input_of, output_of,
                             shaper_values)

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
    other settings. With the blocks held, the input and output filters are fixed; each step
    costs one forward pass plus two FFT pairs for the exact first and second derivative
    signals, a group of frames at a time.

    ``z`` is ``(1,)``: the make-up gain in dB. Solver interface as :class:`BlockObjective`.

    Args:
        stage: the :class:`BlockObjective` of the frames (its frames' signals are reused).
        blocks: the six held block values, physical, in the order of :data:`BLOCK_NAMES`.
    """

    def __init__(self, stage: BlockObjective, blocks: torch.Tensor):
        self.stage = stage
        self.energy = stage.energy
        kw = {"dtype": stage.dtype, "device": stage.device}
        self.blocks = torch.as_tensor(blocks, **kw)
        sr = stage.param.sample_rate
        self.h_in = section_response(input_sections(self.blocks, sr), stage.n_fft, **kw)
        self.out = section_response(output_sections(self.blocks, sr) + (PREEMPHASIS_SECTION,), stage.n_fft, **kw)

    def _filter_out(self, s: torch.Tensor) -> torch.Tensor:
        n = self.stage.n_fft
        return fft_filter(torch.fft.rfft(s, n=n), self.out, self.stage.samples, n)

    def _residual(self, part, z: torch.Tensor):
        x_spec, gain, mask, target = part
        u0 = fft_filter(x_spec, self.h_in, self.stage.samples, self.stage.n_fft)
        v = gain * u0 * torch.exp(_DB_TO_LOG * z[0])
        sp = shaper_partials(v, self.blocks[3], self.blocks[4])
        return v, sp, mask, torch.where(mask, self._filter_out(sp["s"]) - target, 0.0)

    def loss(self, z: torch.Tensor) -> float:
        with torch.no_grad():
            z = self.stage._z(z)
            f = sum(float((r * r).sum()) for _, _, _, r in (self._residual(p, z) for p in self.stage.data.groups()))
        return f if math.isfinite(f) else math.inf

    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Exact: ``y_m = L(S_v c v)``, ``y_mm = L(S_vv (c v)^2 + S_v c^2 v)``, ``c = ln 10 / 20``."""
        f = grad = hess = 0.0
        with torch.no_grad():
            z = self.stage._z(z)
            for part in self.stage.data.groups():
                v, sp, mask, r = self._residual(part, z)
                cv = _DB_TO_LOG * v
                y_m = torch.where(mask, self._filter_out(sp["v"] * cv), 0.0)
                y_mm = self._filter_out(sp["vv"] * cv * cv + sp["v"] * _DB_TO_LOG * cv)
                f += float((r * r).sum())
                grad += 2.0 * float((r * y_m).sum())
                hess += 2.0 * (float((y_m * y_m).sum()) + float((r * y_mm).sum()))
                del part, v, sp, mask, r, cv, y_m, y_mm   # freed before the next group is made
        return f, torch.tensor([grad], dtype=torch.float64), torch.tensor([[hess]], dtype=torch.float64)


_DB_TO_LOG = math.log(10.0) / 20.0


