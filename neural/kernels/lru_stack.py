"""Compiled inference of a whole conditioned LRU stack: every layer of every step in one loop.

The LRU backbone's counterpart of :mod:`neural.kernels.s6_stack`: on a streaming block of
a few control frames the LRU stack's torch path dispatches some 20 operations a layer
(the input matrix, the complex view, the recurrence's call, the read-out, GELU, FiLM,
GLU) for a few hundred multiply-adds each. This kernel (numba, compiled on first use and
cached on disk) runs the stack of :class:`neural.backbones.lru.LRUModel` step by step::

    h = W_in x + b_in
    per layer:  bu = (gamma B) h                        (complex, N modes)
                s = lambda s + bu                       (the state in double precision)
                v = gelu(Re(C s) + D h)
                v = v * scale + shift                   # FiLM, precomputed for the block's cond
                h = h + value(W_g v + b_g) * sigmoid(gate(W_g v + b_g))    # GLU, residual
    y = W_o h + b_o

It rounds where the torch path rounds: ``bu`` and every state read out to the model's
dtype (the torch path's complex64 states), the state kept in double within the block and
rounded at its end (as :func:`neural.kernels.lti.scan_complex_fused` leaves it); products
are summed in double. The two paths agree to float rounding (the tests hold them against
each other). It computes no gradient: the backbone uses it only when no graph is recorded,
on CPU.
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
    global film_glu_residual, input_layer, layer_projection, output_layer
    from .stack_parts import film_glu_residual, input_layer, layer_projection, output_layer

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def kernel(x, in_wt, in_b, win_t, lam, cw_t, dskip, fscale, fshift, gw_t, gb, out_w, out_b, s_re, s_im,
               y):  # pragma: no cover - compiled
        # weights transposed (input index first): the loops over an output index are innermost.
        # win_t (layers, width, 2N): the columns (re, im) of every mode; cw_t (layers, 2N, width): the
        # read-out's rows for (re, im) of every mode, C_re and -C_im
        batch, steps = x.shape[:2]
        layers, width, two_n = win_t.shape
        states = two_n // 2
        dt = x.dtype
        res = np.empty(width, dt)
        bu = np.empty(two_n, dt)
        read = np.empty(two_n, dt)      # the state as the torch path reads it out (rounded)
        v = np.empty(width, dt)
        g = np.empty(2 * width, dt)
        acc_w = np.empty(width)
        acc_b = np.empty(two_n)
        acc_g = np.empty(2 * width)
        s = np.empty((layers, states), np.complex128)   # the state of signal i, in double
        for i in range(batch):
            for l in range(layers):
                for n in range(states):
                    s[l, n] = complex(s_re[l, i, n], s_im[l, i, n])
            for t in range(steps):
                input_layer(x, i, t, in_wt, in_b, acc_w, res)
                for l in range(layers):
                    layer_projection(win_t, l, res, acc_b, bu)
                    for n in range(states):
                        sn = lam[l, n] * s[l, n] + complex(bu[2 * n], bu[2 * n + 1])
                        s[l, n] = sn
                        read[2 * n] = sn.real
                        read[2 * n + 1] = sn.imag
                    layer_projection(cw_t, l, read, acc_w, v)   # Re(C s), rounded as the torch path's matmul
                    for w in range(width):
                        v[w] = v[w] + dskip[l, w] * res[w]
                        a = np.float64(v[w])
                        v[w] = 0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0)))   # gelu (erf form)
                    film_glu_residual(v, fscale, fshift, i, l, gw_t, gb, acc_g, g, res)
                output_layer(res, out_w, out_b, y, i, t)
            for l in range(layers):   # rounded to the model's dtype, as the torch path's state
                for n in range(states):
                    s_re[l, i, n] = s[l, n].real
                    s_im[l, i, n] = s[l, n].imag

    return kernel


def _check(kernel) -> None:
    """Compile for float32 and check two steps of a one-channel, one-mode stack against the formula."""
    f = torch.float32
    one = torch.ones(1, 1, dtype=f)
    x = torch.full((1, 2, 1), 2.0, dtype=f)
    win = torch.tensor([[[1.0, 0.0]]], dtype=f)                 # bu = h (real)
    lam = torch.tensor([[0.5j]], dtype=torch.complex128)
    cw = torch.tensor([[[1.0], [0.0]]], dtype=f)                 # Re(C s) = Re(s)
    s_re, s_im, y = torch.zeros(1, 1, 1, dtype=f), torch.zeros(1, 1, 1, dtype=f), torch.zeros(1, 2, 1, dtype=f)
    kernel(x.numpy(), one.numpy(), torch.zeros(1, dtype=f).numpy(), win.numpy(), lam.numpy(), cw.numpy(),
           torch.zeros(1, 1, dtype=f).numpy(), torch.ones(1, 1, 1, dtype=f).numpy(), torch.zeros(1, 1, 1, dtype=f).numpy(),
           torch.tensor([[[1.0, 0.0]]], dtype=f).numpy(), torch.zeros(1, 2, dtype=f).numpy(), one.numpy(),
           torch.zeros(1, dtype=f).numpy(), s_re.numpy(), s_im.numpy(), y.numpy())
    gelu = torch.nn.functional.gelu
    first = 2.0 + gelu(torch.tensor(2.0)) * 0.5                  # s = 2: residual + value * sigmoid(0)
    second = 2.0 + gelu(torch.tensor(2.0)) * 0.5                 # s = 0.5j * 2 + 2: Re = 2 again
    if not (torch.allclose(y.flatten(), torch.stack([first, second]), rtol=1e-5)
            and float(s_im.flatten()[0]) == 1.0 and float(s_re.flatten()[0]) == 2.0):
        raise RuntimeError("compiled LRU stack gave a wrong result")


KERNEL = CompiledKernel(_build, _check)
available = KERNEL.available  # the first call compiles the kernel (a few seconds; cached on disk)
