"""The encoder-decoder backbone: the family contract, its receptive field, overfitting."""
import pytest
import torch

import backbone_contract as contract
from neural import HEADS, build_head, count_parameters
from neural.backbones.ed import EDModel

SETUPS = [{}, {"encoder": "conv", "window": 5, "hidden": 8}]
IDS = ["lstm", "conv"]


@pytest.mark.parametrize("hp", SETUPS, ids=IDS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_streaming_equals_offline(head, hp):
    contract.check_streaming_equals_offline(head, "ed", hp)


@pytest.mark.parametrize("hp", SETUPS, ids=IDS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_conditioning_changes_the_output(head, hp):
    contract.check_conditioning_changes_output(head, "ed", hp)


@pytest.mark.parametrize("hp", SETUPS, ids=IDS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_gradients_reach_every_parameter(head, hp):
    contract.check_gradients_reach_every_parameter(head, "ed", hp)


@pytest.mark.parametrize("encoder", ["lstm", "conv"])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_default_size(head, encoder):
    assert 1_000 <= count_parameters(build_head(head, "ed", 5, encoder=encoder)) <= 50_000


@pytest.mark.parametrize("encoder", ["lstm", "conv"])
def test_receptive_field_is_the_window_and_the_current_sample(encoder):
    """A change of the input at t0 moves the outputs at t0 .. t0 + window and no others."""
    torch.manual_seed(0)
    window = 6
    model = EDModel(2, 1, contract.COND, hidden=8, window=window, encoder=encoder)
    x, cond = torch.randn(1, 40, 2), torch.rand(1, contract.COND)
    bumped = x.clone()
    bumped[:, 17] += 1.0
    with torch.no_grad():
        moved = (model(bumped, cond) - model(x, cond)).abs().squeeze() > 1e-7
    assert moved.nonzero().flatten().tolist() == list(range(17, 17 + window + 1))


def test_state_is_the_last_window_samples():
    torch.manual_seed(0)
    model = EDModel(3, 1, 0, window=4)
    x = torch.randn(2, 10, 3)
    _, (past,) = model.process(x, None, None)
    assert torch.equal(past, x[:, -4:])
    _, (past,) = model.process(x[:, :2], None, None)  # shorter than the window: silence before
    assert torch.equal(past, torch.cat([torch.zeros(2, 2, 3), x[:, :2]], 1))


def test_defaults_are_the_studys_window():
    model = EDModel(1, 1, 2)
    assert model.window == 16 and isinstance(model.encoder, torch.nn.LSTM)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        EDModel(1, 1, 0, encoder="transformer")
    with pytest.raises(ValueError):
        EDModel(1, 1, 0, window=0)
    model = EDModel(1, 1, 0, window=4)
    with pytest.raises(ValueError):
        model.process(torch.zeros(1, 10, 1), None, (torch.zeros(1, 3, 1),))


def test_hybrid_learns_a_gain_correction():
    first, final = contract.hybrid_fit("hybrid_gain", "ed", {"hidden": 8}, steps=40)
    assert final < first / 1000


@pytest.mark.parametrize("encoder", ["lstm", "conv"])
def test_black_box_learns_a_smoothing_compressor(encoder):
    first, final, _ = contract.blackbox_fit("ed", {"hidden": 8, "encoder": encoder}, steps=100)
    assert final < first / 30
