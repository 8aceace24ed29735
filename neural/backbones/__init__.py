"""Backbones: conditioned sequence models with one signature (:mod:`neural.backbones.base`).

- :mod:`~neural.backbones.base`: the :class:`Backbone` base class (input checks, zero
  output, streaming contract) and the registry :data:`BACKBONES`.
- :mod:`~neural.backbones.film`: the conditioning layers (FiLM, GLU).
- :mod:`~neural.backbones.stack`: the conditioned stack ``[block, FiLM, GLU] + residual``.
- one module per backbone: ``s6``, ``lstm``, ``lru`` (stacks), ``s4d``, ``ff``, ``ed``.

Every other module of this package is imported here, so that the ``@register``
decorators fill :data:`BACKBONES`: adding a backbone is one module here plus its
model file ``cfg/model/<name>.yaml``.
"""
import importlib
import pkgutil

from .base import BACKBONES, Backbone, State, detach_state, register

__all__ = ["BACKBONES", "Backbone", "State", "detach_state", "register"]

_SHARED = {"base", "film", "stack"}  # building blocks, no backbone of their own

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _SHARED and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
