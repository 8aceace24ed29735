"""Tiny models fit 0.1 s of audio within a few hundred Adam steps."""
import torch

from neural import build_head
from neural.kernels.scan import scan_sequential

SR = 44100


def _clip(n=4410):
    """0.1 s of a 440 Hz tone at three levels: quiet, loud, medium."""
    t = torch.arange(n) / SR
    level = torch.where(t < 0.03, 0.03, torch.where(t < 0.065, 0.9, 0.15))
    return (level * torch.sin(2 * torch.pi * 440 * t)).unsqueeze(0)


def _smoothing_compressor(x, ms=3.0):
    """Gain 1 / (1 + 4 env) from a one-pole envelope of |x| (time constant ``ms``)."""
    c = 1.0 - torch.exp(torch.tensor(-1000.0 / (ms * SR)))
    env, _ = scan_sequential(torch.full_like(x, 1.0 - c).unsqueeze(-1), (c * x.abs()).unsqueeze(-1))
    return x / (1.0 + 4.0 * env.squeeze(-1))


def _fit(model, x, y_dsp, g_dsp, cond, target, steps, lr):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    losses = []
    for _ in range(steps):
        loss = (model(x, y_dsp, g_dsp, cond) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = (model(x, y_dsp, g_dsp, cond) - target).square().mean().item()
    return losses[0], final


def test_s6_black_box_learns_a_smoothing_compressor():
    x = _clip()
    y = _smoothing_compressor(x)
    torch.manual_seed(0)
    model = build_head("blackbox", "s6", 1, width=8, state=4)
    first, final = _fit(model, x, None, None, torch.ones(1, 1), y, steps=120, lr=2e-2)
    best_constant_gain = ((x * y).sum() / (x * x).sum() * x - y).square().mean().item()
    assert final < first / 200  # a constant gain only gets to first / 43 here
    assert final < best_constant_gain / 4


def test_lstm_black_box_learns_a_smoothing_compressor():
    x = _clip()
    y = _smoothing_compressor(x)
    torch.manual_seed(0)
    model = build_head("blackbox", "lstm", 1, hidden=8)
    first, final = _fit(model, x, None, None, torch.ones(1, 1), y, steps=120, lr=2e-2)
    assert final < first / 20


def test_s6_hybrid_learns_a_gain_correction():
    """The DSP output is 3 dB too quiet: the hybrid learns the +3 dB."""
    x = _clip()
    y = _smoothing_compressor(x)
    g_dsp = 20 * torch.log10((y / x).nan_to_num(1.0).abs().clamp_min(1e-3)) - 3.0
    y_dsp = y * 10 ** (-3.0 / 20)
    torch.manual_seed(0)
    model = build_head("hybrid_gain", "s6", 5)
    first, final = _fit(model, x, y_dsp, g_dsp, torch.rand(1, 5), y, steps=60, lr=1e-2)
    assert final < first / 100
