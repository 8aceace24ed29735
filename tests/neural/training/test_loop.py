"""Training pieces: held-out levels never reach a batch, batches depend on (seed, step),
the settings, and a short training run that is deterministic and resumes exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audio import standin
from audio.material import synthesize
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from dsp.models.ff5_streaming import StreamingCompressor
from neural.checkpoint import build_model, load_checkpoint, model_spec
from audio.devices import LA2A, la2a_setting
from neural.conditioning import conditioning, dsp_gain_db
from neural.training.data import SegmentSampler, Track, validation_batch
from neural.training.loop import TrainSettings, train

SR = 44100
LEVELS = (100, 80, 60)
BASE = {"threshold_db": -30.0, "ratio": 3.0, "attack_ms": 5.0, "release_ms": 120.0, "make_up_db": -2.0}
KNOBMAP = KnobMap({m: {pr: {**BASE, "threshold_db": -13.0 - (pr - 40) * 22 / 60} for pr in LEVELS}
                   for m in ("compress", "limit")}, "ff5")


def _track(split, mode, pr, seconds, seed):
    x = synthesize(seconds, SR, seed=seed).astype(np.float32)
    y = standin.render(x, SR, pr, mode).astype(np.float32)
    params = KNOBMAP.at(la2a_setting(mode, pr))
    g = dsp_gain_db(StreamingCompressor(params, SR), x, params["make_up_db"])
    cond = {name: conditioning(name, params, la2a_setting(mode, pr)) for name in LA2A.conditionings}
    return Track(split, la2a_setting(mode, pr), seed, x, y, g, params, cond)


@pytest.fixture(scope="module")
def tracks():
    out = {"Train": [], "Val": []}
    for i, (mode, pr) in enumerate((m, p) for m in ("compress", "limit") for p in LEVELS):
        out["Train"].append(_track("Train", mode, pr, 1.5, 10 + i))
        out["Val"].append(_track("Val", mode, pr, 0.4, 40 + i))
    return out


def test_conditioning_vectors():
    c = conditioning("fitted", BASE, la2a_setting("limit", 65))
    np.testing.assert_allclose(c, [-0.75, np.log(3.0), np.log10(5.0), np.log10(120.0) - 2, -0.2, 1.0], rtol=1e-6)
    np.testing.assert_allclose(conditioning("knobs", BASE, la2a_setting("compress", 65)), [0.65, 0.0])
    with pytest.raises(UserError, match="mode"):
        conditioning("knobs", BASE, la2a_setting("squash", 65))


@pytest.mark.parametrize("episode", [1, 3])
def test_held_out_levels_never_reach_a_batch(tracks, episode):
    unseen = {80}
    train_tracks = [t for t in tracks["Train"] if t.setting["peak_reduction"] not in unseen]
    sampler = SegmentSampler(train_tracks, 441, 882, batch_size=4, seed=0, conditioning="fitted", episode=episode)
    assert sampler.levels == {(m, p) for m in ("compress", "limit") for p in LEVELS if p not in unseen}
    seen = set()
    for step in range(40):
        b = sampler.batch(step)
        seen |= set(b.levels)
        assert b.x.shape == b.y.shape == b.y_dsp.shape == b.g_db.shape == (4, b.x.shape[1])
        assert b.cond.shape == (4, 6)
        # the DSP output is the DSP gain applied to the input
        torch.testing.assert_close(b.y_dsp, b.x * 10 ** (b.g_db / 20), rtol=1e-5, atol=1e-7)
    assert seen == sampler.levels and not any(pr in unseen for _, pr in seen)


def test_batches_depend_on_seed_and_step_only(tracks):
    make = lambda seed: SegmentSampler(tracks["Train"], 441, 882, 3, seed, "knobs", episode=2)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    for step in (0, 1, 2, 7):
        torch.testing.assert_close(a.batch(step).x, b.batch(step).x, rtol=0, atol=0)
    assert not torch.equal(a.batch(0).x, c.batch(0).x)
    # an episode: the second segment continues where the first ended, scored in full
    first, second = a.batch(4), a.batch(5)
    assert first.fresh and first.warmup == 441 and first.x.shape[1] == 441 + 882
    assert not second.fresh and second.warmup == 0 and second.x.shape[1] == 882
    assert first.levels == second.levels


def test_too_short_material_is_a_user_error(tracks):
    with pytest.raises(UserError, match="shorter than one episode"):
        SegmentSampler(tracks["Train"], 441, SR, 2, 0, "fitted", episode=4)
    with pytest.raises(UserError, match="no training material"):
        SegmentSampler([], 441, 882, 2, 0, "fitted")


def test_settings_are_checked():
    assert TrainSettings.from_dict({"lr": "1e-3", "batch_size": 2}).lr == 1e-3
    with pytest.raises(UserError, match="unknown setting 'lrr'"):
        TrainSettings.from_dict({"lrr": 1})
    with pytest.raises(UserError, match="batch_size"):
        TrainSettings.from_dict({"batch_size": 0})


def _settings(max_steps, **changes) -> TrainSettings:
    """The tiny runs' settings (plateau schedule by default: a run may be extended)."""
    return TrainSettings(**{"lr": 1e-2, "batch_size": 2, "warmup_s": 0.01, "segment_s": 0.05, "episode": 2,
                            "max_steps": max_steps, "max_minutes": 10, "val_every": 2, "patience": 50,
                            "val_seconds": 0.1, "schedule": "plateau", **changes})


def _run(tracks, out_dir, max_steps, seed=0, resume=None, model=None, settings=None):
    settings = settings or _settings(max_steps)
    spec = model_spec("s6", "hybrid_gain", "fitted", {"width": 4, "state": 2, "level_feature": True})
    torch.manual_seed(seed)
    model = model or build_model(spec)
    sampler = SegmentSampler(tracks["Train"], 441, 2205, 2, seed, "fitted", episode=2)
    val = validation_batch(tracks["Val"], 0.1, 0.0, "fitted")
    record = {"model": spec, "variant": "hybrid", "sample_rate": SR, "param_map": KNOBMAP.to_record(),
              "config": {"seed": seed}}
    state = train(model, sampler, val, settings, out_dir, record, "cpu", resume, quiet=True)
    return model, state


def test_training_is_deterministic_and_resumes_exactly(tracks, tmp_path):
    straight, s1 = _run(tracks, tmp_path / "a", max_steps=5)
    again, _ = _run(tracks, tmp_path / "b", max_steps=5)
    for (k, v), w in zip(straight.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    assert s1.step == 5 and "max_steps" in s1.stopped
    assert [r["step"] for r in s1.log] == [0, 2, 4, 5]
    assert (tmp_path / "a" / "best.pt").is_file() and (tmp_path / "a" / "log.csv").is_file()
    # stop at step 3 (mid-episode: the carried state is in last.pt), then resume to 5
    _run(tracks, tmp_path / "c", max_steps=3)
    record, model = load_checkpoint(tmp_path / "c" / "last.pt")
    assert record["resume"]["state"]["step"] == 3 and record["resume"]["carried"] is not None
    resumed, s2 = _run(tracks, tmp_path / "c", max_steps=5, resume=record["resume"], model=model.train())
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=1e-6, atol=1e-7, msg=k)
    assert [r["step"] for r in s2.log] == [0, 2, 3, 4, 5]
    lines = (tmp_path / "c" / "log.csv").read_text().splitlines()
    assert lines[0].startswith("step,seconds,lr,train_loss") and len(lines) == 6


def _signal_at_backward(model, signum, at_call):
    """Send ``signum`` to this process from inside the ``at_call``-th backward pass (0-based),
    i.e. in the middle of a training step: after the forward pass, before the optimiser step."""
    import os
    calls = {"n": 0}

    def hook(grad):
        if calls["n"] == at_call:
            os.kill(os.getpid(), signum)
        calls["n"] += 1
        return grad
    return next(model.parameters()).register_hook(hook)


@pytest.mark.parametrize("signame,at_step", [("SIGINT", 3), ("SIGTERM", 4)])
def test_a_signal_mid_step_saves_a_step_boundary_and_resumes_bit_exactly(tracks, tmp_path, signame, at_step):
    """SIGINT or SIGTERM in the middle of step ``at_step``: the step finishes, last.pt holds
    the state after it (weights, optimiser, carried state, step all of the same step), the
    run ends as an interrupt, and resuming ends bit-identical to an uninterrupted run."""
    import signal
    signum = getattr(signal, signame)
    handler_before = signal.getsignal(signum)
    straight, _ = _run(tracks, tmp_path / "straight", max_steps=7)
    spec = model_spec("s6", "hybrid_gain", "fitted", {"width": 4, "state": 2, "level_feature": True})
    torch.manual_seed(0)
    model = build_model(spec)
    hook = _signal_at_backward(model, signum, at_step)
    with pytest.raises(KeyboardInterrupt):
        _run(tracks, tmp_path / "cut", max_steps=7, model=model)
    hook.remove()
    assert signal.getsignal(signum) is handler_before   # the loop's handlers are gone again
    record, saved = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert record["resume"]["state"]["step"] == at_step + 1
    assert record["metrics"]["step"] == at_step + 1
    resumed, state = _run(tracks, tmp_path / "cut", max_steps=7, resume=record["resume"], model=saved.train())
    assert state.step == 7
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), (k, float((v - w).abs().max()))


def test_cosine_schedule_runs_from_lr_to_lr_min():
    from neural.training.loop import cosine_lr
    s = TrainSettings(lr=1e-2, lr_min=1e-4, max_steps=100, schedule="cosine")
    lrs = [cosine_lr(s, k) for k in range(0, 101)]
    assert lrs[0] == pytest.approx(1e-2) and lrs[100] == pytest.approx(1e-4)
    assert lrs[50] == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(UserError, match="train.schedule"):
        TrainSettings.from_dict({"schedule": "linear"})


def test_weight_decay_pulls_the_weights_towards_zero(tracks, tmp_path):
    with pytest.raises(UserError, match="weight_decay"):
        TrainSettings.from_dict({"weight_decay": -0.1})
    torch.manual_seed(0)
    plain, _ = _run(tracks, tmp_path / "a", 4)
    decayed, _ = _run(tracks, tmp_path / "b", 4, settings=_settings(4, weight_decay=5.0))

    def norm(m):
        return float(sum((p.detach() ** 2).sum() for p in m.parameters()))
    assert norm(decayed) < norm(plain)


def test_cosine_training_follows_the_schedule(tracks, tmp_path):
    from neural.training.loop import cosine_lr
    settings = _settings(6, lr_min=1e-3, schedule="cosine")
    _, state = _run(tracks, tmp_path, 6, settings=settings)
    # the lr logged at a validation is the one its last step used: steps 1, 3, 5 of 0..5
    assert [r["lr"] for r in state.log[1:]] == pytest.approx([cosine_lr(settings, k) for k in (1, 3, 5)])
    assert state.log[-1]["lr"] < state.log[1]["lr"] < settings.lr


def test_defaults_are_the_base_model_files():
    """A setting no model file gives means the same from the config and from the code."""
    import yaml
    from dataclasses import asdict
    base = yaml.safe_load((Path(__file__).resolve().parents[3] / "cfg" / "model" / "base.yaml").read_text())["train"]
    defaults = asdict(TrainSettings())
    assert {k: defaults[k] for k in base} == base
