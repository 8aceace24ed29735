"""The parameter map: physical units <-> solver logits, its derivatives, and the range checks."""
from __future__ import annotations

import math

import pytest
import torch

from dsp.models.parameters import DEFAULT_INIT, PARAM_NAMES, Parameterisation, Ranges, coef_to_ms, ms_to_coef

PHYSICAL = [
    DEFAULT_INIT,
    {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0},
    {"threshold_db": -20.0, "ratio": 8.0, "attack_ms": 0.1 * 1.001, "release_ms": 200.0, "make_up_db": -6.5},
    {"threshold_db": -55.5, "ratio": 19.5, "attack_ms": 99.0, "release_ms": 11.0, "make_up_db": 24.0},
    {"threshold_db": 3.0, "ratio": 1.05, "attack_ms": 30.0, "release_ms": 990.0, "make_up_db": 0.25},
]


def _assert_close(a: dict, b: dict, rtol: float) -> None:
    for k in PARAM_NAMES:
        assert a[k] == pytest.approx(b[k], rel=rtol, abs=rtol), k


@pytest.mark.parametrize("sample_rate", [44100, 48000, 96000])
@pytest.mark.parametrize("physical", PHYSICAL)
def test_round_trip(physical, sample_rate):
    param = Parameterisation(sample_rate)
    z = param.from_physical(physical)
    assert z.dtype == torch.float64 and z.shape == (5,)
    assert torch.all(torch.isfinite(z))
    _assert_close(param.to_physical(z), physical, 1e-9)


def test_round_trip_other_direction():
    param = Parameterisation(44100)
    z = torch.tensor([-31.0, -2.0, 0.7, 1.9, 4.0], dtype=torch.float64)
    assert torch.allclose(param.from_physical(param.to_physical(z)), z, rtol=1e-9, atol=1e-9)


def test_identity_coordinates_and_bounds():
    param = Parameterisation(44100)
    z = param.from_physical(PHYSICAL[1])
    assert float(z[0]) == -20.0 and float(z[4]) == 0.0          # dB pass through unchanged
    # the logits map into the open ranges, however large
    for big in (-60.0, 60.0):
        p = param.to_physical(torch.full((5,), big, dtype=torch.float64))
        r = param.ranges
        assert r.ratio[0] <= p["ratio"] <= r.ratio[1]
        assert r.attack_ms[0] * (1 - 1e-9) <= p["attack_ms"] <= r.attack_ms[1] * (1 + 1e-9)
        assert r.release_ms[0] * (1 - 1e-9) <= p["release_ms"] <= r.release_ms[1] * (1 + 1e-9)


def test_values_at_the_bounds_are_pulled_inside():
    param = Parameterisation(44100)
    edge = {"threshold_db": -10.0, "ratio": 1.0, "attack_ms": 100.0, "release_ms": 10.0, "make_up_db": 0.0}
    z = param.from_physical(edge)
    assert torch.all(torch.isfinite(z))
    back = param.to_physical(z)
    assert back["ratio"] > 1.0                                    # torchcomp needs ratio > 1
    _assert_close(back, edge, 1e-6)


def test_slow_time_is_small_coefficient():
    sr = 44100
    assert ms_to_coef(1000.0, sr) < ms_to_coef(1.0, sr)
    assert coef_to_ms(ms_to_coef(37.0, sr), sr) == pytest.approx(37.0, rel=1e-12)
    # the same time constant in ms is a smaller per-sample coefficient at a higher rate
    assert ms_to_coef(10.0, 48000) < ms_to_coef(10.0, 44100)
    assert ms_to_coef(10.0, 44100) == pytest.approx(1 - math.exp(-2200 / (10.0 * 44100)), rel=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_natural_derivs_match_autograd(seed):
    param = Parameterisation(48000, Ranges(ratio=(1.0, 30.0), attack_ms=(0.05, 80.0)))
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(5, generator=gen, dtype=torch.float64) * torch.tensor([20.0, 2.0, 2.0, 2.0, 6.0],
                                                                           dtype=torch.float64)
    v, d1, d2 = param.natural_derivs(z)
    assert torch.allclose(v, param.natural(z), rtol=0, atol=0)
    # the map is elementwise: its Jacobian is diagonal, and the diagonal is d1
    jac = torch.autograd.functional.jacobian(param.natural, z)
    assert torch.allclose(jac, torch.diag(d1), rtol=1e-12, atol=1e-15)
    # second derivatives: the Hessian of each output is zero except its own diagonal entry
    for i in range(5):
        hess = torch.autograd.functional.hessian(lambda zz: param.natural(zz)[i], z)
        expect = torch.zeros(5, 5, dtype=torch.float64)
        expect[i, i] = d2[i]
        assert torch.allclose(hess, expect, rtol=1e-10, atol=1e-15), i
    assert float(d1[0]) == 1.0 and float(d1[4]) == 1.0 and float(d2[0]) == 0.0 and float(d2[4]) == 0.0


def test_natural_derivs_batched():
    param = Parameterisation(44100)
    z = torch.linspace(-3.0, 3.0, 20, dtype=torch.float64).reshape(4, 5)
    v, d1, d2 = param.natural_derivs(z)
    assert v.shape == d1.shape == d2.shape == (4, 5)
    for row in range(4):
        vr, d1r, d2r = param.natural_derivs(z[row])
        for a, b in ((v[row], vr), (d1[row], d1r), (d2[row], d2r)):
            assert torch.allclose(a, b, rtol=1e-14, atol=0)


def test_check_accepts_values_in_range():
    r = Ranges()
    for p in PHYSICAL:
        r.check(p)
    r.check({"threshold_db": -200.0, "ratio": 1.0, "attack_ms": 0.1, "release_ms": 1000.0, "make_up_db": 200.0})


@pytest.mark.parametrize("name,value", [
    ("ratio", 0.5), ("ratio", 20.5), ("attack_ms", 0.05), ("attack_ms", 150.0),
    ("release_ms", 5.0), ("release_ms", 2000.0), ("threshold_db", -250.0), ("threshold_db", math.nan),
    ("make_up_db", math.inf), ("make_up_db", 201.0), ("ratio", math.nan), ("attack_ms", math.inf),
])
def test_check_rejects_out_of_range(name, value):
    params = dict(PHYSICAL[1], **{name: value})
    with pytest.raises(ValueError, match=name):
        Ranges().check(params, where="init")


def test_check_follows_custom_ranges():
    r = Ranges(ratio=(2.0, 10.0), attack_ms=(1.0, 10.0), release_ms=(50.0, 500.0))
    with pytest.raises(ValueError, match="ratio"):
        r.check(PHYSICAL[4])                  # ratio 1.05 < 2
    r.check({"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0, "make_up_db": 0.0})


@pytest.mark.parametrize("kwargs", [
    {"ratio": (0.5, 20.0)}, {"ratio": (5.0, 5.0)}, {"attack_ms": (0.0, 10.0)},
    {"release_ms": (100.0, 10.0)}, {"release_ms": (10.0, math.inf)},
])
def test_invalid_ranges_rejected(kwargs):
    with pytest.raises(ValueError):
        Ranges(**kwargs)
