"""The fit's objective: sum of squared pre-emphasised error over the scored samples.

An objective is built from :class:`audio.framing.Frames` and a
:class:`dsp.models.parameters.Parameterisation` and offers, for the solver's unconstrained
``z`` (float64, shape ``(5,)``):

- ``loss(z) -> float``: the line-search path;
- ``loss_grad_hess(z) -> (float, (5,) tensor, (5, 5) tensor)``: exact derivatives;
- ``energy``: the pre-emphasised target energy over the scored samples (ESR = loss / energy);
- ``output(z) -> (B, T) numpy``: the compressor output (for reports);
- ``output_energy(z) -> float``: its pre-emphasised energy over the scored samples
  (for level matching; the kernel computes it without storing the output).

:class:`AutogradObjective` gets its derivatives from torch autograd through
torchcomp (reverse over reverse, as the published method); the fused kernel in
:mod:`dsp.derivatives.ff5_kernel` offers the same interface much faster.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from audio.framing import Frames
from dsp.models.ff5 import compress
from dsp.models.parameters import Parameterisation
from dsp.models.preemphasis import preemphasis

__all__ = ["AutogradObjective", "target_energy", "autograd_loss_grad", "autograd_loss_grad_hess"]


def target_energy(frames: Frames) -> float:
    """Pre-emphasised target energy over the scored samples (frame by frame: no copy of
    the whole pair)."""
    from audio.metrics import preemphasis_np
    total = 0.0
    for b in range(frames.n_frames):
        _, y = frames.frame(b)
        total += float(np.sum(preemphasis_np(np.asarray(y, dtype=np.float64))[frames.warmup:] ** 2))
    return total


class AutogradObjective:
    """Objective with derivatives from autograd.

    Args:
        frames: the framed pair.
        param: the parameterisation (physical parameters from the solver's z).
        device: torch device (CUDA is used when given).
        dtype: float64 by default (the solver's precision).
    """

    def __init__(self, frames: Frames, param: Parameterisation, device="cpu", dtype=torch.float64):
        self.param = param
        self.device = torch.device(device)
        self.dtype = dtype
        self.x = torch.as_tensor(frames.x, dtype=dtype, device=self.device)
        detector = frames.detector   # a linked multichannel pair's; None: each frame's own input
        self.detector = None if detector is None else torch.as_tensor(detector, dtype=dtype, device=self.device)
        target_pe = preemphasis(torch.as_tensor(frames.y, dtype=dtype, device=self.device))
        self.mask = torch.as_tensor(frames.score_mask(), device=self.device)
        self.target_pe = torch.where(self.mask, target_pe, 0.0)
        self.energy = float((self.target_pe ** 2).sum())

    def _loss_tensor(self, z: torch.Tensor) -> torch.Tensor:
        y = compress(self.x, self.param.natural(z), self.detector)
        err = torch.where(self.mask, preemphasis(y) - self.target_pe, 0.0)
        return (err ** 2).sum()

    def loss(self, z: torch.Tensor) -> float:
        with torch.no_grad():
            try:
                return float(self._loss_tensor(self._z(z)))
            except AssertionError:  # torchcomp rejects a saturated parameter (e.g. ratio == 1)
                return math.inf

    def loss_grad(self, z: torch.Tensor) -> tuple[float, torch.Tensor]:
        return autograd_loss_grad(self._loss_tensor, self._z(z))

    def loss_grad_hess(self, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        return autograd_loss_grad_hess(self._loss_tensor, self._z(z))

    def output_energy(self, z: torch.Tensor) -> float:
        """Pre-emphasised output energy over the scored samples."""
        from audio.metrics import preemphasis_np
        return float(np.sum(preemphasis_np(self.output(z)) ** 2 * self.mask.cpu().numpy()))

    def output(self, z: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return compress(self.x, self.param.natural(self._z(z)), self.detector).cpu().numpy()

    def _z(self, z: torch.Tensor) -> torch.Tensor:
        return z.detach().to(device=self.device, dtype=self.dtype)


def autograd_loss_grad(loss_tensor, z: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Loss and exact gradient of ``loss_tensor(z)`` by torch autograd (float64 on the CPU)."""
    z = z.requires_grad_(True)
    f = loss_tensor(z)
    (g,) = torch.autograd.grad(f, z)
    return float(f.detach()), g.detach().cpu().to(torch.float64)


def autograd_loss_grad_hess(loss_tensor, z: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Loss, exact gradient and exact (symmetrised) Hessian of ``loss_tensor(z)``: one graph
    with ``create_graph``, then one backward pass per Hessian row."""
    z = z.requires_grad_(True)
    f = loss_tensor(z)
    (g,) = torch.autograd.grad(f, z, create_graph=True)
    n = z.shape[0]
    rows = [torch.autograd.grad(g[i], z, retain_graph=i < n - 1)[0] for i in range(n)]
    h = torch.stack(rows)
    h = 0.5 * (h + h.T)
    return float(f.detach()), g.detach().cpu().to(torch.float64), h.detach().cpu().to(torch.float64)
