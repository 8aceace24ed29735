"""Compiled inference of a whole conditioned LSTM stack: every layer of every step in one loop.

The LSTM backbone's counterpart of :mod:`neural.kernels.s6_stack`: on a streaming block of a
few control frames, ``torch.nn.LSTM``'s call and the stack's FiLM, GLU and projections
cost tens of microseconds of dispatch for a few thousand multiply-adds. This kernel
(numba, compiled on first use and cached on disk) runs the stack of
:class:`neural.backbones.lstm.LSTMModel` step by step in one call::

    h = W_in x + b_in
    per layer:  z = W_ih h + W_hh y_prev + b           (b = b_ih + b_hh; torch's gate order i, f, g, o)
                c = sigmoid(z_f) c + sigmoid(z_i) tanh(z_g);  y = sigmoid(z_o) tanh(c)
                v = y * scale + shift                  # FiLM, precomputed for the block's cond
                h = h + value(W_g v + b_g) * sigmoid(gate(W_g v + b_g))    # GLU, residual
    out = W_o h + b_o

Products are summed in double precision and rounded to the model's dtype where the torch
path holds a tensor (projections, gates' sums, states, outputs), so the two paths agree to
float rounding (the tests hold them against each other). It computes no gradient: the
backbone uses it only when no graph is recorded, on CPU.
"""
from __future__ import annotations

import torch

from .compiled import CompiledKernel

__all__ = ["KERNEL", "available"]


def _build():
    import math

    import numba
    import numpy as np

    # module globals, not locals: a kernel that closes over a local is not cached on disk
    global film_glu_residual, input_layer, output_layer
    from .stack_parts import film_glu_residual, input_layer, output_layer

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def kernel(x, in_wt, in_b, wih_t, whh_t, bias, fscale, fshift, gw_t, gb, out_w, out_b, hs, cs,
               y):  # pragma: no cover - compiled
        # weights transposed (input index first): the loops over an output index are innermost;
        # the input layer, FiLM -> GLU -> residual and the output layer: neural.kernels.stack_parts
        batch, steps = x.shape[:2]
        layers, width, four = wih_t.shape
        dt = x.dtype
        res = np.empty(width, dt)
        z = np.empty(four, dt)
        v = np.empty(width, dt)
        g = np.empty(2 * width, dt)
        acc_w = np.empty(width)
        acc_z = np.empty(four)
        acc_g = np.empty(2 * width)
        for i in range(batch):
            for t in range(steps):
                input_layer(x, i, t, in_wt, in_b, acc_w, res)
                for l in range(layers):
                    acc_z[:] = 0.0
                    for w in range(width):
                        r = res[w]
                        hp = hs[l, i, w]
                        for k in range(four):
                            acc_z[k] += wih_t[l, w, k] * r + whh_t[l, w, k] * hp
                    for k in range(four):
                        z[k] = acc_z[k] + bias[l, k]
                    for w in range(width):
                        gi = 1.0 / (1.0 + math.exp(-z[w]))
                        gf = 1.0 / (1.0 + math.exp(-z[width + w]))
                        gc = math.tanh(z[2 * width + w])
                        go = 1.0 / (1.0 + math.exp(-z[3 * width + w]))
                        cs[l, i, w] = gf * cs[l, i, w] + gi * gc
                        hs[l, i, w] = go * math.tanh(cs[l, i, w])
                    for w in range(width):
                        v[w] = hs[l, i, w]
                    film_glu_residual(v, fscale, fshift, i, l, gw_t, gb, acc_g, g, res)
                output_layer(res, out_w, out_b, y, i, t)

    return kernel


def _check(kernel) -> None:
    """Compile for float32 and check one step of a one-channel stack against the formula."""
    f = torch.float32
    one = torch.ones(1, 1, dtype=f)
    x = torch.full((1, 1, 1), 2.0, dtype=f)
    wih = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]], dtype=f)   # (layers, width, 4 width): i, f, g, o
    hs, cs, y = torch.zeros(1, 1, 1, dtype=f), torch.full((1, 1, 1), 0.5, dtype=f), torch.zeros(1, 1, 1, dtype=f)
    kernel(x.numpy(), one.numpy(), torch.zeros(1, dtype=f).numpy(), wih.numpy(), torch.zeros(1, 1, 4, dtype=f).numpy(),
           torch.zeros(1, 4, dtype=f).numpy(), torch.ones(1, 1, 1, dtype=f).numpy(), torch.zeros(1, 1, 1, dtype=f).numpy(),
           torch.tensor([[[1.0, 0.0]]], dtype=f).numpy(), torch.zeros(1, 2, dtype=f).numpy(), one.numpy(),
           torch.zeros(1, dtype=f).numpy(), hs.numpy(), cs.numpy(), y.numpy())
    s = torch.sigmoid
    c = s(torch.tensor(0.0)) * 0.5 + s(torch.tensor(2.0)) * torch.tanh(torch.tensor(2.0))
    h = s(torch.tensor(0.0)) * torch.tanh(c)
    expected = 2.0 + h * 0.5                              # residual + value * sigmoid(0)
    if not (torch.isclose(y.flatten()[0], expected, rtol=1e-5) and torch.isclose(cs.flatten()[0], c, rtol=1e-5)):
        raise RuntimeError("compiled LSTM stack gave a wrong result")


KERNEL = CompiledKernel(_build, _check)
available = KERNEL.available  # the first call compiles the kernel (a few seconds; cached on disk)
