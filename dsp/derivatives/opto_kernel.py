"""Fused forward-mode kernel of the optical-cell model: loss, exact gradient and exact Hessian in one pass.

The model is :mod:`dsp.models.opto`'s. The cell's loop (sidechain shelf, light, two
conductance stages, memory, divider gain) is a recursion in time whose states depend on
every loop parameter; forward-mode sensitivities are carried through it with the states:
each state is a value, its ``n`` first derivatives and its ``n (n + 1) / 2`` second
derivatives (packed upper triangle) in the loop parameters (``n`` = 10, or 11 with the
limit-mode tap). Every sample:

- the output ``v = m g Hin(x)`` (``g`` the gain before the sample: the loop closes one
  sample late), through the held tube shaper ``S``, the held output high-pass and the loss
  pre-emphasis (linear, so each derivative stream goes through the same recursions), is
  compared with the pre-emphasised target: ``sum r^2``, ``sum r y_i``, ``sum y_i y_j`` and
  ``sum r y_ij`` accumulate (the make-up is one more coordinate on this output side);
- the states advance by the product and chain rules. Scalar functions of one state and a
  few parameters (the power law, the memory-dependent slow rate, the divider) are
  applied with their closed-form partial derivatives, so each costs one pass over the
  packed second derivatives plus one outer product.

A multichannel pair's frames are linked (:attr:`audio.framing.Frames.linked`), as the
renderers link them: the cell is lit by the mean over the pair's channels of their squared
shelved drives (each channel its own shelf, its own derivative streams), and one pass per
start scores every channel's output through that one cell. A frame of a mono pair, or of
unlinked rows, hears and scores its own channel only.

Nothing is stored per sample. At the stages' switch between following and releasing the
taken branch is held when differentiating (torchcomp's convention for attack/release).
The blocks (input filter, shaper, output high-pass) are held values here: they are fitted
with the gain held (:mod:`dsp.fitting.opto`), as the gray-box's are. Without blocks the
output is ``m g x`` (the core alone).

float64 throughout (sources may be float32: they are read as stored and widened).
:class:`OptoObjective` chains the kernel's natural coordinates
(:data:`dsp.models.opto.KERNEL_ORDER`) to the solver's ``z`` with
:meth:`dsp.models.opto.OptoParameterisation.natural_derivs`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from audio.framing import Frames
from audio.metrics import POLE
from dsp.derivatives import ff5_kernel
from dsp.derivatives.ff5_kernel import chain_to_z
from dsp.models.blocks import highpass_coefficients, shelf_coefficients
from dsp.models.graybox import BLOCK_NAMES
from dsp.models.opto import POWER_FLOOR, OptoParameterisation

__all__ = ["OptoData", "OptoObjective", "prepare", "constants", "loss_natural", "loss_grad_hess_natural",
           "gain_frames", "output_energy_natural", "stream_gain", "STATE_SIZE"]

K_DB = math.log(10.0) / 20.0

# constants array layout
(_T, _GAMMA, _AATT, _AFAST, _RSLOW, _W, _AMEM, _DEPTH, _MIX, _MAKEUP,
 _B0, _B1, _A1) = range(13)
_DC = 13            # 6: d(b0, b1, a1)/d(f, G), row-major (coefficient, parameter)
_D2C = 19           # 9: d2(b0, b1, a1)/d(ff, fG, GG)
_BLOCKS = 28        # 1.0: the blocks are on
_HIN = 29           # 6: input high-pass (b0, b1, a1) and input shelf (b0, b1, a1)
_HOUT = 35          # 3: output high-pass (b0, b1, a1)
_DRIVE = 38
_ASYM = 39
_NPRM = 40
# loop parameter positions (KERNEL_ORDER); the mix is 10 when free, the make-up n
_PT, _PG, _PA, _PF, _PR, _PW, _PM, _PK, _PSF, _PSG, _PMIX = range(11)
STATE_SIZE = 4      # g, light, c_slow, memory (+ one shelf state per channel)
_FLUSH = 1e-200     # streaming: decaying states below this become 0 (dsp.models.streaming_kernels.FLUSH)


def constants(natural, blocks, sample_rate: float) -> np.ndarray:
    """The kernels' constants from the natural vector (:data:`dsp.models.opto.KERNEL_ORDER`)
    and the held block values (``(6,)`` physical, or None: no blocks)."""
    v = [float(t) for t in natural]
    prm = np.zeros(_NPRM)
    prm[_T], prm[_GAMMA], prm[_AATT], prm[_AFAST], prm[_RSLOW] = v[0], v[1], v[2], v[3], v[4]
    prm[_W], prm[_AMEM], prm[_DEPTH], prm[_MIX] = v[5], v[6], v[7], v[10]
    prm[_MAKEUP] = 10.0 ** (v[11] / 20.0)
    coef, d1, d2 = shelf_derivatives(v[8], v[9], sample_rate)
    prm[_B0:_B0 + 3] = coef
    prm[_DC:_DC + 6] = d1.reshape(-1)
    prm[_D2C:_D2C + 9] = d2.reshape(-1)
    if blocks is not None:
        b = [float(t) for t in blocks]
        prm[_BLOCKS] = 1.0
        prm[_HIN:_HIN + 3] = [float(c) for c in highpass_coefficients(b[0], sample_rate)]
        prm[_HIN + 3:_HIN + 6] = [float(c) for c in shelf_coefficients(b[1], b[2], sample_rate)]
        prm[_HOUT:_HOUT + 3] = [float(c) for c in highpass_coefficients(b[5], sample_rate)]
        prm[_DRIVE], prm[_ASYM] = b[3], b[4]
    return prm


def shelf_derivatives(freq_hz: float, gain_db: float, sample_rate: float):
    """The sidechain shelf's ``(b0, b1, a1)``, their first ``(3, 2)`` and second derivatives
    ``(3, 3)`` (ff, fG, GG) in ``(freq_hz, gain_db)`` (autograd on three scalars)."""
    p = torch.tensor([float(freq_hz), float(gain_db)], dtype=torch.float64, requires_grad=True)

    def coef(q):
        return torch.stack([torch.as_tensor(c) for c in shelf_coefficients(q[0], q[1], sample_rate)])

    c = coef(p)
    jac = torch.autograd.functional.jacobian(coef, p)
    hess = torch.stack([torch.autograd.functional.hessian(lambda q, i=i: coef(q)[i], p) for i in range(3)])
    second = torch.stack([hess[:, 0, 0], hess[:, 0, 1], hess[:, 1, 1]], dim=1)
    return c.detach().numpy(), jac.detach().numpy(), second.detach().numpy()


# ----------------------------------------------------------------------------------------
# second derivatives as packed upper triangles ((i, j), i <= j, row by row), of fixed sizes
# known when compiling, so that the passes over them are unrolled and vectorised: NL = 11
# loop parameters (the mix at 10; held at 0 its entries stay 0), NO = 12 on the output side
# (the make-up last). Each sample makes about a dozen fused passes over them.
# ----------------------------------------------------------------------------------------
NL = 11
HL = NL * (NL + 1) // 2
NO = NL + 1
HO = NO * (NO + 1) // 2


@njit(cache=True, inline="always")
def _pl(i, j):
    """Packed index of (i, j) in the loop's triangle (any order)."""
    if i > j:
        i, j = j, i
    return i * NL - i * (i - 1) // 2 + j - i


@njit(cache=True, inline="always")
def _po(i, j):
    """Packed index of (i, j), i <= j, in the output side's triangle."""
    return i * NO - i * (i - 1) // 2 + j - i


@njit(cache=True, inline="always")
def _unit(h, p, a, c):
    """h += c (e_p a^T + a e_p^T) on the loop's triangle."""
    for j in range(NL):
        h[_pl(p, j)] += c * a[j]
    h[_pl(p, p)] += c * a[p]


@njit(cache=True, inline="always")
def _coef_unit(h, av, ag, cg0, cg1, ch00, ch01, ch11, sign):
    """The parts of ``c A`` that the shelf coefficient's own derivatives add (rows 8, 9)."""
    _unit(h, _PSF, ag, sign * cg0)
    _unit(h, _PSG, ag, sign * cg1)
    h[_pl(_PSF, _PSF)] += sign * ch00 * av
    h[_pl(_PSF, _PSG)] += sign * ch01 * av
    h[_pl(_PSG, _PSG)] += sign * ch11 * av


@njit(cache=True, inline="always")
def _shaper(v, k, a):
    """Tube shaper ``T + a T^2``, ``T = tanh(k v) / k``, and its first two derivatives."""
    th = math.tanh(k * v)
    t = th / k
    t1 = 1.0 - th * th
    t2 = -2.0 * k * th * t1
    lift = 1.0 + 2.0 * a * t
    return t + a * t * t, t1 * lift, t2 * lift + 2.0 * a * t1 * t1


@njit(cache=True, inline="always")
def _section(b0, b1, a1, x, state):
    """One first-order section (transposed direct form II): returns ``(out, new state)``."""
    out = b0 * x + state
    return out, b1 * x - a1 * out


@njit(cache=True)
def _cell(st, q, prm):
    """Advance the cell by one sample from the light input ``q`` (the squared drive);
    ``st = (g, light, c_slow, memory)``. The value path of every kernel."""
    light = st[1]
    if q > light:
        light = light + prm[_AATT] * (q - light)
    else:
        light = light + prm[_AFAST] * (q - light)
    if light > POWER_FLOOR:
        c = math.exp(prm[_GAMMA] * (0.5 * math.log(light) - K_DB * prm[_T]))
    else:
        c = 0.0
    ts = prm[_W] * c
    cf = c - ts
    cs = st[2]
    mem = st[3]
    if ts >= cs:
        cs = cs + prm[_AMEM] * (ts - cs)
    else:
        cs = cs + prm[_RSLOW] * math.exp(-prm[_DEPTH] * (mem - 0.5)) * (ts - cs)
    g = 1.0 / (1.0 + cf + cs)
    st[0] = g
    st[1] = light
    st[2] = cs
    st[3] = mem + prm[_AMEM] * ((1.0 - g) - mem)


@njit(cache=True, inline="always")
def _frame_channels(xs, c, linked):
    """The source rows a frame of row ``c`` runs: they light its cell and are scored; every
    channel of a linked pair, else row ``c`` alone."""
    if linked:
        return 0, xs.shape[0]
    return c, c + 1


@njit(cache=True)
def _frame_value(xs, ys, c, s0, n_end, warmup, prm, gain_out, want_loss, linked, zero_target=False):
    """One frame from rest: the loss (pre-emphasised squared error over the scored samples,
    every channel of a linked frame) and, when ``gain_out`` is not empty, the gain (before
    make-up) at every sample. With ``zero_target`` the loss is the output's own scored energy
    (``ys`` is not read)."""
    st = np.zeros(STATE_SIZE)
    st[0] = 1.0
    lo, hi = _frame_channels(xs, c, linked)
    zsh = np.zeros(hi - lo)
    inv_c = 1.0 / (hi - lo)
    lin = np.zeros((hi - lo, 5))   # per channel: h1, h2, output high-pass, pre-emphasis, target's
    qpole = 1.0 - POLE
    blocks = prm[_BLOCKS] > 0.0
    acc = 0.0
    for n in range(n_end):
        g = st[0]
        if gain_out.shape[0] > 0:
            gain_out[n] = g
        for row in range(lo if want_loss else hi, hi):   # the scored channels' outputs
            oc = row - lo
            h1, h2, ho, S0, tz = lin[oc, 0], lin[oc, 1], lin[oc, 2], lin[oc, 3], lin[oc, 4]
            xf = float(xs[row, s0 + n])
            if blocks:
                xf, h1 = _section(prm[_HIN], prm[_HIN + 1], prm[_HIN + 2], xf, h1)
                xf, h2 = _section(prm[_HIN + 3], prm[_HIN + 4], prm[_HIN + 5], xf, h2)
            y = prm[_MAKEUP] * xf * g
            if blocks:
                y, _, _ = _shaper(y, prm[_DRIVE], prm[_ASYM])
                y, ho = _section(prm[_HOUT], prm[_HOUT + 1], prm[_HOUT + 2], y, ho)
            o = y - qpole * S0
            S0 = y + POLE * S0
            yr = 0.0 if zero_target else float(ys[row, s0 + n])
            t = tz + yr
            tz = POLE * t - yr
            if n >= warmup:
                r = o - t
                acc += r * r
            lin[oc, 0], lin[oc, 1], lin[oc, 2], lin[oc, 3], lin[oc, 4] = h1, h2, ho, S0, tz
        q = 0.0
        for row in range(lo, hi):
            s = (g + prm[_MIX]) * float(xs[row, s0 + n])
            e = prm[_B0] * s + zsh[row - lo]
            zsh[row - lo] = prm[_B1] * s - prm[_A1] * e
            q += e * e
        _cell(st, q * inv_c, prm)
    return acc


@njit(parallel=True, cache=True)
def _loss_kernel(xs, ys, index, lengths, warmup, prm, linked):
    B = lengths.shape[0]
    out = np.zeros(B)
    for b in prange(B):
        out[b] = _frame_value(xs, ys, index[b, 0], index[b, 1], lengths[b], warmup, prm, np.zeros(0), True, linked)
    return out


@njit(parallel=True, cache=True)
def _gain_kernel(xs, index, lengths, T, prm, linked):
    B = lengths.shape[0]
    out = np.zeros((B, T))
    for b in prange(B):
        _frame_value(xs, xs, index[b, 0], index[b, 1], lengths[b], 0, prm, out[b, :lengths[b]], False, linked)
    return out


@njit(parallel=True, cache=True)
def _energy_kernel(xs, index, lengths, warmup, prm, linked):
    """Pre-emphasised output energy over the scored samples (the loss against a zero target)."""
    B = lengths.shape[0]
    out = np.zeros(B)
    for b in prange(B):
        out[b] = _frame_value(xs, xs, index[b, 0], index[b, 1], lengths[b], warmup, prm, np.zeros(0), True, linked,
                              True)
    return out


@njit(cache=True)
def stream_gain(x, st, zsh, prm, gain):
    """Linked detection over channels, block by block: the gain (before make-up) of each
    sample of ``x`` ``(C, n)`` into ``gain`` ``(n,)``; ``st`` (:data:`STATE_SIZE`) and the
    per-channel shelf states ``zsh`` ``(C,)`` carry over between blocks. The light is fed by
    the mean over channels of the squared drive (one channel: the fit's path exactly). At the
    block's end the states decaying towards zero (light, slow carriers, memory, shelves) are
    set to zero below ``1e-200``, before a long silence takes them to the subnormal range
    (:mod:`dsp.models.streaming_kernels`)."""
    C, N = x.shape
    for n in range(N):
        g = st[0]
        gain[n] = g
        q = 0.0
        for c in range(C):
            s = (g + prm[_MIX]) * x[c, n]
            e = prm[_B0] * s + zsh[c]
            zsh[c] = prm[_B1] * s - prm[_A1] * e
            q += e * e
        _cell(st, q / C, prm)
    for i in range(1, STATE_SIZE):
        if abs(st[i]) < _FLUSH:
            st[i] = 0.0
    for c in range(C):
        if abs(zsh[c]) < _FLUSH:
            zsh[c] = 0.0


# ----------------------------------------------------------------------------------------
# the fused derivative kernel
# ----------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _hess_kernel(xs, ys, index, lengths, warmup, prm, mix_free, linked):
    """Per-frame sums: ``[sum r^2 | sum r y_i (NO) | sum y_i y_j (HO) | sum r y_ij (HO)]`` over
    the coordinates of the output side (the loop parameters, then the make-up)."""
    B = lengths.shape[0]
    out = np.zeros((B, 1 + NO + 2 * HO))
    for b in prange(B):
        _hess_frame(xs, ys, index[b, 0], index[b, 1], lengths[b], warmup, prm, mix_free, linked, out[b])
    return out


@njit(cache=True)
def _hess_frame(xs, ys, c, s0, n_end, warmup, prm, mix_free, linked, out):
    # loop states: value, first (NL) and packed second (HL) derivatives; a shelf per channel
    lo, hi = _frame_channels(xs, c, linked)
    inv_c = 1.0 / (hi - lo)
    single = hi - lo == 1   # one channel: the light input's derivatives are fused into its update
    e_v = 0.0
    gv = 1.0
    gg = np.zeros(NL)
    gh = np.zeros(HL)
    zv = np.zeros(hi - lo)
    zg = np.zeros((hi - lo, NL))
    zh = np.zeros((hi - lo, HL))
    iv = 0.0                # the light's input: mean squared drive, and its derivatives
    ig = np.zeros(NL)
    ih = np.zeros(HL)
    Pv = 0.0
    Pg = np.zeros(NL)
    Ph = np.zeros(HL)
    sv = 0.0
    sg = np.zeros(NL)
    sh = np.zeros(HL)
    Mv = 0.0
    Mg = np.zeros(NL)
    Mh = np.zeros(HL)
    ag = np.zeros(NL)       # temporaries
    eg = np.zeros(NL)
    eh = np.zeros(HL)
    bg = np.zeros(NL)
    bh = np.zeros(HL)
    cg = np.zeros(NL)
    ch = np.zeros(HL)
    dg = np.zeros(NL)
    qg = np.zeros(NL)
    # output side, per scored channel: derivative streams before and after the output
    # high-pass and the pre-emphasis, the filters' states
    yg = np.zeros(NO)
    yh = np.zeros(HO)
    og = np.zeros(NO)
    hog = np.zeros((hi - lo, NO))
    hoh = np.zeros((hi - lo, HO))
    Sg = np.zeros((hi - lo, NO))
    Shh = np.zeros((hi - lo, HO))
    lin = np.zeros((hi - lo, 5))   # per channel: h1, h2, output high-pass, pre-emphasis, target's
    aL = 0.0
    sum_g = np.zeros(NO)
    sum_c = np.zeros(HO)
    sum_h = np.zeros(HO)
    qpole = 1.0 - POLE
    blocks = prm[_BLOCKS] > 0.0
    m = prm[_MAKEUP]
    T = prm[_T]
    gam = prm[_GAMMA]
    aatt = prm[_AATT]
    afast = prm[_AFAST]
    rslow = prm[_RSLOW]
    w = prm[_W]
    amem = prm[_AMEM]
    depth = prm[_DEPTH]
    mix = prm[_MIX]
    b0 = prm[_B0]
    b1 = prm[_B1]
    a1 = prm[_A1]
    d0, d1, d2, d3, d4, d5 = prm[_DC], prm[_DC + 1], prm[_DC + 2], prm[_DC + 3], prm[_DC + 4], prm[_DC + 5]
    e0, e1, e2, e3, e4, e5 = prm[_D2C], prm[_D2C + 1], prm[_D2C + 2], prm[_D2C + 3], prm[_D2C + 4], prm[_D2C + 5]
    e6, e7, e8 = prm[_D2C + 6], prm[_D2C + 7], prm[_D2C + 8]
    kdb2 = K_DB * K_DB
    drive = prm[_DRIVE]
    asym = prm[_ASYM]
    hb0 = prm[_HOUT]
    hb1 = prm[_HOUT + 1]
    ha1 = prm[_HOUT + 2]
    for nn in range(n_end):
        # ============ output of each scored channel, with the gain before this sample =========
        for row in range(lo, hi):
            x = float(xs[row, s0 + nn])
            oc = row - lo
            h1, h2, hov, S0, tz = lin[oc, 0], lin[oc, 1], lin[oc, 2], lin[oc, 3], lin[oc, 4]
            xf = x
            if blocks:
                xf, h1 = _section(prm[_HIN], prm[_HIN + 1], prm[_HIN + 2], xf, h1)
                xf, h2 = _section(prm[_HIN + 3], prm[_HIN + 4], prm[_HIN + 5], xf, h2)
            mx = m * xf
            vv = mx * gv
            yv = vv
            s1 = 1.0
            s2 = 0.0
            if blocks:
                yv, s1, s2 = _shaper(vv, drive, asym)
            for i in range(NL):
                yg[i] = mx * gg[i]
            yg[NL] = K_DB * vv
            # y = S(v): y_ij = S' v_ij + S'' v_i v_j; v_ij = m x g_ij, v_im = K v_i, v_mm = K^2 v
            k = 0
            kl = 0
            for i in range(NL):
                si = s2 * yg[i]
                for j in range(i, NL):
                    yh[k] = s1 * mx * gh[kl] + si * yg[j]
                    k += 1
                    kl += 1
                yh[k] = s1 * K_DB * yg[i] + si * yg[NL]
                k += 1
            yh[k] = s1 * kdb2 * vv + s2 * yg[NL] * yg[NL]
            for i in range(NO):
                yg[i] = s1 * yg[i]
            if blocks:
                yv, hov = _section(hb0, hb1, ha1, yv, hov)
                for i in range(NO):
                    t = hb0 * yg[i] + hog[oc, i]
                    hog[oc, i] = hb1 * yg[i] - ha1 * t
                    yg[i] = t
                for k in range(HO):
                    t = hb0 * yh[k] + hoh[oc, k]
                    hoh[oc, k] = hb1 * yh[k] - ha1 * t
                    yh[k] = t
            ov = yv - qpole * S0
            S0 = yv + POLE * S0
            for i in range(NO):
                og[i] = yg[i] - qpole * Sg[oc, i]
                Sg[oc, i] = yg[i] + POLE * Sg[oc, i]
            yr = float(ys[row, s0 + nn])
            t = tz + yr
            tz = POLE * t - yr
            if nn >= warmup:
                r = ov - t
                aL += r * r
                for i in range(NO):
                    sum_g[i] += r * og[i]
                k = 0
                for i in range(NO):
                    oi = og[i]
                    for j in range(i, NO):
                        o = yh[k] - qpole * Shh[oc, k]
                        Shh[oc, k] = yh[k] + POLE * Shh[oc, k]
                        sum_h[k] += r * o
                        sum_c[k] += oi * og[j]
                        k += 1
            else:
                for k in range(HO):
                    Shh[oc, k] = yh[k] + POLE * Shh[oc, k]
            lin[oc, 0], lin[oc, 1], lin[oc, 2], lin[oc, 3], lin[oc, 4] = h1, h2, hov, S0, tz
        # ============ sidechain s = (g + mix) x, shelf e = b0 s + z, z <- b1 s - a1 e, per channel;
        # the light's input i = mean e^2: i_k = mean 2 e e_k, i_kl = mean 2 (e e_kl + e_k e_l) ===
        iv = 0.0
        if not single:
            for i in range(NL):
                ig[i] = 0.0
            for k in range(HL):
                ih[k] = 0.0
        for row in range(lo, hi):
            xc = float(xs[row, s0 + nn])
            zc = row - lo
            zgc = zg[zc]
            zhc = zh[zc]
            s_v = (gv + mix) * xc
            for i in range(NL):
                ag[i] = xc * gg[i]
            if mix_free:
                ag[_PMIX] += xc
            e_v = b0 * s_v + zv[zc]
            for i in range(NL):
                eg[i] = b0 * ag[i] + zgc[i]
            eg[_PSF] += d0 * s_v
            eg[_PSG] += d1 * s_v
            xb0 = xc * b0
            for k in range(HL):
                eh[k] = xb0 * gh[k] + zhc[k]
            _coef_unit(eh, s_v, ag, d0, d1, e0, e1, e2, 1.0)
            zv[zc] = b1 * s_v - a1 * e_v
            for i in range(NL):
                zgc[i] = b1 * ag[i] - a1 * eg[i]
            zgc[_PSF] += d2 * s_v - d4 * e_v
            zgc[_PSG] += d3 * s_v - d5 * e_v
            xb1 = xc * b1
            for k in range(HL):
                zhc[k] = xb1 * gh[k] - a1 * eh[k]
            _coef_unit(zhc, s_v, ag, d2, d3, e3, e4, e5, 1.0)
            _coef_unit(zhc, e_v, eg, d4, d5, e6, e7, e8, -1.0)
            iv += inv_c * e_v * e_v
            if not single:
                two_e = 2.0 * inv_c * e_v
                k = 0
                for i in range(NL):
                    ig[i] += two_e * eg[i]
                    ei = 2.0 * inv_c * eg[i]
                    for j in range(i, NL):
                        ih[k] += two_e * eh[k] + ei * eg[j]
                        k += 1
        # ============ light P <- P + a (i - P): a = a_att rising, a_fast falling ================
        Dl = iv - Pv
        if Dl > 0.0:
            al = aatt
            pa = _PA
        else:
            al = afast
            pa = _PF
        if single:   # i = e^2 of the one channel (e, its derivatives still in e_v, eg, eh)
            two_e = 2.0 * e_v
            for i in range(NL):
                dg[i] = two_e * eg[i] - Pg[i]
            a2 = 2.0 * al
            k = 0
            for i in range(NL):
                ei = a2 * eg[i]
                for j in range(i, NL):
                    Ph[k] += al * (two_e * eh[k] - Ph[k]) + ei * eg[j]
                    k += 1
        else:
            for i in range(NL):
                dg[i] = ig[i] - Pg[i]
            for k in range(HL):
                Ph[k] += al * (ih[k] - Ph[k])
        _unit(Ph, pa, dg, 1.0)
        for i in range(NL):
            Pg[i] += al * dg[i]
        Pg[pa] += Dl
        Pv = Pv + al * Dl
        # ============ c* = exp(gamma (ln(P) / 2 - K T)): a function of (P; gamma, T) =========
        if Pv > POWER_FLOOR:
            L = math.log(Pv)
            Bq = 0.5 * L - K_DB * T
            cv = math.exp(gam * Bq)
            inv = 1.0 / Pv
            fP = 0.5 * cv * gam * inv
            fPP = cv * (0.5 * gam) * (0.5 * gam - 1.0) * inv * inv
            one = 1.0 + gam * Bq
            for i in range(NL):
                cg[i] = fP * Pg[i]
            k = 0
            for i in range(NL):
                pi = fPP * Pg[i]
                for j in range(i, NL):
                    ch[k] = fP * Ph[k] + pi * Pg[j]
                    k += 1
            _unit(ch, _PG, Pg, 0.5 * cv * one * inv)
            _unit(ch, _PT, Pg, -0.5 * cv * gam * gam * K_DB * inv)
            ch[_pl(_PG, _PG)] += cv * Bq * Bq
            ch[_pl(_PT, _PT)] += cv * gam * gam * kdb2
            ch[_pl(_PT, _PG)] += -cv * K_DB * one
            cg[_PG] += cv * Bq
            cg[_PT] += -cv * gam * K_DB
        else:
            cv = 0.0
            for i in range(NL):
                cg[i] = 0.0
            for k in range(HL):
                ch[k] = 0.0
        # ============ the slow carriers' target t_s = w c* (b) ===============================
        tsv = w * cv
        for i in range(NL):
            bg[i] = w * cg[i]
        for k in range(HL):
            bh[k] = w * ch[k]
        _unit(bh, _PW, cg, 1.0)
        bg[_PW] += cv
        # ============ slow stage: rate r exp(-kappa (M - 1/2)), a function of (M; r, kappa) ==
        if tsv >= sv:   # the slow carriers fill over the memory time
            Ds = tsv - sv
            for i in range(NL):
                dg[i] = bg[i] - sg[i]
            for k in range(HL):
                sh[k] += amem * (bh[k] - sh[k])
            _unit(sh, _PM, dg, 1.0)
            for i in range(NL):
                sg[i] += amem * dg[i]
            sg[_PM] += Ds
            sv = sv + amem * Ds
        else:
            mid = Mv - 0.5
            ex = math.exp(-depth * mid)
            rate = rslow * ex
            fM = -depth * rate
            fMM = depth * depth * rate
            Ds = tsv - sv
            for i in range(NL):
                qg[i] = fM * Mg[i]          # the rate's gradient
                dg[i] = bg[i] - sg[i]
            qg[_PR] += ex
            qg[_PK] += -mid * rate
            dsM = Ds * fMM
            dsf = Ds * fM
            k = 0
            for i in range(NL):
                mi = dsM * Mg[i]
                qi = qg[i]
                di = dg[i]
                for j in range(i, NL):
                    sh[k] += rate * (bh[k] - sh[k]) + dsf * Mh[k] + mi * Mg[j] + qi * dg[j] + di * qg[j]
                    k += 1
            # the rate's own second derivatives in (r, kappa) and with M, times Ds
            _unit(sh, _PR, Mg, -Ds * depth * ex)
            _unit(sh, _PK, Mg, Ds * rate * (depth * mid - 1.0))
            sh[_pl(_PR, _PK)] += -Ds * mid * ex
            sh[_pl(_PK, _PK)] += Ds * mid * mid * rate
            for i in range(NL):
                sg[i] += rate * dg[i] + Ds * qg[i]
            sv = sv + rate * Ds
        # ============ divider g = 1 / (1 + (1 - w) c* + c_s) =================================
        gv = 1.0 / (1.0 + (cv - tsv) + sv)
        f1 = -gv * gv
        f2 = 2.0 * gv * gv * gv
        for i in range(NL):
            dg[i] = (cg[i] - bg[i]) + sg[i]
            gg[i] = f1 * dg[i]
        k = 0
        for i in range(NL):
            di = f2 * dg[i]
            for j in range(i, NL):
                gh[k] = f1 * ((ch[k] - bh[k]) + sh[k]) + di * dg[j]
                k += 1
        # ============ memory M <- M + a_mem ((1 - g) - M) ====================================
        Dm = (1.0 - gv) - Mv
        for i in range(NL):
            dg[i] = -gg[i] - Mg[i]
        for k in range(HL):
            Mh[k] += amem * (-gh[k] - Mh[k])
        _unit(Mh, _PM, dg, 1.0)
        for i in range(NL):
            Mg[i] += amem * dg[i]
        Mg[_PM] += Dm
        Mv = Mv + amem * Dm
    out[0] = aL
    out[1:1 + NO] = sum_g
    out[1 + NO:1 + NO + HO] = sum_c
    out[1 + NO + HO:1 + NO + 2 * HO] = sum_h


# ----------------------------------------------------------------------------------------
# numpy-level functions in natural coordinates
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptoData:
    """What the kernels read: the pair's sources and the frame table (as
    :class:`dsp.derivatives.ff5_kernel.KernelData`: every row, whose gains the block stage
    holds), the sample rate, whether the sources' rows are one signal's linked channels
    (:attr:`audio.framing.Frames.linked`), and the frames a loss pass runs (``runs``,
    ``run_lengths``): every row, or for a linked pair one per start (the first channel's
    rows), each scoring every channel, so the cell and its sidechains run once per start."""
    xs: np.ndarray
    ys: np.ndarray
    index: np.ndarray
    lengths: np.ndarray
    warmup: int
    length: int
    sample_rate: float
    linked: bool
    runs: np.ndarray
    run_lengths: np.ndarray


def prepare(frames: Frames) -> OptoData:
    index = np.ascontiguousarray(np.stack([frames.channel, frames.start], axis=1), dtype=np.int64).reshape(-1, 2)
    lengths = np.ascontiguousarray(frames.lengths, dtype=np.int64)
    runs, run_lengths = index, lengths
    if frames.linked:   # make_frames cuts every channel at the same starts
        lead = frames.channel == 0
        if lead.sum() * frames.source_x.shape[0] != frames.n_frames:
            raise ValueError("a linked pair's channels must be framed alike")
        runs, run_lengths = np.ascontiguousarray(index[lead]), np.ascontiguousarray(lengths[lead])
    return OptoData(frames.source_x, frames.source_y, index, lengths, int(frames.warmup), int(frames.length),
                    float(frames.sample_rate), bool(frames.linked), runs, run_lengths)


def loss_natural(data: OptoData, natural, blocks=None) -> float:
    """Loss at the natural vector (:data:`dsp.models.opto.KERNEL_ORDER`), blocks held (or none)."""
    prm = constants(natural, blocks, data.sample_rate)
    return float(_loss_kernel(data.xs, data.ys, data.runs, data.run_lengths, data.warmup, prm, data.linked).sum())


def loss_grad_hess_natural(data: OptoData, natural, blocks=None, fit_mix: bool = True):
    """Loss, gradient ``(N,)`` and exact Hessian ``(N, N)`` in the free natural coordinates:
    the loop parameters of :data:`dsp.models.opto.KERNEL_ORDER` (without ``input_mix`` unless
    ``fit_mix``), then the make-up (dB)."""
    prm = constants(natural, blocks, data.sample_rate)
    sums = _hess_kernel(data.xs, data.ys, data.runs, data.run_lengths, data.warmup, prm, bool(fit_mix),
                        data.linked).sum(axis=0)
    cross = sums[1 + NO:1 + NO + HO] + sums[1 + NO + HO:]
    full = np.empty((NO, NO))
    k = 0
    for i in range(NO):
        for j in range(i, NO):
            full[i, j] = full[j, i] = 2.0 * cross[k]
            k += 1
    keep = [i for i in range(NO) if fit_mix or i != _PMIX]
    return float(sums[0]), 2.0 * sums[1:1 + NO][keep], full[np.ix_(keep, keep)]


def gain_frames(data: OptoData, natural, part: slice = slice(None)) -> np.ndarray:
    """The cell's gain (before make-up) per frame from rest, zero past each frame's length,
    of the frames in ``part`` (all by default; a linked pair's channels have the same gain at
    the same samples). Shape: ``(B, T)``."""
    prm = constants(natural, None, data.sample_rate)
    return _gain_kernel(data.xs, np.ascontiguousarray(data.index[part]), np.ascontiguousarray(data.lengths[part]),
                        data.length, prm, data.linked)


def output_energy_natural(data: OptoData, natural, blocks=None) -> float:
    """Pre-emphasised output energy over the scored samples (no output stored)."""
    prm = constants(natural, blocks, data.sample_rate)
    return float(_energy_kernel(data.xs, data.runs, data.run_lengths, data.warmup, prm, data.linked).sum())




# ----------------------------------------------------------------------------------------
# the objective
# ----------------------------------------------------------------------------------------
class OptoObjective:
    """The model's objective (sum of squared pre-emphasised error over the scored samples)
    with derivatives from the fused kernel, for the solver's ``z``
    (:class:`dsp.models.opto.OptoParameterisation`: the cell's free coordinates and the make-up).

    Offers ``loss(z)``, ``loss_grad_hess(z)`` (float64 tensors), ``energy``, ``output_energy(z)``.

    Args:
        frames: the framed pair.
        param: the cell's parameterisation (its ``fit_mix`` decides the coordinates).
        blocks: the held block values ``(6,)`` (physical, :data:`BLOCK_NAMES` order) or a dict
            holding them, or None (no blocks: the core alone).
    """

    def __init__(self, frames: Frames, param: OptoParameterisation, blocks=None):
        self.param = param
        self.data = prepare(frames)
        if isinstance(blocks, dict):
            blocks = [float(blocks[k]) for k in BLOCK_NAMES]
        self.blocks = None if blocks is None else np.asarray(blocks, dtype=np.float64)
        self.energy = ff5_kernel.target_energy(ff5_kernel.prepare(frames))

    def natural_vector(self, z) -> np.ndarray:
        """The kernel's full natural vector (12,) at ``z``."""
        z = torch.as_tensor(z).detach().to(torch.float64)
        with torch.no_grad():
            return self.param.natural(z).numpy()

    def loss(self, z) -> float:
        f = loss_natural(self.data, self.natural_vector(z), self.blocks)
        return f if math.isfinite(f) else math.inf

    def loss_grad_hess(self, z) -> tuple[float, torch.Tensor, torch.Tensor]:
        z = torch.as_tensor(z).detach().to(torch.float64)
        _, d1, d2 = self.param.natural_derivs(z)
        f, g, h = loss_grad_hess_natural(self.data, self.natural_vector(z), self.blocks, self.param.fit_mix)
        return f, *chain_to_z(torch.from_numpy(g), torch.from_numpy(h), d1, d2)

    def loss_grad(self, z) -> tuple[float, torch.Tensor]:
        f, g, _ = self.loss_grad_hess(z)
        return f, g

    def output_energy(self, z) -> float:
        return output_energy_natural(self.data, self.natural_vector(z), self.blocks)

    def gain(self, z) -> np.ndarray:
        """The cell's gain (before make-up) per frame, ``(B, T)``."""
        return gain_frames(self.data, self.natural_vector(z))
