"""Neural models of the device.

- :mod:`neural.backbones`: the conditioned sequence models (S6, LSTM, LRU, S4D, FF,
  ED), their base class and registry, and the FiLM/GLU conditioning layers.
- :mod:`neural.kernels`: the recurrence kernels (scans, compiled loops).
- :mod:`neural.heads`: the output forms (hybrid gain, hybrid additive, black box);
  :mod:`neural.control`: running a backbone at a control rate.
- :mod:`neural.training`: losses and the training loop.

Models take tensors and return tensors; they know nothing of files or data.
"""
from .backbones import BACKBONES, detach_state
from .backbones.lstm import LSTMModel
from .backbones.s6 import S6Model
from .heads import HEADS, BlackBoxGain, HybridAdditive, HybridGainDB, build_head, count_parameters

__all__ = [
    "BACKBONES",
    "HEADS",
    "S6Model",
    "LSTMModel",
    "HybridGainDB",
    "HybridAdditive",
    "BlackBoxGain",
    "build_head",
    "count_parameters",
    "detach_state",
]
