"""Control-rate heads: frame features, interpolation, causality, streaming equals offline."""
import pytest
import torch

from neural import BACKBONES, build_head
from neural.control import frame_features, interpolate

COND = 3
FRAME = 32


def _signals(batch=2, steps=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(batch, steps, generator=g)
    g_dsp = -10.0 * torch.rand(batch, steps, generator=g)
    return x, x * 10 ** (g_dsp / 20), g_dsp, torch.rand(batch, COND, generator=g)


def _model(head, backbone, seed=0):
    torch.manual_seed(seed)
    model = build_head(head, backbone, COND, frame=FRAME)
    with torch.no_grad():
        model.backbone.out_proj.weight.normal_(0.0, 0.1)
        model.backbone.out_proj.bias.normal_(0.0, 0.02)
    return model


def test_frame_features_match_a_direct_computation():
    x = torch.tensor([[0.5, -0.5, 0.25, 0.0, 1e-6, -1e-6, 0.1, 0.1]])
    g = torch.tensor([[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]])
    f = frame_features(x, g, torch.tensor([[0.5]]), 4)
    assert f.shape == (1, 2, 4)
    rms0 = ((0.25 + 0.25 + 0.0625) / 4) ** 0.5
    dx0 = torch.tensor([0.0, -1.0, 0.75, -0.25])
    assert f[0, 0, 0].item() == pytest.approx(torch.log10(torch.tensor(rms0)).item(), abs=1e-6)
    assert f[0, 0, 1].item() == pytest.approx(torch.log10(torch.tensor(0.5)).item(), abs=1e-6)
    assert f[0, 0, 2].item() == pytest.approx(torch.log10(dx0.square().mean().sqrt()).item(), abs=1e-6)
    assert f[0, 0, 3].item() == pytest.approx(-4.0 / 20)
    assert f[0, 1, 3].item() == pytest.approx(-8.0 / 20)
    # quiet frames are floored at -80 dB (log10 = -4), never -inf
    assert torch.isfinite(frame_features(torch.zeros(1, 8), None, torch.zeros(1, 1), 4)).all()
    assert frame_features(torch.zeros(1, 8), None, torch.zeros(1, 1), 4).min().item() == pytest.approx(-4.0)


def test_interpolation_ramps_from_one_prediction_to_the_next():
    c = torch.tensor([[0.0, 1.0, 3.0, 7.0]])
    out = interpolate(c, 4, 0, 10)
    expected = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
    assert torch.allclose(out, torch.tensor([expected]))
    assert torch.allclose(interpolate(c, 4, 3, 6), torch.tensor([expected[3:6]]))


@pytest.mark.parametrize("head", ["hybrid_gain", "blackbox"])
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_streaming_equals_offline_at_any_block_size(head, backbone):
    model = _model(head, backbone)
    x, y_dsp, g_dsp, cond = _signals()
    if head == "blackbox":
        y_dsp = g_dsp = None
        cond = cond[:, :COND]
    offline = model(x, y_dsp, g_dsp, cond)
    assert offline.shape == x.shape and torch.isfinite(offline).all()
    for streamed, i in _blocks(model, x, y_dsp, g_dsp, cond, None):
        assert (streamed[:, :x.shape[1]] - offline[:, :i]).abs().max().item() < 1e-5


@pytest.mark.parametrize("backbone", ["s6", "lstm"])
def test_output_depends_on_the_past_only_and_silence_stays_silent(backbone):
    model = _model("hybrid_gain", backbone)
    x, y_dsp, g_dsp, cond = _signals()
    with torch.no_grad():
        y = model(x, y_dsp, g_dsp, cond)
        x2 = x.clone()
        x2[:, 1000:] *= 3.0
        y2 = model(x2, x2 * 10 ** (g_dsp / 20), g_dsp, cond)
        assert torch.equal(y2[:, :1000], y[:, :1000])
        assert not torch.equal(y2[:, 1000 + 2 * FRAME:], 3.0 * y[:, 1000 + 2 * FRAME:])
        assert torch.equal(model(x, torch.zeros_like(x), g_dsp, cond), torch.zeros_like(x))
        # the first frame sees no prediction yet: it is the DSP output itself
        assert torch.equal(y[:, :FRAME], y_dsp[:, :FRAME])


def test_conditioning_and_gradients():
    model = _model("hybrid_gain", "s6")
    x, y_dsp, g_dsp, cond = _signals()
    y = model(x, y_dsp, g_dsp, cond)
    assert not torch.allclose(y, model(x, y_dsp, g_dsp, cond + 1.0))
    y.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="control rate"):
        build_head("hybrid_add", "s6", COND, frame=32)
    with pytest.raises(ValueError, match="frame"):
        build_head("hybrid_gain", "s6", COND, frame=0)
    model = build_head("hybrid_gain", "s6", COND, frame=FRAME)
    x, y_dsp, g_dsp, cond = _signals()
    with pytest.raises(ValueError, match="cond"):
        model(x, y_dsp, g_dsp, cond.unsqueeze(1).expand(2, x.shape[1], COND))


@pytest.mark.parametrize("head", ["hybrid_gain", "blackbox"])
def test_audio_path_after_the_control_rate_gain_streams_exactly(head):
    torch.manual_seed(0)
    model = build_head(head, "s6", COND, frame=FRAME, audio_path={"fir_taps": 16, "poles": 3})
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        model.backbone.out_proj.weight.normal_(0.0, 0.1, generator=g)
        for name, p in model.audio_path.named_parameters():
            if name != "log_hz":
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    x, y_dsp, g_dsp, cond = _signals()
    if head == "blackbox":
        y_dsp = g_dsp = None
    offline = model(x, y_dsp, g_dsp, cond)
    for streamed, i in _blocks(model, x, y_dsp, g_dsp, cond, model.initial_state(2)):
        assert (streamed - offline[:, :i]).abs().max().item() < 1e-5


def _blocks(model, x, y_dsp, g_dsp, cond, state0):
    """Stream ``x`` through ``model.process`` in three block patterns (empty and odd blocks
    included); yields the joined output and the samples it covers, per pattern."""
    with torch.inference_mode():
        for sizes in ([1] * 70 + [1930], [31, 1, 32, 33, 0, 100, 803, 1000], [256] * 8):
            state, parts, i = state0, [], 0
            for n in sizes:
                sl = slice(i, i + n)
                y, state = model.process(x[:, sl], None if y_dsp is None else y_dsp[:, sl],
                                         None if g_dsp is None else g_dsp[:, sl], cond, state)
                parts.append(y)
                i += n
            yield torch.cat(parts, 1), i

