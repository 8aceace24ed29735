"""Neural models: selective scan, S6 and LSTM blocks, FiLM/GLU conditioning,
conditioned backbones and the output heads (hybrid gain, hybrid additive, black box).

Models take tensors and return tensors; they know nothing of files or data.
"""
from .heads import HEADS, BlackBoxGain, HybridAdditive, HybridGainDB, build_head
from .models import BACKBONES, LSTMModel, S6Model, count_parameters, detach_state

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
