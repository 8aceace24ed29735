"""Exact derivatives of the fit's objective: the fused kernels (forward-mode, numba)
and the autograd references they are tested against."""
