"""Exact gradient and Hessian of the gray-box's second stage, without autograd over the audio.

The second stage (:class:`dsp.derivatives.graybox_objectives.BlockObjective`) holds the compressor's gain
signal ``g`` and fits seven coordinates ``z``: the make-up ``m`` (dB), the input
filter's three logits ``theta``, the tube drive ``k`` and asymmetry ``a`` logits and the
output high-pass logit ``f``. Per frame::

    u0 = IFFT(X Hin(theta))          input filter (zero-padded FFT)
    v  = m g u0                      held gain with make-up
    s  = S(v; k, a)                  pointwise tube shaper
    y  = L(f) s                      output filter times pre-emphasis (FFT)
    loss = sum r^2,   r = mask (y - t)

Gradient and Hessian are exact (not Gauss-Newton)::

    grad  = 2 sum r y_p
    H_pq  = 2 sum mask y_p y_q + 2 sum r y_pq

- the first-order signals ``y_p`` are ``L`` applied to ``ds/dp`` (or ``dL/df`` applied
  to ``s``): one FFT pair each;
- the second-order part never forms ``y_pq``: with the adjoint ``lam = L^T r`` (one FFT
  pair, the conjugate response; exactly the adjoint of the truncated circular
  convolution), ``sum r L(w) = sum lam w``, so the shaper's pointwise second
  derivatives need no FFT; the ``theta`` second derivatives of ``u0`` become, by
  Parseval, frequency-domain dot products of ``conj(FFT(lam S_v m g))`` with
  ``X d2Hin``; the ``f`` terms use a second adjoint ``(dL/df)^T r`` and one dot
  product with ``d2L/df2``.
- the responses' derivatives w.r.t. the logits: closed form in each first-order
  section's coefficients, times the coefficients' derivatives in the logits from
  autograd on the few coefficients alone (:func:`value_derivatives`).

About 24 FFTs of the padded frame length per gradient and Hessian, against the
reverse-over-reverse autograd of :func:`dsp.derivatives.autograd.autograd_loss_grad_hess` (kept as
the reference, ``BlockObjective.loss_grad_hess_autograd``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dsp.derivatives.graybox_block_kernels import (cascade_coefficient_hessian, cascade_first, shaper_first,
                                                   shaper_second)
from dsp.models.blocks import fft_filter

__all__ = ["HeldGainStage", "shaper_partials", "CascadeDerivatives", "value_derivatives", "stage_loss_grad_hess",
           "MAKE_UP", "INPUT", "DRIVE", "ASYMMETRY", "OUTPUT"]

# positions in the stage vector z (dsp.derivatives.graybox_objectives.STAGE2_NAMES)
MAKE_UP, INPUT, DRIVE, ASYMMETRY, OUTPUT = 0, slice(1, 4), 4, 5, 6
_DB = math.log(10.0) / 20.0  # d m / d dB = m * _DB


@dataclass(frozen=True)
class HeldGainStage:
    """The data of the held-gain problem (every tensor float64 or complex128).

    Attributes:
        frames: ``part(slice) -> (x_spec, gain, mask, target)`` of those frames: ``rfft(x,
            n_fft)`` of the input, complex ``(b, F)``; the compressor's gain without make-up,
            scored samples (bool) and the pre-emphasised target (zero outside the mask), each
            ``(b, T)``; and ``n_frames``, ``samples``, ``dtype``, ``device``.
        n_fft: FFT length (``F = n_fft // 2 + 1``).
        zinv: ``e^{-jw}`` on the rfft grid, complex ``(F,)``.
        input_sections: ``theta (3,) -> (S, 3)`` coefficients of the input filter's sections.
        output_sections: ``f (1,) -> (S, 3)`` coefficients of the output filter and the
            pre-emphasis.
        shaper_values: ``(k logit, a logit) (2,) -> (drive, asymmetry) (2,)``.
    """
    frames: object
    n_fft: int
    zinv: torch.Tensor
    input_sections: Callable[[torch.Tensor], torch.Tensor]
    output_sections: Callable[[torch.Tensor], torch.Tensor]
    shaper_values: Callable[[torch.Tensor], torch.Tensor]


def shaper_partials(v: torch.Tensor, drive: torch.Tensor, asym: torch.Tensor) -> dict[str, torch.Tensor]:
    """The shaper ``S = T + a T^2``, ``T = tanh(k v) / k``, and its partial derivatives.

    Args:
        v: shaper input; drive ``k`` and asymmetry ``a``: 0-d tensors.

    Returns:
        dict with ``s`` and ``v, k, a, vv, vk, va, kk, ka`` (``S_aa = 0``), each shaped as ``v``.

    Shape:
        ``v``: any; every entry the same.
    """
    k = drive
    th = torch.tanh(k * v)
    sech2 = 1.0 - th * th
    t = th / k
    t_v = sech2
    t_k = (k * v * sech2 - th) / (k * k)
    t_vv = -2.0 * k * th * sech2
    t_vk = -2.0 * v * th * sech2
    t_kk = -2.0 * v * v * th * sech2 / k - 2.0 * v * sech2 / (k * k) + 2.0 * th / (k * k * k)
    lift = 1.0 + 2.0 * asym * t  # dS/dT
    return {"s": t + asym * t * t, "v": t_v * lift, "k": t_k * lift, "a": t * t,
            "vv": t_vv * lift + 2.0 * asym * t_v * t_v, "vk": t_vk * lift + 2.0 * asym * t_v * t_k,
            "kk": t_kk * lift + 2.0 * asym * t_k * t_k, "va": 2.0 * t * t_v, "ka": 2.0 * t * t_k}


class CascadeDerivatives:
    """Response of first-order sections in series, its first derivatives in ``z``, and
    second-derivative dot products, all in closed form.

    Each section is ``H_s = (b0 + b1 e^{-jw}) / (1 + a1 e^{-jw})``; its derivatives in its
    three coefficients are closed-form, the coefficients' first and second derivatives in
    ``z`` come from autograd on the small ``(S, 3)`` coefficient map (:func:`value_derivatives`), and the
    product rule joins the sections. The second derivatives of the response enter the
    stage's Hessian only through dot products with a weight (Parseval), so the
    ``(P, P, F)`` array of them is never formed (:meth:`hessian_dot`).

    Args:
        sections: ``z (P,) -> (S, 3)`` coefficients ``(b0, b1, a1)`` per section.
        z: the point.
        zinv: ``e^{-jw}`` on the rfft grid (:func:`dsp.models.blocks.unit_delay`).

    Attributes:
        h: complex ``(F,)``; dh: complex ``(P, F)``.
    """

    def __init__(self, sections: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, zinv: torch.Tensor,
                 fused: bool = False):
        coef, self.dc, self.d2c = value_derivatives(sections, z)   # (S, 3), (S, 3, P), (S, 3, P, P)
        self.zinv = zinv
        self.coef = coef
        self.fused = fused
        if fused:  # one numba pass over the bins (dsp.derivatives.graybox_block_kernels)
            self.h = torch.empty_like(zinv)
            self.dh = torch.empty((self.dc.shape[-1],) + zinv.shape, dtype=zinv.dtype)
            cascade_first(coef.numpy(), self.dc.contiguous().numpy(), zinv.numpy(), self.h.numpy(), self.dh.numpy())
            return
        self.parts, self.grads, self.inv_den = [], [], []
        for c in coef:
            inv_den = 1.0 / (1.0 + c[2] * zinv)
            hs = (c[0] + c[1] * zinv) * inv_den
            self.parts.append(hs)
            self.inv_den.append(inv_den)
            # dH_s / d(b0, b1, a1) = (1, z^-1, -H_s z^-1) / (1 + a1 z^-1)
            self.grads.append(torch.stack([inv_den, zinv * inv_den, -hs * zinv * inv_den]))   # (3, F)
        self.h = self._product(())
        self.dh = sum(self._product((s,)) * (self.dc[s].to(zinv.dtype).T @ self.grads[s])
                      for s in range(len(self.parts)))

    def _product(self, skip) -> torch.Tensor:
        out = torch.ones_like(self.zinv)
        for s, hs in enumerate(self.parts):
            if s not in skip:
                out = out * hs
        return out

    def hessian_dot(self, weight: torch.Tensor) -> torch.Tensor:
        """Hessian in ``z`` of ``Re sum_f weight_f H(z)_f``.

        Args:
            weight: complex ``(F,)``.

        Returns:
            ``(P, P)`` real.
        """
        if self.fused:
            n = self.coef.shape[0]
            grad_c, hess_c = np.zeros((n, 3)), np.zeros((n, 3, n, 3))
            cascade_coefficient_hessian(self.coef.numpy(), self.zinv.numpy(), weight.contiguous().numpy(),
                                        grad_c, hess_c)
            grad_c, hess_c = torch.from_numpy(grad_c), torch.from_numpy(hess_c)
            return (torch.einsum("sip,sitj,tjq->pq", self.dc, hess_c, self.dc)
                    + torch.einsum("si,sipq->pq", grad_c, self.d2c))
        n, p = len(self.parts), self.dc.shape[-1]
        out = torch.zeros((p, p), dtype=self.dc.dtype, device=self.dc.device)
        for s in range(n):
            rest = weight * self._product((s,))
            # first derivatives in the coefficients, times their second derivatives in z
            grad_c = (self.grads[s] @ rest).real                                # (3,)
            out += torch.einsum("i,ipq->pq", grad_c, self.d2c[s])
            # second derivatives in the section's own coefficients: (b0, a1), (b1, a1), (a1, a1)
            zd = self.zinv * self.inv_den[s]
            own = torch.zeros((3, 3), dtype=out.dtype, device=out.device)
            own[0, 2] = own[2, 0] = (rest @ (-zd * self.inv_den[s])).real
            own[1, 2] = own[2, 1] = (rest @ (-self.zinv * zd * self.inv_den[s])).real
            own[2, 2] = (rest @ (2.0 * self.parts[s] * zd * zd)).real
            out += self.dc[s].T @ own @ self.dc[s]
            for t in range(n):
                if t != s:  # one derivative in each of two sections
                    cross = ((weight * self._product((s, t)) * self.grads[s]) @ self.grads[t].T).real   # (3, 3)
                    out += self.dc[s].T @ cross @ self.dc[t]
        return out


def _rfft_weights(n_fft: int, dtype, device) -> torch.Tensor:
    """Weights of the one-sided spectrum in Parseval's sum (DC and Nyquist once)."""
    w = torch.full((n_fft // 2 + 1,), 2.0, dtype=dtype, device=device)
    w[0] = 1.0
    if n_fft % 2 == 0:
        w[-1] = 1.0
    return w / n_fft


def stage_loss_grad_hess(stage: HeldGainStage, z: torch.Tensor, hessian: bool = True,
                         frames_per_pass: int = 1, fused: bool | None = None):
    """Loss, exact gradient and exact Hessian of the held-gain stage at ``z``.

    Args:
        stage: the problem (:class:`HeldGainStage`).
        z: ``(7,)`` make-up dB, input logits (3), drive, asymmetry, output logits.
        hessian: False: loss and gradient only (the Hessian is returned as None).
        frames_per_pass: frames processed together (memory: about 15 frame-length signals per frame).
        fused: pointwise and per-bin work in numba loops (:mod:`dsp.derivatives.graybox_block_kernels`) rather
            than torch operations; default: on the CPU.

    Returns:
        ``(loss float, grad (7,), hess (7, 7) or None)``, float64 on the CPU.
    """
    data = stage.frames
    z = torch.as_tensor(z).detach().to(dtype=data.dtype, device=data.device)
    n_fft, samples = stage.n_fft, data.samples
    fused = (z.device.type == "cpu") if fused is None else fused
    weights = _rfft_weights(n_fft, z.dtype, z.device)
    input_filter = CascadeDerivatives(stage.input_sections, z[INPUT], stage.zinv, fused)
    output_filter = CascadeDerivatives(stage.output_sections, z[OUTPUT:OUTPUT + 1], stage.zinv, fused)
    h_in, dh_in, l_out, dl = input_filter.h, input_filter.dh, output_filter.h, output_filter.dh[0]
    in_weight = torch.zeros_like(h_in)      # sum over frames of conj(FFT(lam S_v m g)) X
    out_weight = torch.zeros_like(h_in)     # sum over frames of conj(FFT(r)) FFT(s)
    ka, dka, d2ka = value_derivatives(stage.shaper_values, z[DRIVE:ASYMMETRY + 1])
    k, a = ka[0], ka[1]
    dk, d2k, da, d2a = dka[0, 0], d2ka[0, 0, 0], dka[1, 1], d2ka[1, 1, 1]
    m = torch.exp(_DB * z[MAKE_UP])

    loss = torch.zeros((), dtype=z.dtype, device=z.device)
    jtj = torch.zeros((7, 7), dtype=z.dtype, device=z.device)
    grad = torch.zeros(7, dtype=z.dtype, device=z.device)
    q = torch.zeros((7, 7), dtype=z.dtype, device=z.device)  # sum r y_pq
    # The order below keeps few frame-length signals alive at once (a long pair's peak memory):
    # each is dropped as soon as its last use is done, the adjoint terms come before the
    # first-order signals y_p, and ds/dp is made one row at a time, never stacked.
    for lo in range(0, data.n_frames, frames_per_pass):
        x_spec, gain, mask, target = data.part(slice(lo, lo + frames_per_pass))
        mg = m * gain
        del gain
        v = mg * fft_filter(x_spec, h_in, samples, n_fft)                  # (b, T)
        sp = _shaper_fused(v, float(k), float(a)) if fused else shaper_partials(v, k, a)
        s_spec = torch.fft.rfft(sp.pop("s"), n=n_fft)
        r = torch.where(mask, fft_filter(s_spec, l_out, samples, n_fft) - target, 0.0)
        del target
        loss = loss + (r * r).sum()
        # v_p for make-up and the input logits; the shaper's own two enter through k and a
        dv = torch.empty((v.shape[0], 4, samples), dtype=v.dtype, device=v.device)   # (b, 4, T)
        dv[:, 0] = _DB * v
        for i in range(3):
            dv[:, 1 + i] = mg * fft_filter(x_spec, dh_in[i], samples, n_fft)
        if hessian:
            r_spec = torch.fft.rfft(r, n=n_fft)
            lam = fft_filter(r_spec, torch.conj(l_out), samples, n_fft)     # L^T r
            lam_f = fft_filter(r_spec, torch.conj(dl), samples, n_fft)      # (dL/df)^T r
            out_weight += (torch.conj(r_spec) * s_spec).sum(0)
            del r_spec
            # input logits' second derivatives of u0, by Parseval (lam S_v m g is the weight of u0)
            if fused:
                mu = torch.empty_like(lam)
                for b in range(lam.shape[0]):
                    shaper_second(v[b].numpy(), lam[b].numpy(), dv[b].contiguous().numpy(), mg[b].numpy(),
                                  float(k), float(a), float(dk), float(d2k), float(da), float(d2a), _DB,
                                  q.numpy(), mu[b].numpy())
            else:
                q = q + _pointwise_second_order(lam, sp, dv, dk, d2k, da, d2a)
                mu = lam * sp["v"] * mg
            in_weight += (torch.conj(torch.fft.rfft(mu, n=n_fft)) * x_spec).sum(0)
            del lam, mu
        del x_spec, mg, v
        # the first-order signals y_p, each filtered into its slot of (b, 7, T) and masked there
        # (gradient only: one slot, reused)
        y_p = torch.empty((dv.shape[0], 7 if hessian else 1, samples), dtype=dv.dtype, device=dv.device)
        unscored = ~mask
        for i in range(7):
            row = y_p[:, i if hessian else 0]
            if i < 6:
                ds = sp["v"] * dv[:, i] if i < 4 else (sp["k"] * dk if i == 4 else sp["a"] * da)
                fft_filter(torch.fft.rfft(ds, n=n_fft), l_out, samples, n_fft, out=row)
                if hessian:
                    q[i, OUTPUT] += (lam_f * ds).sum()
                del ds
            else:
                fft_filter(s_spec, dl, samples, n_fft, out=row)
            row.masked_fill_(unscored, 0.0)
            grad[i] += 2.0 * (row * r).sum()
            del row
        if hessian:
            jtj = jtj + 2.0 * torch.einsum("bpt,bqt->pq", y_p, y_p)
            del lam_f
        # this frame's signals freed before the next frame's are made (else both live at once)
        del mask, unscored, sp, s_spec, r, dv, y_p
    g = grad.cpu()
    if not hessian:
        return float(loss), g, None
    q[INPUT, INPUT] += input_filter.hessian_dot(in_weight * weights)
    q[OUTPUT, OUTPUT] += output_filter.hessian_dot(out_weight * weights)[0, 0]
    q = torch.triu(q) + torch.triu(q, 1).T
    hess = jtj + 2.0 * q
    return float(loss), g, (0.5 * (hess + hess.T)).cpu()


def _shaper_fused(v: torch.Tensor, k: float, a: float) -> dict[str, torch.Tensor]:
    """``s, S_v, S_k, S_a`` of :func:`shaper_partials` by one numba pass."""
    out = {name: torch.empty_like(v) for name in ("s", "v", "k", "a")}
    shaper_first(v.contiguous().numpy().reshape(-1), k, a, *(out[n].numpy().reshape(-1) for n in ("s", "v", "k", "a")))
    return out


def value_derivatives(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor):
    """A small map's value with its first and second derivatives, by autograd.

    For the few coefficients of the filters and the shaper (reverse mode, one backward
    pass per output and per output and parameter: far cheaper than ``torch.func`` for
    a handful of scalars).

    Args:
        fn: ``z (P,) -> tensor`` of any shape ``O``.
        z: the point.

    Returns:
        ``(value O, d (O..., P), d2 (O..., P, P))``, detached.
    """
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(z)
        flat = out.reshape(-1)
        n, p = flat.shape[0], z.shape[0]
        d = torch.zeros((n, p), dtype=z.dtype, device=z.device)
        d2 = torch.zeros((n, p, p), dtype=z.dtype, device=z.device)
        for i in range(n):
            if not flat[i].requires_grad:
                continue
            (gi,) = torch.autograd.grad(flat[i], z, retain_graph=True, create_graph=True, allow_unused=True)
            if gi is None:
                continue
            d[i] = gi.detach()
            for j in range(p):
                if gi[j].requires_grad:
                    (hij,) = torch.autograd.grad(gi[j], z, retain_graph=True, allow_unused=True)
                    if hij is not None:
                        d2[i, j] = hij
    shape = tuple(out.shape)
    return out.detach(), d.reshape(shape + (p,)), d2.reshape(shape + (p, p))


def _pointwise_second_order(lam, sp, dv, dk, d2k, da, d2a) -> torch.Tensor:
    """Upper triangle of ``sum lam d2s/dp dq`` for every pair except the input logits'
    own second derivatives of ``u0`` (Parseval, outside) and the output logit (its adjoint)."""
    q = torch.zeros((7, 7), dtype=lam.dtype, device=lam.device)
    # S_vv v_p v_q over make-up and the input logits
    q[:4, :4] = torch.einsum("bt,bpt,bqt->pq", lam * sp["vv"], dv, dv)
    # S_v v_pq: v_{00} = c^2 v = c v_0, v_{0i} = c m g u0_i = c v_i
    first = _DB * torch.einsum("bt,bpt->p", lam * sp["v"], dv)
    q[0, :4] += first
    # mixed with the drive and the asymmetry
    q[:4, DRIVE] = dk * torch.einsum("bt,bpt->p", lam * sp["vk"], dv)
    q[:4, ASYMMETRY] = da * torch.einsum("bt,bpt->p", lam * sp["va"], dv)
    q[DRIVE, DRIVE] = (lam * (sp["kk"] * dk * dk + sp["k"] * d2k)).sum()
    q[DRIVE, ASYMMETRY] = dk * da * (lam * sp["ka"]).sum()
    q[ASYMMETRY, ASYMMETRY] = d2a * (lam * sp["a"]).sum()
    return q
