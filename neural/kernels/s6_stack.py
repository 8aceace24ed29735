"""Compiled inference of a whole conditioned S6 stack: every layer of every step in one loop.

On a streaming block of a few control frames the S6 backbone's cost is not arithmetic
(a frame is a few thousand multiply-adds at the default sizes) but the ~40 tensor
operations and module calls per layer that the torch path dispatches (each several
microseconds). This kernel (numba, compiled on first use and cached on disk) runs the
stack of :class:`neural.backbones.s6.S6Model` sample by sample in one call::

    h = W_in x + b_in
    per layer:  u, z = W_u h, W_z h
                u = silu(causal depthwise conv(u) + b_conv)
                delta = softplus(W_dt u + b_dt);  B, C = W_B u + b_B, W_C u + b_C
                s[d, n] = exp(delta[d] A[d, n]) s[d, n] + delta[d] u[d] B[n]
                v = W_out ((C s + D u) * silu(z))
                v = v * scale + shift                    # FiLM, precomputed for the block's cond
                h = h + value(W_g v + b_g) * sigmoid(gate(W_g v + b_g))    # GLU, residual
    y = W_o h + b_o

The products are summed in double precision and every intermediate is rounded to the
model's dtype where the torch path rounds it (decays, states, projections), so the
two paths agree to float rounding; the tests hold them against each other. The
projections' weights are passed transposed (see the kernel's comment). It computes
no gradient: the backbone uses it only when no graph is recorded, on CPU.
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
    def kernel(x, in_wt, in_b, win_t, conv_w, conv_b, xw_t, xb, A, Dsk, ow_t, fscale, fshift, gw_t, gb,
               out_w, out_b, tail, h, y):  # pragma: no cover - compiled
        # the projections' weights come transposed (input index first): the loops over an
        # output index are innermost, independent lanes that vectorise, each output still
        # summed over its inputs in order. The block's projections are written out in place; the
        # parts shared with the LSTM stack are module-level functions (neural.kernels.stack_parts):
        # a jitted helper defined here (a closure) would stop numba from loading this kernel from
        # its disk cache, and every process would recompile it (about 2.5 s)
        batch, steps = x.shape[:2]
        layers, width, two_inner = win_t.shape
        inner = two_inner // 2
        taps = conv_w.shape[2]
        states = A.shape[2]
        dt = x.dtype
        res = np.empty(width, dt)       # the residual stream
        uz = np.empty(two_inner, dt)    # signal and gate branches
        uc = np.empty(inner, dt)
        proj = np.empty(inner + 2 * states, dt)
        gated = np.empty(inner, dt)
        v = np.empty(width, dt)
        g = np.empty(2 * width, dt)
        a = np.empty(1, dt)
        acc_w = np.empty(width)
        acc_uz = np.empty(two_inner)
        acc_p = np.empty(inner + 2 * states)
        acc_g = np.empty(2 * width)
        for i in range(batch):
            for t in range(steps):
                input_layer(x, i, t, in_wt, in_b, acc_w, res)
                for l in range(layers):
                    layer_projection(win_t, l, res, acc_uz, uz)
                    # causal depthwise conv over [tail, u], then the tail moves on by one sample
                    for d in range(inner):
                        acc = 0.0
                        for k in range(taps - 1):
                            acc += conv_w[l, d, k] * tail[l, i, k, d]
                        acc += conv_w[l, d, taps - 1] * uz[d]
                        uc[d] = acc + conv_b[l, d]
                        for k in range(taps - 2):
                            tail[l, i, k, d] = tail[l, i, k + 1, d]
                        if taps > 1:
                            tail[l, i, taps - 2, d] = uz[d]
                    for d in range(inner):
                        c = uc[d]
                        uc[d] = c / (1.0 + math.exp(-c))          # silu
                    acc_p[:] = 0.0
                    for d in range(inner):
                        ud = uc[d]
                        for r in range(inner + 2 * states):
                            acc_p[r] += xw_t[l, d, r] * ud
                    for r in range(inner + 2 * states):
                        proj[r] = acc_p[r] + xb[l, r]
                    for d in range(inner):
                        p = proj[d]
                        proj[d] = p if p > 20.0 else math.log1p(math.exp(p))   # softplus (torch's threshold)
                    for d in range(inner):
                        delta = proj[d]
                        bu = delta * uc[d]
                        acc = 0.0
                        for n in range(states):
                            a[0] = math.exp(delta * A[l, d, n])
                            hn = a[0] * h[l, i, d, n] + bu * proj[inner + n]
                            h[l, i, d, n] = hn
                            acc += h[l, i, d, n] * proj[inner + states + n]
                        zd = uz[inner + d]
                        gated[d] = (acc + Dsk[l, d] * uc[d]) * (zd / (1.0 + math.exp(-zd)))
                    layer_projection(ow_t, l, gated, acc_w, v)
                    film_glu_residual(v, fscale, fshift, i, l, gw_t, gb, acc_g, g, res)
                output_layer(res, out_w, out_b, y, i, t)

    return kernel


def _check(kernel) -> None:
    """Compile for float32 and check one step of a one-channel stack against the formula."""
    f = torch.float32
    one = torch.ones(1, 1, 1, dtype=f)
    x = torch.full((1, 1, 1), 2.0, dtype=f)
    # identity projections, no conv history, zero decay exponent: u = silu(2), delta = softplus(0) = ln 2
    win = torch.ones(1, 1, 2, dtype=f)   # transposed: (layers, width, 2 inner)
    conv_w = torch.ones(1, 1, 2, dtype=f)
    xw = torch.tensor([[[0.0, 1.0, 1.0]]], dtype=f)
    zeros = torch.zeros(1, 3, dtype=f)
    tail, h, y = torch.zeros(1, 1, 1, 1, dtype=f), torch.zeros(1, 1, 1, 1, dtype=f), torch.zeros(1, 1, 1, dtype=f)
    kernel(x.numpy(), one[0].numpy(), torch.zeros(1, dtype=f).numpy(), win.numpy(), conv_w.numpy(),
           torch.zeros(1, 1, dtype=f).numpy(), xw.numpy(), zeros.numpy(), torch.zeros(1, 1, 1, dtype=f).numpy(),
           torch.zeros(1, 1, dtype=f).numpy(), one.numpy(), one.numpy(), torch.zeros(1, 1, 1, dtype=f).numpy(),
           torch.tensor([[[1.0, 0.0]]], dtype=f).numpy(), torch.zeros(1, 2, dtype=f).numpy(),
           one[0].numpy(), torch.zeros(1, dtype=f).numpy(), tail.numpy(), h.numpy(), y.numpy())
    u = torch.nn.functional.silu(torch.tensor(2.0))
    s = torch.log(torch.tensor(2.0)) * u * u            # delta * u * B with B = u
    v = s * u * torch.nn.functional.silu(torch.tensor(2.0))   # C s * silu(z), C = u, z = 2
    expected = 2.0 + v * 0.5                              # residual + v * sigmoid(0)
    if not (torch.isclose(y.flatten()[0], expected, rtol=1e-5) and tail.flatten()[0] == 2.0):
        raise RuntimeError("compiled S6 stack gave a wrong result")


KERNEL = CompiledKernel(_build, _check)
available = KERNEL.available  # the first call compiles the kernel (a few seconds; cached on disk)
