"""The backbone base class and registry: every backbone shares one contract."""
import pytest
import torch

from neural.backbones import BACKBONES, Backbone, detach_state, register

COND = 3
# small sizes so that every backbone builds in milliseconds
SMALL = {"s6": {"width": 4, "state": 2}, "lstm": {"hidden": 4}, "lru": {"width": 4, "state": 2},
         "s4d": {"width": 4, "layers": 2}, "ff": {"width": 4}, "ed": {"hidden": 4, "window": 3}}


def _leaves(state):
    return [state] if isinstance(state, torch.Tensor) else [t for s in state for t in _leaves(s)]


def _build(name, seed=0):
    torch.manual_seed(seed)
    return BACKBONES[name](2, 1, COND, **SMALL[name])


def test_every_backbone_is_registered_and_a_backbone():
    assert set(BACKBONES) == set(SMALL)
    for name, cls in BACKBONES.items():
        assert issubclass(cls, Backbone), name


def test_a_second_backbone_under_a_taken_name_is_refused():
    class Other(Backbone):
        pass

    with pytest.raises(ValueError, match="two backbones named 's6'"):
        register("s6")(Other)
    assert BACKBONES["s6"].__name__ == "S6Model"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zero_output_predicts_zero(name):
    model = _build(name).zero_output_()
    y = model(torch.randn(2, 40, 2), torch.rand(2, COND))
    assert y.shape == (2, 40, 1) and torch.equal(y, torch.zeros_like(y))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_an_empty_block_changes_nothing(name):
    model = _build(name)
    x, cond = torch.randn(2, 30, 2), torch.rand(2, COND)
    with torch.no_grad():
        _, state = model.process(x, cond)
        y, same = model.process(x[:, :0], cond, state)
        _, fresh = model.process(x[:, :0], cond, None)
    assert y.shape == (2, 0, 1)
    assert same is state
    initial = model.initial_state(2)
    assert len(fresh) == len(initial)
    for a, b in zip(_leaves(fresh), _leaves(initial)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_inputs_and_states_raise(name):
    model = _build(name)
    x, cond = torch.randn(2, 10, 2), torch.rand(2, COND)
    with pytest.raises(ValueError, match="x must be"):
        model(x[..., :1], cond)
    with pytest.raises(ValueError, match="cond must be"):
        model(x, None)
    wrong = model.initial_state(2) + (torch.zeros(1),)
    with pytest.raises(ValueError, match="state"):
        model.process(x, cond, wrong)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_sizes_name_the_model(name):
    with pytest.raises(ValueError, match=f"bad {BACKBONES[name].__name__} sizes"):
        BACKBONES[name](0, 1, COND, **SMALL[name])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_weights(name):
    a, b = _build(name, seed=5), _build(name, seed=5)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_detach_state_cuts_the_graph_and_keeps_the_structure():
    t = torch.ones(2, requires_grad=True) * 2
    state = ((t, [t, None]), t)
    out = detach_state(state)
    assert isinstance(out, tuple) and isinstance(out[0][1], list) and out[0][1][1] is None
    assert not out[1].requires_grad and torch.equal(out[1], t.detach())
