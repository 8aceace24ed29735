"""The optical-cell model's fused derivative kernel holds against autograd through the torch model,
on program material through the stand-in (not silence)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian

from audio import standin
from audio.framing import Frames, make_frames
from audio.material import synthesize
from dsp.derivatives.opto_kernel import OptoObjective, gain_frames, prepare
from dsp.models.opto import OPTO_START, OptoParameterisation, natural_from_physical, opto
from dsp.models.opto_streaming import StreamingOpto
from dsp.models.preemphasis import preemphasis

SR = 8000            # short frames that still span the cell's time constants
T = 900
WARMUP = 120
BLOCKS = {"input_highpass_hz": 40.0, "input_shelf_hz": 2500.0, "input_shelf_db": -4.0,
          "tube_drive": 1.5, "tube_asymmetry": 0.2, "output_highpass_hz": 20.0}
# time constants short enough that the slow stage and the memory move within a frame
POINT = {**OPTO_START, "threshold_db": -24.0, "attack_ms": 5.0, "release_ms": 30.0, "release_slow_ms": 120.0,
         "slow_fraction": 0.35, "memory_ms": 60.0, "memory_depth": 4.0, "sidechain_shelf_hz": 1500.0,
         "sidechain_shelf_db": 9.0, "input_mix": 0.08}
pytestmark = pytest.mark.usefixtures("one_thread")


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def frames() -> Frames:
    x = synthesize(2 * T / SR + 0.05, SR, seed=11).astype(np.float64)
    x *= 0.9 / np.max(np.abs(x[: 2 * T]))
    y = standin.render(x, SR, 85, "limit").astype(np.float64)
    xf, yf = np.stack([x[:T], x[T:2 * T]]), np.stack([y[:T], y[T:2 * T]])
    lengths = np.array([T, T - 200])              # the second frame is zero padded at the end
    xf[1, lengths[1]:] = 0.0
    yf[1, lengths[1]:] = 0.0
    return Frames(xf, yf, lengths, WARMUP, SR)


def _reference(frames: Frames, param: OptoParameterisation, blocks, z: torch.Tensor, linked: bool = False):
    """Loss, gradient and Hessian of the torch model by autograd (forward over reverse);
    ``linked``: the frames are one stereo signal's channels with one cell."""
    x = torch.from_numpy(frames.x)
    mask = torch.from_numpy(frames.score_mask())
    target = torch.where(mask, preemphasis(torch.from_numpy(frames.y)), 0.0)
    held = None if blocks is None else torch.tensor([blocks[k] for k in BLOCKS], dtype=torch.float64)

    def loss(zz):
        out = opto(x, param.natural(zz), held, SR, preemphasised=True, linked=linked)
        return (torch.where(mask, out - target, 0.0) ** 2).sum()

    zz = z.clone().requires_grad_(True)
    f = loss(zz)
    (g,) = torch.autograd.grad(f, zz)
    h = hessian(loss, z, vectorize=True, outer_jacobian_strategy="forward-mode")
    return float(f.detach()), g.detach(), h.detach()


CASES = {"limit, blocks held": (True, BLOCKS), "compress, the core alone": (False, None)}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, frames):
    fit_mix, blocks = CASES[request.param]
    param = OptoParameterisation(SR, fit_mix=fit_mix)
    z = param.from_physical(POINT)
    return param, blocks, z, _reference(frames, param, blocks, z)


def test_kernel_matches_autograd(frames, case):
    param, blocks, z, (fa, ga, ha) = case
    objective = OptoObjective(frames, param, blocks)
    f, g, h = objective.loss_grad_hess(z)
    assert g.dtype == torch.float64 and g.shape == (param.size,) and h.shape == (param.size, param.size)
    assert _rel(f, fa) < 1e-6
    assert _rel(g, ga) < 1e-6
    assert _rel(h, ha) < 1e-6
    assert torch.equal(h, h.T)


def test_loss_paths_agree(frames, case):
    """The line search's loss is the value the derivative pass computes (the same arithmetic)."""
    param, blocks, z, _ = case
    objective = OptoObjective(frames, param, blocks)
    f, _, _ = objective.loss_grad_hess(z)
    assert objective.loss(z) == pytest.approx(f, rel=1e-13)


def test_the_point_exercises_every_branch(frames):
    """Light rising and falling, the slow carriers following and letting go, the memory moving:
    the derivative test above covers every branch of the recursion."""
    v = natural_from_physical(POINT, SR)
    thr, gam, a_att, a_fast, r_slow, w, a_mem, depth = v[:8]
    from dsp.models.blocks import shelf_coefficients
    b0, b1, a1 = shelf_coefficients(v[8], v[9], SR)
    x = frames.x[0]
    light = c_s = mem = z = 0.0
    g = 1.0
    counts = np.zeros(4)
    mems = []
    for xn in x:
        s = (g + v[10]) * xn
        e = b0 * s + z
        z = b1 * s - a1 * e
        rising = e * e > light
        counts[0 if rising else 1] += 1
        light += (a_att if rising else a_fast) * (e * e - light)
        c = np.exp(gam * (0.5 * np.log(light) - np.log(10) / 20 * thr)) if light > 0 else 0.0
        follow = w * c >= c_s
        counts[2 if follow else 3] += 1
        c_s += (a_mem if follow else r_slow * np.exp(-depth * (mem - 0.5))) * (w * c - c_s)
        g = 1.0 / (1.0 + (1 - w) * c + c_s)
        mem += a_mem * ((1 - g) - mem)
        mems.append(mem)
    assert np.all(counts > 0.02 * len(x)), counts
    assert np.ptp(mems) > 0.1


def test_gain_and_streaming_follow_the_torch_model(frames):
    """The fit's gain, the block renderer (one block or many) and the torch model are one model."""
    natural = natural_from_physical(POINT, SR)
    x = torch.from_numpy(frames.x[:1, :T])
    held = torch.tensor([BLOCKS[k] for k in BLOCKS], dtype=torch.float64)
    with torch.no_grad():
        reference = opto(x, torch.tensor(natural, dtype=torch.float64), held, SR).numpy()[0]
    gain = gain_frames(prepare(frames), natural)[0]
    stream = StreamingOpto({**POINT, **BLOCKS}, SR)
    assert np.allclose(stream.gain(frames.x[:1, :T]), gain, rtol=0, atol=1e-14)
    pieces = StreamingOpto({**POINT, **BLOCKS}, SR)
    out = np.concatenate([pieces.process(frames.x[:1, i:i + 97]) for i in range(0, T, 97)], axis=1)[0]
    assert _rel(out, reference) < 1e-10


def test_gains_of_a_group_of_frames_are_those_of_all_frames(frames):
    """The block stage makes the held gain group by group: a group's rows equal the whole's."""
    natural = natural_from_physical(POINT, SR)
    data = prepare(frames)
    whole = gain_frames(data, natural)
    assert whole.shape[0] == frames.n_frames >= 2
    for part in (slice(0, 1), slice(1, None), slice(0, frames.n_frames)):
        np.testing.assert_array_equal(gain_frames(data, natural, part), whole[part])


@pytest.fixture(scope="module")
def stereo() -> Frames:
    """A stereo pair framed as a fit frames it (one frame per channel, linked): unlike
    channels (other material, 9 dB apart), so the cell each hears is not its own."""
    left = synthesize(2 * T / SR + 0.05, SR, seed=11)[T:2 * T].astype(np.float64)
    right = synthesize(2 * T / SR + 0.05, SR, seed=13)[T:2 * T].astype(np.float64)
    x = np.stack([0.9 * left / np.max(np.abs(left)), 0.32 * right / np.max(np.abs(right))])
    y = np.stack([standin.render(c, SR, 85, "limit").astype(np.float64) for c in x])
    frames = make_frames(x, y, SR, frame_s=T / SR, overlap_s=WARMUP / SR)
    assert frames.linked and frames.n_frames == 2 and list(frames.channel) == [0, 1]
    return frames


@pytest.mark.parametrize("name", list(CASES))
def test_a_linked_stereo_pair_matches_autograd(stereo, name):
    """Each channel's frame is scored on its own output, its cell lit by both channels' drives."""
    fit_mix, blocks = CASES[name]
    param = OptoParameterisation(SR, fit_mix=fit_mix)
    z = param.from_physical(POINT)
    fa, ga, ha = _reference(stereo, param, blocks, z, linked=True)
    f, g, h = OptoObjective(stereo, param, blocks).loss_grad_hess(z)
    assert _rel(f, fa) < 1e-6
    assert _rel(g, ga) < 1e-6
    assert _rel(h, ha) < 1e-6
    assert OptoObjective(stereo, param, blocks).loss(z) == pytest.approx(f, rel=1e-13)
    # the unlinked reading (each channel its own cell) is another model, not a rounding away
    fu, gu, _ = _reference(stereo, param, blocks, z, linked=False)
    assert _rel(g, gu) > 1e-2


def test_a_linked_pairs_gain_is_the_stereo_renderers(stereo):
    natural = natural_from_physical(POINT, SR)
    gain = gain_frames(prepare(stereo), natural)
    np.testing.assert_array_equal(gain[0], gain[1])
    stream = StreamingOpto({**POINT, **BLOCKS}, SR)
    assert np.allclose(stream.gain(stereo.source_x), gain[0], rtol=0, atol=1e-14)
    alone = gain_frames(prepare(make_frames(stereo.source_x[1], stereo.source_y[1], SR, T / SR, WARMUP / SR)), natural)
    assert np.max(np.abs(alone[0] - gain[1])) > 0.05   # the quiet channel alone is reduced far less
