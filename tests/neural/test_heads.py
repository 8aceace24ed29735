"""Backbones and heads: one signature, streaming equals offline, conditioning, gradients."""
import itertools

import pytest
import torch

import backbone_contract as contract
from neural import BACKBONES, HEADS, build_head, count_parameters, detach_state
from neural.heads import BlackBoxGain, HybridAdditive, HybridGainDB

COND, STEPS = contract.COND, contract.STEPS
SETUPS = [
    ("s6", {}),
    ("s6", {"fused": False}),  # the torch scan in the streaming path as well
    ("s6", {"width": 8, "state": 3, "layers": 2, "expand": 2}),
    ("lstm", {}),
    ("lstm", {"hidden": 8, "layers": 2}),
]


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("backbone, hp", SETUPS, ids=[f"{b}-{i}" for i, (b, _) in enumerate(SETUPS)])
def test_streaming_equals_offline(head, backbone, hp):
    contract.check_streaming_equals_offline(head, backbone, hp)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_empty_blocks_change_nothing(backbone):
    model = contract.randomised_head("hybrid_gain", backbone, {})
    x, y_dsp, g_dsp, cond = contract.signals(steps=100)
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
    contract.check_conditioning_changes_output(head, backbone, {})


@pytest.mark.parametrize("head, backbone", list(itertools.product(sorted(HEADS), sorted(BACKBONES))))
def test_gradients_reach_every_parameter(head, backbone):
    contract.check_gradients_reach_every_parameter(head, backbone, {})


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_heads_start_as_the_dsp_model_or_unity(backbone):
    x, y_dsp, g_dsp, cond = contract.signals()
    with torch.no_grad():
        assert torch.equal(HybridGainDB(backbone, COND)(x, y_dsp, g_dsp, cond), y_dsp)
        assert torch.equal(HybridAdditive(backbone, COND)(x, y_dsp, g_dsp, cond), y_dsp)
        assert torch.equal(BlackBoxGain(backbone, 2)(x, None, None, cond[:, :2]), x)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_gain_heads_keep_silence_silent(backbone):
    x, y_dsp, g_dsp, cond = contract.signals()
    with torch.no_grad():
        assert torch.equal(contract.randomised_head("hybrid_gain", backbone, {})(x, torch.zeros_like(x), g_dsp, cond), torch.zeros_like(x))
        zeros = torch.zeros_like(x)
        assert torch.equal(contract.randomised_head("blackbox", backbone, {})(zeros, None, None, cond), zeros)


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
    x, y_dsp, g_dsp, cond = contract.signals()
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


def _with_random_audio_path(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.audio_path.named_parameters():
            if name != "log_hz":
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("backbone", ["s6", "lstm"])
def test_audio_path_starts_as_the_head_without_it(head, backbone):
    x, y_dsp, g_dsp, cond = contract.signals()
    without = contract.randomised_head(head, backbone, {})
    with_path = contract.randomised_head(head, backbone, {"audio_path": {"fir_taps": 8, "poles": 2}})
    with torch.no_grad():
        assert torch.equal(with_path(x, y_dsp, g_dsp, cond), without(x, y_dsp, g_dsp, cond))
    assert without.audio_path is None and with_path.audio_path is not None
    assert count_parameters(with_path) - count_parameters(without) == 2 + 2 * COND + 8 + 2 + 2


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("backbone", ["s6", "lstm"])
def test_audio_path_streaming_equals_offline(head, backbone):
    model = _with_random_audio_path(contract.randomised_head(head, backbone, {"audio_path": True}))
    x, y_dsp, g_dsp, cond = contract.signals()
    offline = model(x, y_dsp, g_dsp, cond)
    plain = contract.randomised_head(head, backbone, {})(x, y_dsp, g_dsp, cond)
    assert (offline - plain).abs().max() > 1e-3       # the path does something
    scale = max(1.0, offline.abs().max().item())      # float32: relative to the signal, as the contract's check
    with torch.inference_mode():
        for sizes in ([1] * 40 + [560], [31, 0, 33, 257, 279]):
            state, parts, i = None, [], 0
            for n in sizes:
                sl = slice(i, i + n)
                y, state = model.process(x[:, sl], y_dsp[:, sl], g_dsp[:, sl], cond, state)
                parts.append(y)
                i += n
            assert (torch.cat(parts, 1) - offline).abs().max().item() < 1e-5 * scale
    contract_model = _with_random_audio_path(contract.randomised_head(head, backbone, {"audio_path": True}))
    contract_model(x, y_dsp, g_dsp, cond).square().mean().backward()
    for name, p in contract_model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
