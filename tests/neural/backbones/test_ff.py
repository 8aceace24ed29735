"""The feed-forward (per-sample MLP) backbone: the family contract, statelessness, overfitting."""
import pytest
import torch

import backbone_contract as contract
from neural import HEADS, build_head, count_parameters
from neural.backbones.ff import FFModel

SETUPS = [{}, {"width": 8, "layers": 3, "activation": "sigmoid", "film_hidden": 4}]
IDS = ["default", "small"]


@pytest.mark.parametrize("hp", SETUPS, ids=IDS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_streaming_equals_offline(head, hp):
    contract.check_streaming_equals_offline(head, "ff", hp)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_conditioning_changes_the_output(head):
    contract.check_conditioning_changes_output(head, "ff", {})


@pytest.mark.parametrize("hp", SETUPS, ids=IDS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_gradients_reach_every_parameter(head, hp):
    contract.check_gradients_reach_every_parameter(head, "ff", hp)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_default_size(head):
    assert 1_000 <= count_parameters(build_head(head, "ff", 5)) <= 50_000


def test_defaults_are_the_studys_best_model():
    model = FFModel(1, 1, 2)
    assert [layer.out_features for layer in model.hidden] == [32, 32]
    assert isinstance(model.act, torch.nn.Tanh)


def test_memoryless_and_stateless():
    """Each output sample depends on its own input sample (and cond) only: the state is ()."""
    torch.manual_seed(0)
    model = FFModel(3, 2, contract.COND)
    x, cond = torch.randn(2, 50, 3), torch.rand(2, contract.COND)
    perm = torch.randperm(50)
    with torch.no_grad():
        assert torch.allclose(model(x[:, perm], cond), model(x, cond)[:, perm], atol=1e-6)
        y, state = model.process(x, cond, model.initial_state(2))
    assert state == () and y.shape == (2, 50, 2)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        FFModel(1, 1, 0, activation="swish")
    with pytest.raises(ValueError):
        FFModel(1, 1, 0, layers=0)
    model = FFModel(1, 1, 2)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 10, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError):
        model(torch.zeros(1, 10, 1), None)
    with pytest.raises(ValueError):
        model.process(torch.zeros(1, 10, 1), torch.zeros(1, 2), (torch.zeros(1),))


def test_hybrid_learns_a_gain_correction():
    first, final = contract.hybrid_fit("hybrid_gain", "ff", {})
    assert final < first / 1000


def test_black_box_learns_a_static_curve():
    """A memoryless model learns a memoryless compressor: y = tanh(4 x) / 4, per sample."""
    x = contract.signals(batch=1, steps=2205)[0] * 2.0
    y = torch.tanh(4.0 * x) / 4.0
    torch.manual_seed(0)
    model = build_head("blackbox", "ff", 1)
    first, final = contract.fit(model, x, None, None, torch.ones(1, 1), y, steps=150, lr=1e-2)
    assert final < first / 100
