"""Fused forward-mode kernel: loss, exact gradient and exact Hessian in one pass.

The objective of :mod:`dsp.derivatives.autograd` is a sum of squared pre-emphasised error
over the scored samples. With five parameters and one recursive gain smoother,
the first (4) and second (10) derivatives of the smoothed gain with respect to
``(threshold_db, ratio, attack_coef, release_coef)`` can be carried forward in
time with the gain itself. Multiplied by the input they are the derivatives of
the (un-made-up) output; the pre-emphasis is linear, so each of these 15
streams goes through the same IIR filter, and the loss, gradient and Hessian
are accumulated on the fly. Make-up gain enters as a scale factor, so its
derivatives need no streams of their own. Nothing is stored per sample.

Conventions match :func:`dsp.models.ff5.compress` (torchcomp's ``compexp_gain``
with the expander off):

- level ``max(|x|, 1e-8)``; static curve ``gs = min(0, (1 - 1/ratio) (thr - L_dB))``;
  its derivative at the knee (``gs = 0``) is zero;
- ``f = 10^(gs/20)``; ``g[n] = (1 - c) g[n-1] + c f[n]`` from ``g[-1] = 1`` with
  ``c`` the attack coefficient when ``f[n] < g[n-1]``, else the release one. As in
  torchcomp's backward, the attack/release pattern is treated as fixed when
  differentiating;
- pre-emphasis ``(1 - z^-1)/(1 - 0.995 z^-1)`` from rest at each frame start.

The numba kernels work in the natural coordinates ``v = (threshold_db, ratio,
attack_coef, release_coef, make_up_db)``; :class:`KernelObjective` chains them
to the solver's ``z`` with :meth:`dsp.models.parameters.Parameterisation.natural_derivs`
and offers the interface of :class:`dsp.derivatives.autograd.AutogradObjective`.

float64 is the solver's precision. float32 is accepted: the recursions then run
in float32 while the sums are accumulated in float64.

Memory: the kernels read the frames through a table over the pair's own signals
(:class:`KernelData`) and compute the level ``log|x|`` and the pre-emphasised
target sample by sample, with the same float64 operations the stored arrays were
made with, so a fit holds the audio once, as it was read (float32 from a file).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from audio.framing import Frames
from dsp.models.ff5 import PEAK_FLOOR
from dsp.models.parameters import Parameterisation
from audio.metrics import POLE

__all__ = ["KernelObjective", "KernelData", "prepare", "loss_natural", "loss_grad_natural",
           "loss_grad_hess_natural", "output_natural", "output_energy_natural", "target_energy",
           "chain_to_z"]

# natural log of the dB-to-amplitude factor: 10^(d/20) = exp(K_DB * d)
K_DB = math.log(10.0) / 20.0

# Layout of the per-call constants array (same dtype as the signal arrays).
_THR, _S, _DS, _DDS, _AT, _RT, _OMA, _OMR, _KS, _KS2, _KDS, _POLE, _QPOLE, _ONE, _ZERO, _MAKEUP = range(16)
_NPRM = 16

# Layout of the per-frame sums of the fused kernel.
# V = (P w, P w_T, P w_R, P w_a, P w_r): pre-emphasised output before make-up and its
# first derivatives; w_pq are the second derivatives, in the order
# TT, TR, Ta, Tr, RR, Ra, Rr, aa, ar, rr.
_PAIRS = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))
_NSUM = 1 + 5 + 15 + 10  # e^2 | e V_i | V_i V_j (i <= j) | e P w_pq


def _constants(natural: np.ndarray, dtype) -> np.ndarray:
    """The kernel's constants from the natural vector (computed in float64, then cast)."""
    thr, ratio, at, rt, make_up = (float(t) for t in natural)
    s = 1.0 - 1.0 / ratio
    ds = 1.0 / ratio ** 2
    dds = -2.0 / ratio ** 3
    prm = np.zeros(_NPRM, dtype=np.float64)
    prm[_THR] = K_DB * thr
    prm[_S] = s
    prm[_DS] = ds
    prm[_DDS] = dds
    prm[_AT] = at
    prm[_RT] = rt
    prm[_OMA] = 1.0 - at
    prm[_OMR] = 1.0 - rt
    prm[_KS] = K_DB * s
    prm[_KS2] = (K_DB * s) ** 2
    prm[_KDS] = K_DB * ds
    prm[_POLE] = POLE
    prm[_QPOLE] = 1.0 - POLE
    prm[_ONE] = 1.0
    prm[_ZERO] = 0.0
    prm[_MAKEUP] = 10.0 ** (make_up / 20.0)
    return prm.astype(dtype)


# ----------------------------------------------------------------------------------------
# numba kernels. Every kernel runs one frame per parallel task; all arithmetic on the
# recursions stays in the arrays' dtype (no float literals, which numba types as float64),
# the sums are float64.
# ----------------------------------------------------------------------------------------

@njit(fastmath=False, cache=True)
def _read(xs, ys, det, c, dc, i, tz, box):
    """One sample of frame data, computed where the kernels need it instead of stored.

    Returns the input in the working precision (``box``'s dtype), the natural log of
    the detector's clamped peak level (row ``dc`` of ``det``: the input itself for a mono
    frame, the loudest channel's for a linked multichannel one; as the working precision
    rounds it, computed in float64, then rounded), the target's pre-emphasised sample (in
    float64 as :func:`audio.metrics.preemphasis_np` computes it: scipy's direct form II
    transposed, then rounded) and the new state of that filter.
    """
    box[0] = xs[c, i]
    xw = box[0]
    box[1] = det[dc, i]
    box[1] = math.log(max(abs(float(box[1])), PEAK_FLOOR))
    yr = float(ys[c, i])
    t = tz + yr
    box[2] = t
    return xw, box[1], box[2], POLE * t - yr


@njit(parallel=True, fastmath=False, cache=True)
def _loss_kernel(xs, ys, det, index, lengths, warmup, prm):
    B = lengths.shape[0]
    out = np.zeros(B, dtype=np.float64)
    thr = prm[_THR]
    s = prm[_S]
    at = prm[_AT]
    rt = prm[_RT]
    pole = prm[_POLE]
    qpole = prm[_QPOLE]
    m = prm[_MAKEUP]
    zero = prm[_ZERO]
    for b in prange(B):
        ch = index[b, 0]
        s0 = index[b, 1]
        dc = index[b, 2]
        n_end = lengths[b]
        box = np.empty_like(prm[:3])  # casts into the working precision
        tz = 0.0                      # the target's pre-emphasis state
        g = prm[_ONE]
        S0 = zero
        acc = 0.0
        for n in range(n_end):
            xw, lnl, tv, tz = _read(xs, ys, det, ch, dc, s0 + n, tz, box)
            sv = s * (thr - lnl)
            if sv < zero:  # above threshold (torchcomp's relu: derivative 0 at the knee)
                f = math.exp(sv)
                c = at if f < g else rt
                g = g + c * (f - g)
            else:
                g = g + rt * (prm[_ONE] - g)
            w = xw * g
            o = w - qpole * S0
            S0 = w + pole * S0
            if n >= warmup:
                e = m * o - tv
                acc += e * e
        out[b] = acc
    return out


@njit(parallel=True, fastmath=False, cache=True)
def _output_kernel(xs, det, index, lengths, T, prm):
    B = lengths.shape[0]
    y = np.zeros((B, T), dtype=prm.dtype)
    thr = prm[_THR]
    s = prm[_S]
    at = prm[_AT]
    rt = prm[_RT]
    m = prm[_MAKEUP]
    zero = prm[_ZERO]
    for b in prange(B):
        ch = index[b, 0]
        s0 = index[b, 1]
        dc = index[b, 2]
        box = np.empty_like(prm[:3])
        g = prm[_ONE]
        for n in range(lengths[b]):
            xw, lnl, _, _ = _read(xs, xs, det, ch, dc, s0 + n, 0.0, box)
            sv = s * (thr - lnl)
            if sv < zero:  # above threshold (torchcomp's relu: derivative 0 at the knee)
                f = math.exp(sv)
                cf = at if f < g else rt
                g = g + cf * (f - g)
            else:
                g = g + rt * (prm[_ONE] - g)
            y[b, n] = xw * g * m
    return y


@njit(parallel=True, fastmath=False, cache=True)
def _output_energy_kernel(xs, det, index, lengths, warmup, prm):
    """Per-frame pre-emphasised energy of the output over the scored samples, the output
    filtered as :func:`audio.metrics.preemphasis_np` filters it (float64)."""
    B = lengths.shape[0]
    out = np.zeros(B, dtype=np.float64)
    thr = prm[_THR]
    s = prm[_S]
    at = prm[_AT]
    rt = prm[_RT]
    m = prm[_MAKEUP]
    zero = prm[_ZERO]
    for b in prange(B):
        ch = index[b, 0]
        s0 = index[b, 1]
        dc = index[b, 2]
        box = np.empty_like(prm[:3])
        g = prm[_ONE]
        oz = 0.0
        acc = 0.0
        for n in range(lengths[b]):
            xw, lnl, _, _ = _read(xs, xs, det, ch, dc, s0 + n, 0.0, box)
            sv = s * (thr - lnl)
            if sv < zero:
                f = math.exp(sv)
                cf = at if f < g else rt
                g = g + cf * (f - g)
            else:
                g = g + rt * (prm[_ONE] - g)
            box[0] = xw * g * m          # the output as the output kernel stores it
            o = float(box[0])
            t = oz + o
            oz = POLE * t - o
            if n >= warmup:
                acc += t * t
        out[b] = acc
    return out


@njit(parallel=True, fastmath=False, cache=True)
def _target_energy_kernel(ys, index, lengths, warmup, box_proto):
    """Per-frame sum of the squared pre-emphasised target over the scored samples."""
    B = lengths.shape[0]
    out = np.zeros(B, dtype=np.float64)
    for b in prange(B):
        ch = index[b, 0]
        s0 = index[b, 1]
        box = np.empty_like(box_proto)
        tz = 0.0
        acc = 0.0
        for n in range(lengths[b]):
            _, _, tv, tz = _read(ys, ys, ys, ch, ch, s0 + n, tz, box)
            if n >= warmup:
                acc += float(tv) * float(tv)
        out[b] = acc
    return out


@njit(parallel=True, fastmath=False, cache=True)
def _grad_kernel(xs, ys, det, index, lengths, warmup, prm):
    """Per-frame sums: e^2, then e * (P w, P w_T, P w_R, P w_a, P w_r)."""
    B = lengths.shape[0]
    out = np.zeros((B, 6), dtype=np.float64)
    thr = prm[_THR]
    s = prm[_S]
    ds = prm[_DS]
    at = prm[_AT]
    rt = prm[_RT]
    oma = prm[_OMA]
    omr = prm[_OMR]
    ks = prm[_KS]
    pole = prm[_POLE]
    qpole = prm[_QPOLE]
    m = prm[_MAKEUP]
    one = prm[_ONE]
    zero = prm[_ZERO]
    for b in prange(B):
        ch = index[b, 0]
        s0 = index[b, 1]
        dc = index[b, 2]
        n_end = lengths[b]
        box = np.empty_like(prm[:3])  # casts into the working precision
        tz = 0.0                      # the target's pre-emphasis state
        g = one
        dT = zero
        dR = zero
        da = zero
        dr = zero
        S0 = zero
        S1 = zero
        S2 = zero
        S3 = zero
        S4 = zero
        aL = 0.0
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        a4 = 0.0
        for n in range(n_end):
            xw, lnl, tv, tz = _read(xs, ys, det, ch, dc, s0 + n, tz, box)
            v = thr - lnl
            sv = s * v
            if sv < zero:  # above threshold (torchcomp's relu: derivative 0 at the knee)
                f = math.exp(sv)
                dfT = f * ks
                dfR = f * v * ds
                D = f - g
                if f < g:
                    dT = oma * dT + at * dfT
                    dR = oma * dR + at * dfR
                    da = oma * da + D
                    dr = oma * dr
                    g = g + at * D
                else:
                    dT = omr * dT + rt * dfT
                    dR = omr * dR + rt * dfR
                    da = omr * da
                    dr = omr * dr + D
                    g = g + rt * D
            else:
                D = one - g
                dT = omr * dT
                dR = omr * dR
                da = omr * da
                dr = omr * dr + D
                g = g + rt * D
            xn = xw
            w0 = xn * g
            w1 = xn * dT
            w2 = xn * dR
            w3 = xn * da
            w4 = xn * dr
            o0 = w0 - qpole * S0
            o1 = w1 - qpole * S1
            o2 = w2 - qpole * S2
            o3 = w3 - qpole * S3
            o4 = w4 - qpole * S4
            S0 = w0 + pole * S0
            S1 = w1 + pole * S1
            S2 = w2 + pole * S2
            S3 = w3 + pole * S3
            S4 = w4 + pole * S4
            if n >= warmup:
                e = m * o0 - tv
                aL += e * e
                a0 += e * o0
                a1 += e * o1
                a2 += e * o2
                a3 += e * o3
                a4 += e * o4
        out[b, 0] = aL
        out[b, 1] = a0
        out[b, 2] = a1
        out[b, 3] = a2
        out[b, 4] = a3
        out[b, 5] = a4
    return out


@njit(parallel=True, fastmath=False, cache=True)
def _hess_kernel(xs, ys, det, index, lengths, warmup, prm):
    """Per-frame sums in the layout of ``_NSUM`` (see the module constants)."""
    B = lengths.shape[0]
    out = np.zeros((B, 31), dtype=np.float64)
    thr = prm[_THR]
    s = prm[_S]
    ds = prm[_DS]
    dds = prm[_DDS]
    at = prm[_AT]
    rt = prm[_RT]
    oma = prm[_OMA]
    omr = prm[_OMR]
    ks = prm[_KS]
    ks2 = prm[_KS2]
    kds = prm[_KDS]
    pole = prm[_POLE]
    qpole = prm[_QPOLE]
    m = prm[_MAKEUP]
    one = prm[_ONE]
    zero = prm[_ZERO]
    for b in prange(B):
        ch = index[b, 0]
        s0 = index[b, 1]
        dc = index[b, 2]
        n_end = lengths[b]
        box = np.empty_like(prm[:3])  # casts into the working precision
        tz = 0.0                      # the target's pre-emphasis state
        # gain, its first derivatives (T, R, a, r) and second derivatives
        g = one
        dT = zero
        dR = zero
        da = zero
        dr = zero
        hTT = zero
        hTR = zero
        hTa = zero
        hTr = zero
        hRR = zero
        hRa = zero
        hRr = zero
        haa = zero
        har = zero
        hrr = zero
        # pre-emphasis states: P w[n] = w[n] - (1 - pole) S[n-1], S[n] = w[n] + pole S[n-1]
        S0 = zero
        S1 = zero
        S2 = zero
        S3 = zero
        S4 = zero
        Q0 = zero
        Q1 = zero
        Q2 = zero
        Q3 = zero
        Q4 = zero
        Q5 = zero
        Q6 = zero
        Q7 = zero
        Q8 = zero
        Q9 = zero
        # sums
        aL = 0.0
        e0 = 0.0
        e1 = 0.0
        e2 = 0.0
        e3 = 0.0
        e4 = 0.0
        c00 = 0.0
        c01 = 0.0
        c02 = 0.0
        c03 = 0.0
        c04 = 0.0
        c11 = 0.0
        c12 = 0.0
        c13 = 0.0
        c14 = 0.0
        c22 = 0.0
        c23 = 0.0
        c24 = 0.0
        c33 = 0.0
        c34 = 0.0
        c44 = 0.0
        h0 = 0.0
        h1 = 0.0
        h2 = 0.0
        h3 = 0.0
        h4 = 0.0
        h5 = 0.0
        h6 = 0.0
        h7 = 0.0
        h8 = 0.0
        h9 = 0.0
        for n in range(n_end):
            xw, lnl, tv, tz = _read(xs, ys, det, ch, dc, s0 + n, tz, box)
            v = thr - lnl
            sv = s * v
            if sv < zero:
                # above threshold: f = exp(s v), v = K (thr - L_dB) < 0; at the knee
                # (sv == 0) torchcomp's relu has derivative 0, so that sample counts as below
                f = math.exp(sv)
                dfT = f * ks
                dfR = f * v * ds
                fTT = dfT * ks
                fTR = kds * (f + sv * f)
                fRR = v * (dfR * ds + f * dds)
                D = f - g
                if f < g:  # attack
                    # second derivatives first: they use the previous first derivatives
                    hTT = oma * hTT + at * fTT
                    hTR = oma * hTR + at * fTR
                    hRR = oma * hRR + at * fRR
                    hTa = oma * hTa + (dfT - dT)
                    hRa = oma * hRa + (dfR - dR)
                    hTr = oma * hTr
                    hRr = oma * hRr
                    haa = oma * haa - (da + da)
                    har = oma * har - dr
                    hrr = oma * hrr
                    dT = oma * dT + at * dfT
                    dR = oma * dR + at * dfR
                    da = oma * da + D
                    dr = oma * dr
                    g = g + at * D
                else:  # release
                    hTT = omr * hTT + rt * fTT
                    hTR = omr * hTR + rt * fTR
                    hRR = omr * hRR + rt * fRR
                    hTa = omr * hTa
                    hRa = omr * hRa
                    hTr = omr * hTr + (dfT - dT)
                    hRr = omr * hRr + (dfR - dR)
                    haa = omr * haa
                    har = omr * har - da
                    hrr = omr * hrr - (dr + dr)
                    dT = omr * dT + rt * dfT
                    dR = omr * dR + rt * dfR
                    da = omr * da
                    dr = omr * dr + D
                    g = g + rt * D
            else:
                # at or below threshold: f = 1, static derivatives zero, release branch
                D = one - g
                hTT = omr * hTT
                hTR = omr * hTR
                hRR = omr * hRR
                hTa = omr * hTa
                hRa = omr * hRa
                hTr = omr * hTr - dT
                hRr = omr * hRr - dR
                haa = omr * haa
                har = omr * har - da
                hrr = omr * hrr - (dr + dr)
                dT = omr * dT
                dR = omr * dR
                da = omr * da
                dr = omr * dr + D
                g = g + rt * D
            xn = xw
            w0 = xn * g
            w1 = xn * dT
            w2 = xn * dR
            w3 = xn * da
            w4 = xn * dr
            o0 = w0 - qpole * S0
            o1 = w1 - qpole * S1
            o2 = w2 - qpole * S2
            o3 = w3 - qpole * S3
            o4 = w4 - qpole * S4
            S0 = w0 + pole * S0
            S1 = w1 + pole * S1
            S2 = w2 + pole * S2
            S3 = w3 + pole * S3
            S4 = w4 + pole * S4
            u0 = xn * hTT
            u1 = xn * hTR
            u2 = xn * hTa
            u3 = xn * hTr
            u4 = xn * hRR
            u5 = xn * hRa
            u6 = xn * hRr
            u7 = xn * haa
            u8 = xn * har
            u9 = xn * hrr
            p0 = u0 - qpole * Q0
            p1 = u1 - qpole * Q1
            p2 = u2 - qpole * Q2
            p3 = u3 - qpole * Q3
            p4 = u4 - qpole * Q4
            p5 = u5 - qpole * Q5
            p6 = u6 - qpole * Q6
            p7 = u7 - qpole * Q7
            p8 = u8 - qpole * Q8
            p9 = u9 - qpole * Q9
            Q0 = u0 + pole * Q0
            Q1 = u1 + pole * Q1
            Q2 = u2 + pole * Q2
            Q3 = u3 + pole * Q3
            Q4 = u4 + pole * Q4
            Q5 = u5 + pole * Q5
            Q6 = u6 + pole * Q6
            Q7 = u7 + pole * Q7
            Q8 = u8 + pole * Q8
            Q9 = u9 + pole * Q9
            if n >= warmup:
                e = m * o0 - tv
                aL += e * e
                e0 += e * o0
                e1 += e * o1
                e2 += e * o2
                e3 += e * o3
                e4 += e * o4
                c00 += o0 * o0
                c01 += o0 * o1
                c02 += o0 * o2
                c03 += o0 * o3
                c04 += o0 * o4
                c11 += o1 * o1
                c12 += o1 * o2
                c13 += o1 * o3
                c14 += o1 * o4
                c22 += o2 * o2
                c23 += o2 * o3
                c24 += o2 * o4
                c33 += o3 * o3
                c34 += o3 * o4
                c44 += o4 * o4
                h0 += e * p0
                h1 += e * p1
                h2 += e * p2
                h3 += e * p3
                h4 += e * p4
                h5 += e * p5
                h6 += e * p6
                h7 += e * p7
                h8 += e * p8
                h9 += e * p9
        r = out[b]
        r[0] = aL
        r[1] = e0
        r[2] = e1
        r[3] = e2
        r[4] = e3
        r[5] = e4
        r[6] = c00
        r[7] = c01
        r[8] = c02
        r[9] = c03
        r[10] = c04
        r[11] = c11
        r[12] = c12
        r[13] = c13
        r[14] = c14
        r[15] = c22
        r[16] = c23
        r[17] = c24
        r[18] = c33
        r[19] = c34
        r[20] = c44
        r[21] = h0
        r[22] = h1
        r[23] = h2
        r[24] = h3
        r[25] = h4
        r[26] = h5
        r[27] = h6
        r[28] = h7
        r[29] = h8
        r[30] = h9
    return out


# ----------------------------------------------------------------------------------------
# numpy-level functions in natural coordinates
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelData:
    """What the kernels read: the pair's source signals and the frame table.

    Nothing per frame is stored: each kernel reads a frame's samples from the
    sources and computes the level and the pre-emphasised target as it goes, so
    a fit holds the audio once, in the type it was read in.

    Attributes:
        xs, ys: input and target sources, ``(C, N)``, float32 or float64.
        det: what the peak detector reads, ``(D, N)`` (``xs`` itself unless the frames
            carry a linked detector).
        index: ``(B, 3)`` int64, each frame's source row, first sample and detector row.
        lengths: ``(B,)`` int64 valid samples of each frame.
        warmup: leading samples of every frame that are not scored.
        length: ``T``, the padded frame length (of :func:`output_natural`).
        dtype: working precision of the recursions (float64 or float32).
    """
    xs: np.ndarray
    ys: np.ndarray
    det: np.ndarray
    index: np.ndarray
    lengths: np.ndarray
    warmup: int
    length: int
    dtype: np.dtype

    def _args(self):
        return self.xs, self.ys, self.det, self.index, self.lengths, self.warmup


def prepare(frames: Frames, dtype=np.float64) -> KernelData:
    """The kernels' view of ``frames`` in working precision ``dtype`` (no audio copied).

    The level is that of the input as ``dtype`` rounds it, ``log(max(|x|, 1e-8)``
    (torchcomp's), and the target is pre-emphasised in float64, then rounded to
    ``dtype``: the same numbers as storing both arrays in ``dtype``.
    """
    linked = frames.source_detector is not None
    detector_row = frames.detector_row if linked else frames.channel
    index = np.ascontiguousarray(np.stack([frames.channel, frames.start, detector_row], axis=1), dtype=np.int64)
    return KernelData(frames.source_x, frames.source_y, frames.source_detector if linked else frames.source_x,
                      index.reshape(-1, 3),
                      np.ascontiguousarray(frames.lengths, dtype=np.int64), int(frames.warmup),
                      int(frames.length), np.dtype(dtype))


def loss_natural(data: KernelData, natural) -> float:
    """Loss at the natural vector ``(threshold_db, ratio, attack_coef, release_coef, make_up_db)``.

    Shape:
        natural: ``(5,)``.
    """
    prm = _constants(np.asarray(natural, dtype=np.float64), data.dtype)
    return float(_loss_kernel(*data._args(), prm).sum())


def loss_grad_natural(data: KernelData, natural) -> tuple[float, np.ndarray]:
    """Loss and gradient ``(5,)`` w.r.t. the natural vector."""
    natural = np.asarray(natural, dtype=np.float64)
    prm = _constants(natural, data.dtype)
    sums = _grad_kernel(*data._args(), prm).sum(axis=0)
    m = 10.0 ** (natural[4] / 20.0)
    grad = np.empty(5)
    grad[:4] = 2.0 * m * sums[2:6]
    grad[4] = 2.0 * K_DB * m * sums[1]
    return float(sums[0]), grad


def loss_grad_hess_natural(data: KernelData, natural) -> tuple[float, np.ndarray, np.ndarray]:
    """Loss, gradient ``(5,)`` and exact Hessian ``(5, 5)`` w.r.t. the natural vector.

    The attack/release pattern is held fixed (torchcomp's convention).
    """
    natural = np.asarray(natural, dtype=np.float64)
    prm = _constants(natural, data.dtype)
    sums = _hess_kernel(*data._args(), prm).sum(axis=0)
    m = 10.0 ** (natural[4] / 20.0)
    k = K_DB
    ev = sums[1:6]                       # sum e V_i
    vv = np.empty((5, 5))                 # sum V_i V_j
    idx = 6
    for i in range(5):
        for j in range(i, 5):
            vv[i, j] = vv[j, i] = sums[idx]
            idx += 1
    ew = sums[21:31]                      # sum e P w_pq
    grad = np.empty(5)
    grad[:4] = 2.0 * m * ev[1:]
    grad[4] = 2.0 * k * m * ev[0]
    hess = np.empty((5, 5))
    for (p, q), val in zip(_PAIRS, ew):
        hess[p, q] = hess[q, p] = 2.0 * (m * m * vv[p + 1, q + 1] + m * val)
    for p in range(4):
        hess[p, 4] = hess[4, p] = 2.0 * k * (m * m * vv[0, p + 1] + m * ev[p + 1])
    hess[4, 4] = 2.0 * k * k * (m * m * vv[0, 0] + m * ev[0])
    return float(sums[0]), grad, hess


def output_natural(data: KernelData, natural) -> np.ndarray:
    """Compressor output (with make-up), zero past each frame's length. Shape: ``(B, T)``."""
    prm = _constants(np.asarray(natural, dtype=np.float64), data.dtype)
    return _output_kernel(data.xs, data.det, data.index, data.lengths, data.length, prm)


def output_energy_natural(data: KernelData, natural) -> float:
    """Pre-emphasised energy of the output over the scored samples (no output stored)."""
    prm = _constants(np.asarray(natural, dtype=np.float64), data.dtype)
    return float(_output_energy_kernel(data.xs, data.det, data.index, data.lengths, data.warmup, prm).sum())


def target_energy(data: KernelData) -> float:
    """Pre-emphasised target energy over the scored samples (in ``data.dtype`` rounding)."""
    return float(_target_energy_kernel(data.ys, data.index, data.lengths, data.warmup,
                                       np.ones(3, dtype=data.dtype)).sum())


def chain_to_z(grad_v: torch.Tensor, hess_v: torch.Tensor, d1: torch.Tensor,
               d2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian in ``z`` from those in ``v`` for a diagonal map ``v(z)``.

    ``g_z = d1 g_v``, ``H_z = diag(d1) H_v diag(d1) + diag(g_v d2)``. Shape: ``(5,)``, ``(5, 5)``.
    """
    g_z = d1 * grad_v
    h_z = torch.outer(d1, d1) * hess_v + torch.diag(grad_v * d2)  # exactly symmetric
    return g_z, h_z


# ----------------------------------------------------------------------------------------
# the objective
# ----------------------------------------------------------------------------------------

def _np_dtype(dtype) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        dtype = {torch.float64: np.float64, torch.float32: np.float32}.get(dtype)
        if dtype is None:
            raise ValueError("KernelObjective supports float64 and float32")
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"KernelObjective supports float64 and float32, not {dtype}")
    return dtype


class KernelObjective:
    """The objective of :class:`dsp.derivatives.autograd.AutogradObjective`, from the fused kernel.

    Same interface: ``loss(z)``, ``loss_grad(z)``, ``loss_grad_hess(z)``, ``energy``,
    ``output(z)``; ``z`` is a ``(5,)`` tensor (or array) of unconstrained parameters,
    derivatives come back as float64 tensors.

    Args:
        frames: the framed pair.
        param: the parameterisation (physical parameters from the solver's z).
        device: accepted for interface compatibility; the kernel runs on the CPU.
        dtype: float64 (the solver's precision, default) or float32 (numpy or torch dtype).
    """

    def __init__(self, frames: Frames, param: Parameterisation, device="cpu", dtype=np.float64):
        self.param = param
        self.dtype = _np_dtype(dtype)
        self.data = prepare(frames, self.dtype)
        self.energy = target_energy(self.data)

    def _natural(self, z):
        z = torch.as_tensor(z).detach().to(device="cpu", dtype=torch.float64)
        return self.param.natural_derivs(z)

    def loss(self, z) -> float:
        v, _, _ = self._natural(z)
        return loss_natural(self.data, v.numpy())

    def loss_grad(self, z) -> tuple[float, torch.Tensor]:
        v, d1, _ = self._natural(z)
        f, g = loss_grad_natural(self.data, v.numpy())
        return f, d1 * torch.from_numpy(g)

    def loss_grad_hess(self, z) -> tuple[float, torch.Tensor, torch.Tensor]:
        v, d1, d2 = self._natural(z)
        f, g, h = loss_grad_hess_natural(self.data, v.numpy())
        g_z, h_z = chain_to_z(torch.from_numpy(g), torch.from_numpy(h), d1, d2)
        return f, g_z, h_z

    def output(self, z) -> np.ndarray:
        v, _, _ = self._natural(z)
        return output_natural(self.data, v.numpy())

    def output_energy(self, z) -> float:
        """Pre-emphasised output energy over the scored samples, without storing the output."""
        v, _, _ = self._natural(z)
        return output_energy_natural(self.data, v.numpy())
