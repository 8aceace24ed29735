"""The parts the compiled S6, LSTM and LRU stacks share: the input layer, a layer's projection, FiLM -> GLU -> residual,
the output layer.

Module-level jitted functions (numba, cached on disk), imported only by the stack kernels'
builders (:mod:`neural.kernels.s6_stack`, :mod:`neural.kernels.lstm_stack`, :mod:`neural.kernels.lru_stack`), since importing
this module imports numba. (Helpers defined inside a builder, as closures, would stop numba
from loading the kernels from its disk cache.) Products are summed in double precision
(the ``acc_*`` buffers) and rounded to the model's dtype where the torch path holds a tensor.
"""
from __future__ import annotations

import math

import numba


@numba.njit(cache=True, nogil=True)
def input_layer(x, i, t, in_wt, in_b, acc_w, res):  # pragma: no cover - compiled
    """``res = W_in x[i, t] + b_in`` (the weight transposed: input index first)."""
    acc_w[:] = 0.0
    for f in range(x.shape[2]):
        xf = x[i, t, f]
        for w in range(res.shape[0]):
            acc_w[w] += in_wt[f, w] * xf
    for w in range(res.shape[0]):
        res[w] = acc_w[w] + in_b[w]


@numba.njit(cache=True, nogil=True)
def layer_projection(w_t, l, vec, acc, out):  # pragma: no cover - compiled
    """``out = W_l vec`` of layer ``l`` (the weight transposed: input index first), summed in ``acc``."""
    acc[:] = 0.0
    for j in range(vec.shape[0]):
        vj = vec[j]
        for k in range(out.shape[0]):
            acc[k] += w_t[l, j, k] * vj
    for k in range(out.shape[0]):
        out[k] = acc[k]


@numba.njit(cache=True, nogil=True)
def film_glu_residual(v, fscale, fshift, i, l, gw_t, gb, acc_g, g, res):  # pragma: no cover - compiled
    """A layer's block output ``v`` through FiLM (``v * scale + shift``) and the GLU, added to ``res``."""
    width = res.shape[0]
    for w in range(width):
        v[w] = v[w] * fscale[i, l, w] + fshift[i, l, w]
    acc_g[:] = 0.0
    for w in range(width):
        vw = v[w]
        for r in range(2 * width):
            acc_g[r] += gw_t[l, w, r] * vw
    for r in range(2 * width):
        g[r] = acc_g[r] + gb[l, r]
    for w in range(width):
        res[w] = res[w] + g[w] / (1.0 + math.exp(-g[width + w]))


@numba.njit(cache=True, nogil=True)
def output_layer(res, out_w, out_b, y, i, t):  # pragma: no cover - compiled
    """``y[i, t] = W_o res + b_o``."""
    for o in range(out_w.shape[0]):
        acc = 0.0
        for w in range(res.shape[0]):
            acc += out_w[o, w] * res[w]
        y[i, t, o] = acc + out_b[o]
