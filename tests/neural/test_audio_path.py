"""The audio-rate path: identity at the start, exact recurrence, streaming equals offline, options."""
import math

import numpy as np
import pytest
import scipy.signal
import torch

from neural.audio_path import SAMPLE_RATE, AudioPath, audio_path_options, one_pole_bank


def _loop(u, p, h0):
    h, out = h0.clone(), []
    for t in range(u.shape[1]):
        h = p * h + u[:, t:t + 1]
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("steps", [1, 31, 32, 33, 1000])
def test_one_pole_bank_is_the_recurrence(steps):
    g = torch.Generator().manual_seed(steps)
    u = torch.randn(2, steps, generator=g, dtype=torch.float64)
    p = torch.tensor([0.99972, 0.99, 0.3], dtype=torch.float64)   # 2 Hz, 70 Hz, a fast one
    h0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    h, last = one_pole_bank(u, p, h0)
    ref = _loop(u, p, h0)
    assert h.shape == (2, steps, 3)
    assert (h - ref).abs().max().item() < 1e-10
    assert (last - ref[:, -1]).abs().max().item() < 1e-10


def _randomised(cond_dim=3, seed=0, **options):
    torch.manual_seed(seed)
    path = AudioPath(cond_dim, **options).double()
    with torch.no_grad():
        for p in path.parameters():
            if p is not path.log_hz:
                p.add_(0.1 * torch.randn_like(p))
    return path


def test_starts_as_the_identity():
    x = 0.5 * torch.randn(2, 700)
    for options in ({}, {"fir_taps": 1, "poles": 0}, {"shaper": False, "fir_taps": 64, "poles": 2}):
        path = AudioPath(3, **options)
        assert torch.equal(path(x, torch.randn(2, 3)), x)
    assert torch.equal(AudioPath(0)(x), x)


@pytest.mark.parametrize("options", [{}, {"fir_taps": 1}, {"poles": 0}, {"shaper": False, "fir_taps": 40}])
def test_streaming_equals_offline_at_any_block_size(options):
    path = _randomised(**options)
    g = torch.Generator().manual_seed(1)
    x = 0.5 * torch.randn(2, 2000, generator=g, dtype=torch.float64)
    cond = torch.randn(2, 3, generator=g, dtype=torch.float64)
    offline = path(x, cond)
    assert (offline - x).abs().max().item() > 1e-3   # the randomised path is not the identity
    for sizes in ([1] * 50 + [1950], [31, 1, 32, 33, 0, 100, 803, 1000], [256] * 8):
        state, parts, i = None, [], 0
        for n in sizes:
            y, state = path.process(x[:, i:i + n], cond, state)
            parts.append(y)
            i += n
        assert (torch.cat(parts, 1) - offline[:, :i]).abs().max().item() < 1e-10


def test_per_sample_conditioning_matches_constant_conditioning():
    path = _randomised()
    x = 0.5 * torch.randn(2, 300, dtype=torch.float64)
    cond = torch.randn(2, 3, dtype=torch.float64)
    per_sample = cond[:, None, :].expand(-1, 300, -1)
    assert torch.allclose(path(x, cond), path(x, per_sample), atol=1e-12)
    assert (path(x, cond) - path(x, cond + 1.0)).abs().max().item() > 1e-4   # the shaper follows cond


def test_represents_a_first_order_high_pass_and_a_polynomial():
    # the identity FIR plus one branch with c = -1 is 1 - (1 - p) / (1 - p z^-1) = p (1 - z^-1) / (1 - p z^-1):
    # a transformer's roll-off
    path = AudioPath(0, shaper=True, fir_taps=1, poles=1, pole_hz=[20.0, 20.0]).double()
    p = math.exp(-2 * math.pi * 20.0 / SAMPLE_RATE)
    with torch.no_grad():
        path.branch.fill_(-1.0)
        path.log_hz.fill_(math.log(20.0))   # in float64 (the float32 init rounds the corner)
        path.shaper_base.copy_(torch.tensor([-0.08, 0.004], dtype=torch.float64))
    x = np.random.default_rng(0).standard_normal(3000) * 0.5
    shaped = x - 0.08 * x ** 2 + 0.004 * x ** 3
    expected = scipy.signal.lfilter([p, -p], [1.0, -p], shaped)
    y = path(torch.from_numpy(x)[None])[0].detach().numpy()
    np.testing.assert_allclose(y, expected, atol=1e-10)


def test_gradients_reach_every_parameter():
    path = AudioPath(3)
    x = 0.5 * torch.randn(2, 500)
    cond = torch.randn(2, 3)
    (path(x, cond) - 0.9 * x).square().mean().backward()
    for name, p in path.named_parameters():   # at the start the corners wait for their branches' weights
        assert p.grad is not None and (p.grad.abs().sum() > 0) == (name != "log_hz"), name
    with torch.no_grad():
        path.branch.fill_(-0.5)
    path.zero_grad()
    (path(x, cond) - 0.9 * x).square().mean().backward()
    assert path.log_hz.grad.abs().min() > 0


def test_options():
    assert audio_path_options(None) is None and audio_path_options(False) is None and audio_path_options({}) is None
    full = audio_path_options(True)
    assert full == {"shaper": True, "fir_taps": 16, "poles": 4, "pole_hz": [2.0, 200.0]}
    assert audio_path_options({"fir_taps": 32}) == {**full, "fir_taps": 32}
    for bad in ({"taps": 3}, {"fir_taps": 0}, {"poles": -1}, {"pole_hz": [0, 10]}, {"pole_hz": [10, 30000]}, 3):
        with pytest.raises(ValueError):
            audio_path_options(bad)


def test_block_matrix_equals_the_recurrence_and_follows_weight_changes():
    path = _randomised()
    g = torch.Generator().manual_seed(3)
    x = 0.5 * torch.randn(2, 1500, generator=g, dtype=torch.float64)
    cond = torch.randn(2, 3, generator=g, dtype=torch.float64)

    def streamed(sizes):
        state, parts, i = None, [], 0
        with torch.no_grad():   # blocks up to 512 samples: the cached block matrix
            for n in sizes:
                y, state = path.process(x[:, i:i + n], cond, state)
                parts.append(y)
                i += n
        return torch.cat(parts, 1)

    sizes = [256, 256, 1, 64, 512, 411]     # 411 repeats no length: every block builds its matrix
    assert (streamed(sizes) - path(x, cond)).abs().max().item() < 1e-10
    assert path._block_cache[0][0] == 411
    with torch.no_grad():
        path.branch.mul_(-2.0)              # in place, as an optimiser step: the cache must not be reused
        path.fir[3] += 0.2
    assert (streamed(sizes) - path(x, cond)).abs().max().item() < 1e-10
