"""Fused numba loops for the gray-box stage's exact derivatives (:mod:`dsp.derivatives.graybox_blocks`).

One pass over the samples (or the frequency bins) instead of a dozen tensor
operations with their temporaries; the formulas are those of the torch code in
:mod:`dsp.derivatives.graybox_blocks` (``shaper_partials``, ``CascadeDerivatives``), which the
tests hold these against.

- :func:`shaper_first`: the shaper ``S = T + a T^2``, ``T = tanh(k v) / k``, and
  ``S_v, S_k, S_a``;
- :func:`shaper_second`: the adjoint-weighted sums of the shaper's second derivatives,
  and the Parseval weight ``lam S_v m g`` of the input filter's second derivatives;
- :func:`cascade_first`: a cascade of first-order sections and its derivatives in the
  parameters;
- :func:`cascade_coefficient_hessian`: gradient and Hessian of ``Re sum_f W_f H_f`` in
  the sections' coefficients.

All arrays float64 (complex128 for spectra), C-contiguous.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["shaper_first", "shaper_second", "cascade_first", "cascade_coefficient_hessian"]


@njit(cache=True)
def shaper_first(v, k, a, s, s_v, s_k, s_a):
    """Fill ``s, s_v, s_k, s_a`` (each ``(N,)``) at ``v`` ``(N,)``."""
    for i in range(v.shape[0]):
        vi = v[i]
        th = math.tanh(k * vi)
        se = 1.0 - th * th
        t = th / k
        lift = 1.0 + 2.0 * a * t
        s[i] = t + a * t * t
        s_v[i] = se * lift
        s_k[i] = (k * vi * se - th) / (k * k) * lift
        s_a[i] = t * t


@njit(cache=True)
def shaper_second(v, lam, dv, mg, k, a, dk, d2k, da, d2a, db, q, mu):
    """Add ``sum lam d2s/dp dq`` (shaper terms) into the upper triangle of ``q`` (7, 7).

    Args:
        v, lam, mg: shaper input, adjoint ``L^T r``, held gain with make-up, ``(N,)``.
        dv: ``(4, N)`` derivatives of ``v`` in the make-up and the three input logits.
        k, a: drive, asymmetry; dk, d2k, da, d2a: their derivatives in their logits.
        db: ``ln(10) / 20`` (``d2v / d make-up d p = db dv_p``).
        q: ``(7, 7)`` accumulator.
        mu: ``(N,)`` output, ``lam S_v m g``.
    """
    acc_vv = np.zeros((4, 4))
    acc_v = np.zeros(4)
    acc_vk = np.zeros(4)
    acc_va = np.zeros(4)
    acc_kk = 0.0
    acc_ka = 0.0
    acc_a = 0.0
    k2 = k * k
    for i in range(v.shape[0]):
        vi = v[i]
        th = math.tanh(k * vi)
        se = 1.0 - th * th
        t = th / k
        t_v = se
        t_k = (k * vi * se - th) / k2
        t_vv = -2.0 * k * th * se
        t_vk = -2.0 * vi * th * se
        t_kk = -2.0 * vi * vi * th * se / k - 2.0 * vi * se / k2 + 2.0 * th / (k2 * k)
        lift = 1.0 + 2.0 * a * t
        l = lam[i]
        s_v = t_v * lift
        mu[i] = l * s_v * mg[i]
        w_vv = l * (t_vv * lift + 2.0 * a * t_v * t_v)
        w_v = l * s_v
        w_vk = l * (t_vk * lift + 2.0 * a * t_v * t_k)
        w_va = l * 2.0 * t * t_v
        for p in range(4):
            dp = dv[p, i]
            for r in range(p, 4):
                acc_vv[p, r] += w_vv * dp * dv[r, i]
            acc_v[p] += w_v * dp
            acc_vk[p] += w_vk * dp
            acc_va[p] += w_va * dp
        acc_kk += l * ((t_kk * lift + 2.0 * a * t_k * t_k) * dk * dk + t_k * lift * d2k)
        acc_ka += l * 2.0 * t * t_k
        acc_a += l * t * t
    for p in range(4):
        for r in range(p, 4):
            q[p, r] += acc_vv[p, r]
        q[0, p] += db * acc_v[p]
        q[p, 4] += dk * acc_vk[p]
        q[p, 5] += da * acc_va[p]
    q[4, 4] += acc_kk
    q[4, 5] += dk * da * acc_ka
    q[5, 5] += d2a * acc_a


@njit(cache=True)
def _section_terms(coef, z, hs, grads):
    """Each first-order section's response ``hs[s]`` at ``z = e^{-jw}`` and its derivatives
    in ``(b0, b1, a1)`` (``grads[s]``)."""
    for s in range(coef.shape[0]):
        inv = 1.0 / (1.0 + coef[s, 2] * z)
        hs[s] = (coef[s, 0] + coef[s, 1] * z) * inv
        grads[s, 0] = inv
        grads[s, 1] = z * inv
        grads[s, 2] = -hs[s] * z * inv


@njit(cache=True)
def cascade_first(coef, dc, zinv, h, dh):
    """Fill ``h`` ``(F,)`` and ``dh`` ``(P, F)``: the cascade's response and its derivatives.

    Args:
        coef: ``(S, 3)`` section coefficients ``(b0, b1, a1)``.
        dc: ``(S, 3, P)`` their derivatives in the parameters.
        zinv: ``(F,)`` ``e^{-jw}``.
    """
    n_sec, n_par = coef.shape[0], dc.shape[2]
    hs = np.empty(n_sec, dtype=np.complex128)
    grads = np.empty((n_sec, 3), dtype=np.complex128)
    for f in range(zinv.shape[0]):
        z = zinv[f]
        _section_terms(coef, z, hs, grads)
        total = 1.0 + 0.0j
        for s in range(n_sec):
            total *= hs[s]
        h[f] = total
        for p in range(n_par):
            dh[p, f] = 0.0
        for s in range(n_sec):
            rest = 1.0 + 0.0j
            for u in range(n_sec):
                if u != s:
                    rest *= hs[u]
            for p in range(n_par):
                dh[p, f] += rest * (dc[s, 0, p] * grads[s, 0] + dc[s, 1, p] * grads[s, 1]
                                    + dc[s, 2, p] * grads[s, 2])


@njit(cache=True)
def cascade_coefficient_hessian(coef, zinv, weight, grad_c, hess_c):
    """Gradient ``(S, 3)`` and Hessian ``(S, 3, S, 3)`` of ``Re sum_f weight_f H_f`` in the
    coefficients (accumulated into ``grad_c`` and ``hess_c``)."""
    n_sec = coef.shape[0]
    hs = np.empty(n_sec, dtype=np.complex128)
    grads = np.empty((n_sec, 3), dtype=np.complex128)
    for f in range(zinv.shape[0]):
        z = zinv[f]
        _section_terms(coef, z, hs, grads)
        for s in range(n_sec):
            rest = weight[f]
            for u in range(n_sec):
                if u != s:
                    rest *= hs[u]
            for i in range(3):
                grad_c[s, i] += (rest * grads[s, i]).real
            inv = 1.0 / (1.0 + coef[s, 2] * z)
            zd = z * inv
            b0a1 = (rest * (-zd * inv)).real
            b1a1 = (rest * (-z * zd * inv)).real
            hess_c[s, 0, s, 2] += b0a1
            hess_c[s, 2, s, 0] += b0a1
            hess_c[s, 1, s, 2] += b1a1
            hess_c[s, 2, s, 1] += b1a1
            hess_c[s, 2, s, 2] += (rest * (2.0 * hs[s] * zd * zd)).real
            for t in range(n_sec):
                if t == s:
                    continue
                pair = weight[f]
                for u in range(n_sec):
                    if u != s and u != t:
                        pair *= hs[u]
                for i in range(3):
                    for j in range(3):
                        hess_c[s, i, t, j] += (pair * grads[s, i] * grads[t, j]).real
