"""Backbones and heads: one signature, streaming equals offline, conditioning, gradients."""
import itertools

import pytest
import torch

from neural import BACKBONES, HEADS, build_head, count_parameters, detach_state
from neural.heads import BlackBoxGain, HybridAdditive, HybridGainDB

COND = 3
STEPS = 600
SETUPS = [
    ("s6", {}),
    ("s6", {"fused": False}),  # the torch scan in the streaming path as well
    ("s6", {"width": 8, "state": 3, "layers": 2, "expand": 2}),
    ("lstm", {}),
    ("lstm", {"hidden": 8, "layers": 2}),
]


def _signals(batch=2, steps=STEPS, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps) / 44100
    x = 0.4 * torch.randn(batch, steps, generator=g) * (0.6 + 0.4 * torch.sin(2 * torch.pi * 150 * t))
    g_dsp = -8.0 * torch.rand(batch, steps, generator=g)
    return x, x * 10 ** (g_dsp / 20), g_dsp, torch.rand(batch, COND, generator=g)


def _model(head, backbone, hp, seed=0):
    """A head whose output layer is randomised, so that its output is not trivially y_dsp or x."""
    torch.manual_seed(seed)
    model = build_head(head, backbone, COND, **hp)
    with torch.no_grad():
        model.backbone.out_proj.weight.normal_(0.0, 0.1)
        model.backbone.out_proj.bias.normal_(0.0, 0.02)
    return model


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("backbone, hp", SETUPS, ids=[f"{b}-{i}" for i, (b, _) in enumerate(SETUPS)])
def test_streaming_equals_offline(head, backbone, hp):
    model = _model(head, backbone, hp)
    x, y_dsp, g_dsp, cond = _signals()
    offline = model(x, y_dsp, g_dsp, cond)  # with autograd: the differentiable path
    assert offline.shape == x.shape and torch.isfinite(offline).all()
    with torch.inference_mode():
        for block in (1, 64, 257):
            state, parts = (None if block == 1 else model.initial_state(2)), []
            for i in range(0, STEPS, block):
                sl = slice(i, i + block)
                y, state = model.process(x[:, sl], y_dsp[:, sl], g_dsp[:, sl], cond, state)
                parts.append(y)
            scale = max(1.0, offline.abs().max().item())
            assert (torch.cat(parts, 1) - offline).abs().max().item() < 1e-5 * scale, block


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_empty_blocks_change_nothing(backbone):
    model = _model("hybrid_gain", backbone, {})
    x, y_dsp, g_dsp, cond = _signals(steps=100)
    empty = x[:, :0]
    with torch.inference_mode():
        y0, state = model.process(empty, empty, empty, cond, None)
        assert y0.shape == (2, 0)
        y1, state = model.process(x, y_dsp, g_dsp, cond, state)
        y2, state = model.process(empty, empty, empty, cond, state)
        whole = model(x, y_dsp, g_dsp, cond)
    assert y2.shape == (2, 0) and torch.allclose(y1, whole, atol=1e-6)


@pytest.mark.parametrize("head, backbone", list(itertools.product(sorted(HEADS), sorted(BACKBONES))))
def test_conditioning_changes_the_output(head, backbone):
    model = _model(head, backbone, {})
    x, y_dsp, g_dsp, cond = _signals()
    with torch.no_grad():
        assert (model(x, y_dsp, g_dsp, cond) - model(x, y_dsp, g_dsp, 1.0 - cond)).abs().max() > 1e-4


@pytest.mark.parametrize("head, backbone", list(itertools.product(sorted(HEADS), sorted(BACKBONES))))
def test_gradients_reach_every_parameter(head, backbone):
    model = _model(head, backbone, {})
    x, y_dsp, g_dsp, cond = _signals(steps=300)
    model(x, y_dsp, g_dsp, cond).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_heads_start_as_the_dsp_model_or_unity(backbone):
    x, y_dsp, g_dsp, cond = _signals()
    with torch.no_grad():
        assert torch.equal(HybridGainDB(backbone, COND)(x, y_dsp, g_dsp, cond), y_dsp)
        assert torch.equal(HybridAdditive(backbone, COND)(x, y_dsp, g_dsp, cond), y_dsp)
        assert torch.equal(BlackBoxGain(backbone, 2)(x, None, None, cond[:, :2]), x)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_gain_heads_keep_silence_silent(backbone):
    x, y_dsp, g_dsp, cond = _signals()
    with torch.no_grad():
        assert torch.equal(_model("hybrid_gain", backbone, {})(x, torch.zeros_like(x), g_dsp, cond), torch.zeros_like(x))
        zeros = torch.zeros_like(x)
        assert torch.equal(_model("blackbox", backbone, {})(zeros, None, None, cond), zeros)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_family_signature(backbone):
    torch.manual_seed(0)
    model = BACKBONES[backbone](4, 2, COND)
    x, cond = torch.randn(3, 50, 4), torch.rand(3, COND)
    y = model(x, cond)
    assert y.shape == (3, 50, 2)
    y1, state = model.process(x[:, :20], cond, None)
    y2, state = model.process(x[:, 20:], cond, detach_state(state))
    assert torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-5)
    # per-sample conditioning, constant over time, is the same as per-signal
    assert torch.allclose(model(x, cond.unsqueeze(1).expand(3, 50, COND)), y, atol=1e-5)
    # unconditioned
    assert BACKBONES[backbone](4, 2, 0)(x, None).shape == (3, 50, 2)


def test_default_sizes():
    for backbone, head in itertools.product(BACKBONES, HEADS):
        n = count_parameters(build_head(head, backbone, 5))
        assert 1_000 <= n <= 10_000, (backbone, head, n)


def test_bad_inputs_raise():
    model = build_head("hybrid_gain", "s6", COND)
    x, y_dsp, g_dsp, cond = _signals()
    with pytest.raises(ValueError):
        model(x, None, g_dsp, cond)
    with pytest.raises(ValueError):
        model(x, y_dsp, g_dsp, None)
    with pytest.raises(ValueError):
        model(x.unsqueeze(-1), y_dsp, g_dsp, cond)
    with pytest.raises(ValueError):
        model.process(x, y_dsp, g_dsp, cond, state=())
    with pytest.raises(ValueError):
        build_head("nope")
    with pytest.raises(ValueError):
        build_head("blackbox", "transformer")
