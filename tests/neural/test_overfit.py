"""Tiny models fit 0.1 s of audio within a few hundred Adam steps."""
import torch

import backbone_contract as contract
from neural import build_head


def test_s6_black_box_learns_a_smoothing_compressor():
    x = contract.clip(4410)
    y = contract.smoothing_compressor(x, ms=3.0)
    torch.manual_seed(0)
    model = build_head("blackbox", "s6", 1, width=8, state=4)
    first, final = contract.fit(model, x, None, None, torch.ones(1, 1), y, steps=120, lr=2e-2)
    best_constant_gain = ((x * y).sum() / (x * x).sum() * x - y).square().mean().item()
    assert final < first / 200  # a constant gain only gets to first / 43 here
    assert final < best_constant_gain / 4


def test_lstm_black_box_learns_a_smoothing_compressor():
    x = contract.clip(4410)
    y = contract.smoothing_compressor(x, ms=3.0)
    torch.manual_seed(0)
    model = build_head("blackbox", "lstm", 1, hidden=8)
    first, final = contract.fit(model, x, None, None, torch.ones(1, 1), y, steps=120, lr=2e-2)
    assert final < first / 20


def test_s6_hybrid_learns_a_gain_correction():
    """The DSP output is 3 dB too quiet: the hybrid learns the +3 dB."""
    x = contract.clip(4410)
    y = contract.smoothing_compressor(x, ms=3.0)
    g_dsp = 20 * torch.log10((y / x).nan_to_num(1.0).abs().clamp_min(1e-3)) - 3.0
    y_dsp = y * 10 ** (-3.0 / 20)
    torch.manual_seed(0)
    model = build_head("hybrid_gain", "s6", 5)
    first, final = contract.fit(model, x, y_dsp, g_dsp, torch.rand(1, 5), y, steps=60, lr=1e-2)
    assert final < first / 100
