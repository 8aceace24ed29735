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

import numpy as np
import torch
from torchcomp import db2amp

from audio.framing import Frames
from audio.metrics import preemphasis_np
from dsp.derivatives.autograd import autograd_loss_grad, autograd_loss_grad_hess
from dsp.derivatives.graybox_blocks import HeldGainStage, shaper_partials, stage_loss_grad_hess
from dsp.models.blocks import decay_samples, fft_filter, fft_length, section_response, unit_delay
from dsp.models.ff5 import compressor_gain
from dsp.models.graybox import (BLOCK_NAMES, PREEMPHASIS_CORNER_HZ, PREEMPHASIS_SECTION, GrayboxParameterisation,
                                blocks_forward, forward_spectrum, input_sections, output_sections,
                                stack_sections)

__all__ = ["GrayboxObjective", "BlockObjective", "MakeUpObjective", "STAGE2_NAMES"]


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


class BlockObjective(GrayboxObjective):
    """The second stage's objective: the compressor's gain signal held, the blocks free.

    With the detector on the input, the five compressor parameters fix the gain signal
    ``g`` (computed once here by :func:`dsp.models.ff5.compressor_gain`); what is left,
    ``Hout(S(m g Hin(x)))``, is FFT filtering and a pointwise shaper, whose exact
    gradient and Hessian :func:`dsp.derivatives.graybox_blocks.stage_loss_grad_hess` computes from
    seven first-order signals and two adjoints (no second-order signals, no autograd over
    the audio). The autograd reference stays as :meth:`loss_grad_hess_autograd`.

    ``z`` is ``(7,)``: the make-up gain ``m`` in dB (it trades with the filters' pass-band
    gain and the shaper's drive, and costs nothing to free) and the six block logits
    (:meth:`GrayboxParameterisation.block_values`), in the order of :data:`STAGE2_NAMES`.

    Args:
        frames: the framed pair.
        param: the parameterisation (physical parameters from the solver's z).
        compressor: the five compressor parameters (physical); make-up is ignored here.
        device: torch device.
    """

    def __init__(self, frames: Frames, param: GrayboxParameterisation, compressor: dict[str, float],
                 device="cpu", dtype=torch.float64):
        super().__init__(frames, param, device, dtype)
        natural = param.compressor.natural(param.compressor.from_physical({**compressor, "make_up_db": 0.0}))
        with torch.no_grad():
            self.gain = compressor_gain(self.x, *natural[:4].to(self.x), detector=self.detector)

    def _run(self, z: torch.Tensor, preemphasised: bool) -> torch.Tensor:
        blocks = self.param.block_values(z[1:])
        return blocks_forward(self.x_spec, self.gain * db2amp(z[0]), self.samples, self.n_fft, blocks,
                               self.param.sample_rate, preemphasised)

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

        return HeldGainStage(self.x_spec, self.gain, self.mask, self.target_pe, n_fft,
                             unit_delay(n_fft, z.dtype, z.device), input_of, output_of, shaper_values)

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
        h_in = section_response(input_sections(self.blocks, sr), stage.n_fft, **kw)
        self.u0 = fft_filter(stage.x_spec, h_in, stage.samples, stage.n_fft)
        self.out = section_response(output_sections(self.blocks, sr) + (PREEMPHASIS_SECTION,), stage.n_fft, **kw)

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


