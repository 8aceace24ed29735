"""The backbone family's contract, checked one backbone at a time.

Used by test_heads.py, test_overfit.py and the tests in backbones/ (this folder's
conftest.py puts it on the import path): streaming equals offline
through every head, conditioning changes the output, gradients reach every parameter,
the default sizes, and a tiny model overfitting a short clip.
"""
import torch

from neural import build_head
from neural.kernels.scan import scan_sequential

COND = 3
STEPS = 600
SR = 44100


def signals(batch=2, steps=STEPS, seed=0):
    """Noise with a 150 Hz amplitude wobble, a stand-in DSP output and gain, a conditioning vector."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps) / SR
    x = 0.4 * torch.randn(batch, steps, generator=g) * (0.6 + 0.4 * torch.sin(2 * torch.pi * 150 * t))
    g_dsp = -8.0 * torch.rand(batch, steps, generator=g)
    return x, x * 10 ** (g_dsp / 20), g_dsp, torch.rand(batch, COND, generator=g)


def randomised_head(head, backbone, hp, seed=0):
    """A head whose output layer is randomised, so that its output is not trivially y_dsp or x."""
    torch.manual_seed(seed)
    model = build_head(head, backbone, COND, **hp)
    with torch.no_grad():
        model.backbone.out_proj.weight.normal_(0.0, 0.1)
        model.backbone.out_proj.bias.normal_(0.0, 0.02)
    return model


def check_streaming_equals_offline(head, backbone, hp, blocks=(1, 64, 257)):
    model = randomised_head(head, backbone, hp)
    x, y_dsp, g_dsp, cond = signals()
    offline = model(x, y_dsp, g_dsp, cond)  # with autograd: the differentiable path
    assert offline.shape == x.shape and torch.isfinite(offline).all()
    scale = max(1.0, offline.abs().max().item())
    with torch.inference_mode():
        for block in blocks:
            state, parts = (None if block == 1 else model.initial_state(2)), []
            for i in range(0, STEPS, block):
                sl = slice(i, i + block)
                y, state = model.process(x[:, sl], y_dsp[:, sl], g_dsp[:, sl], cond, state)
                parts.append(y)
            err = (torch.cat(parts, 1) - offline).abs().max().item()
            assert err < 1e-5 * scale, (block, err, scale)


def check_conditioning_changes_output(head, backbone, hp):
    model = randomised_head(head, backbone, hp)
    x, y_dsp, g_dsp, cond = signals()
    with torch.no_grad():
        a, b = model(x, y_dsp, g_dsp, cond), model(x, y_dsp, g_dsp, 1.0 - cond)
    assert (a - b).abs().max() > 1e-4


def check_gradients_reach_every_parameter(head, backbone, hp):
    model = randomised_head(head, backbone, hp)
    x, y_dsp, g_dsp, cond = signals(steps=300)
    model(x, y_dsp, g_dsp, cond).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def clip(n=2205):
    """A 440 Hz tone at three levels (quiet, loud, medium): 0.05 s by default."""
    t = torch.arange(n) / SR
    level = torch.where(t < 0.3 * n / SR, 0.03, torch.where(t < 0.65 * n / SR, 0.9, 0.15))
    return (level * torch.sin(2 * torch.pi * 440 * t)).unsqueeze(0)


def smoothing_compressor(x, ms=1.0):
    """Gain 1 / (1 + 4 env) from a one-pole envelope of |x| (time constant ``ms``)."""
    c = 1.0 - torch.exp(torch.tensor(-1000.0 / (ms * SR)))
    env, _ = scan_sequential(torch.full_like(x, 1.0 - c).unsqueeze(-1), (c * x.abs()).unsqueeze(-1))
    return x / (1.0 + 4.0 * env.squeeze(-1))


def fit(model, x, y_dsp, g_dsp, cond, target, steps, lr):
    """Adam on the mean squared error; returns (first loss, final loss)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    first = None
    for _ in range(steps):
        loss = (model(x, y_dsp, g_dsp, cond) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    with torch.no_grad():
        final = (model(x, y_dsp, g_dsp, cond) - target).square().mean().item()
    return first, final


def blackbox_fit(backbone, hp, steps=150, lr=1e-2):
    """A black box fitted to the smoothing compressor on the clip.

    Returns (first, final, best constant gain's loss): a memoryless gain can only get
    to about first / 10 here.
    """
    x = clip()
    y = smoothing_compressor(x)
    torch.manual_seed(0)
    model = build_head("blackbox", backbone, 1, **hp)
    first, final = fit(model, x, None, None, torch.ones(1, 1), y, steps, lr)
    best_constant_gain = ((x * y).sum() / (x * x).sum() * x - y).square().mean().item()
    return first, final, best_constant_gain


def hybrid_fit(head, backbone, hp, steps=60, lr=1e-2):
    """A hybrid whose DSP output is 3 dB too quiet, fitted to the truth; returns (first, final)."""
    x = clip()
    y = smoothing_compressor(x)
    g_dsp = 20 * torch.log10((y / x).nan_to_num(1.0).abs().clamp_min(1e-3)) - 3.0
    y_dsp = y * 10 ** (-3.0 / 20)
    torch.manual_seed(0)
    model = build_head(head, backbone, 5, **hp)
    return fit(model, x, y_dsp, g_dsp, torch.rand(1, 5), y, steps, lr)
