"""Recurrence kernels of the backbones.

- :mod:`neural.kernels.scan`: the diagonal time-varying scan ``h_t = a_t h_{t-1} + b_t``
  (a reference loop and a chunked parallel form, differentiable).
- :mod:`neural.kernels.selective`: the S6 block's selective scan and read-out in one
  compiled loop (inference only).
- :mod:`neural.kernels.lti`: time-invariant complex diagonal recurrences: the chunked
  differentiable scan and the compiled loops of the LRU and S4D layers.
- :mod:`neural.kernels.compiled`: how a numba kernel is built, checked and chosen.
"""
