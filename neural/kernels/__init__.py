"""Recurrence kernels of the backbones.

- :mod:`neural.kernels.scan`: the diagonal time-varying scan ``h_t = a_t h_{t-1} + b_t``
  (a reference loop and a chunked parallel form, differentiable).
- :mod:`neural.kernels.selective`: the S6 block's selective scan and read-out in one
  compiled loop (inference only).
- :mod:`neural.kernels.s6_stack`, :mod:`neural.kernels.lstm_stack`, :mod:`neural.kernels.lru_stack`:
  a whole conditioned S6, LSTM or LRU stack (every layer, FiLM and GLU included) in one compiled
  loop (inference only): a streaming block in one call.
- :mod:`neural.kernels.frames`: the control rate's frame features and per-sample ramp in
  one compiled call each (inference only).
- :mod:`neural.kernels.shaper`: the audio path's shaper and filter row for a host block
  (inference only, bit for bit the torch path).
- :mod:`neural.kernels.lti`: time-invariant complex diagonal recurrences: the chunked
  differentiable scan and the compiled loops of the LRU and S4D layers.
- :mod:`neural.kernels.compiled`: how a numba kernel is built, checked and chosen.
"""
