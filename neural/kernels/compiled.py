"""Compiled (numba) kernels: built and checked on first use, chosen only where they may run.

A kernel computes no gradient, so a layer takes it only when no graph is recorded
(``torch.no_grad`` / ``torch.inference_mode``), on CPU, in float32 or float64, and
when numba is importable and the kernel passed its check; otherwise the layer's torch
path serves.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

__all__ = ["CompiledKernel", "use_compiled"]


class CompiledKernel:
    """A numba kernel built on first use (numba caches the machine code on disk).

    Args:
        build: returns the compiled kernel (imports numba).
        check: runs the kernel on a tiny case and raises when the result is wrong.
    """

    def __init__(self, build: Callable[[], Callable], check: Callable[[Callable], None]):
        self._build, self._check = build, check
        self._kernel: Optional[Callable] = None
        self._available: Optional[bool] = None

    def available(self) -> bool:
        """Whether the kernel can be used (numba importable and the check passed)."""
        if self._available is None:
            try:
                kernel = self._build()
                self._check(kernel)
                self._kernel, self._available = kernel, True
            except Exception:  # numba missing or broken: the torch path serves
                self._available = False
        return self._available

    def __call__(self, *arrays) -> None:
        if not self.available():
            raise RuntimeError("this compiled kernel needs numba")
        self._kernel(*arrays)


def use_compiled(layer: nn.Module, x: Tensor, enabled: bool, kernel: CompiledKernel) -> bool:
    """Whether ``layer`` should run ``x`` through ``kernel`` (see the module doc)."""
    if not enabled or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters())):
        return False
    return kernel.available()
