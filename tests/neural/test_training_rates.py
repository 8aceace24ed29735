"""Neural models at the data's own sample rate: the control frame in milliseconds, the
rate in the checkpoint (absent: 44.1 kHz), one rate per set of tracks, and a tiny 48 kHz
manifest trained end to end and rendered at 48 kHz and at 44.1 kHz."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from audio.devices import la2a_setting
from audio.material import synthesize
from common.errors import UserError
from dsp.knobs.knobmap import KnobMap
from dsp.models.ff5_streaming import StreamingCompressor
from neural.checkpoint import build_model, load_checkpoint, model_spec, save_checkpoint
from neural.control import frame_at_rate
from neural.inference import NeuralRenderer
from neural.training.data import Track, tracks_rate, validation_batch

PARAMS = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
KNOBMAP = KnobMap({"compress": {100: PARAMS, 40: {**PARAMS, "threshold_db": -12.0}}}, "ff5")
SR48 = 48000
# (threshold, ratio) of the digital "device" the manifest is rendered with
SETTINGS = {"Train": [(-30, 2), (-20, 6)], "Val": [(-25, 4)], "Test": [(-22, 3)]}
TINY = ["model=s6", "variant=hybrid", "+hyperparameters.width=4", "train.batch_size=2", "train.warmup_s=0.05",
        "train.segment_s=0.1", "train.episode=1", "train.val_every=2", "train.val_seconds=0.5",
        "train.max_steps=3", "quiet=true"]


@pytest.mark.parametrize("frame, rate, expected", [(32, 44100, 32), (32, 48000, 35), (32, 96000, 70),
                                                   (32, 22050, 16), (1, 96000, 1), (2, 8000, 2)])
def test_the_control_frame_lasts_the_same_time_at_every_rate(frame, rate, expected):
    assert frame_at_rate(frame, rate) == expected


def test_frame_at_rate_refuses_nonsense():
    with pytest.raises(ValueError, match="frame"):
        frame_at_rate(0, 48000)
    with pytest.raises(ValueError, match="positive"):
        frame_at_rate(32, 0)


def _track(rate: int, n: int = 4000) -> Track:
    x = np.full(n, 0.1, np.float32)
    return Track("Val", la2a_setting("compress", 60), 1, x, x, np.zeros(n, np.float32), {}, {"knobs": np.zeros(2)},
                 sample_rate=rate)


def test_tracks_count_seconds_at_their_own_rate_and_never_mix():
    assert tracks_rate([_track(SR48), _track(SR48)]) == SR48
    batch = validation_batch([_track(SR48, 9600)], seconds=0.1, warmup_s=0.05, conditioning="knobs")
    assert batch.x.shape == (1, 4800) and batch.warmup == 2400   # 0.1 s and 0.05 s at 48 kHz
    with pytest.raises(UserError, match="mix sample rates .*44100 Hz, 48000 Hz"):
        tracks_rate([_track(44100), _track(SR48)])


def _save(path, **over):
    spec = model_spec("s6", "hybrid_gain", "fitted", {"width": 4, "state": 2, "frame": 32})
    record = {"model": spec, "variant": "hybrid", "sample_rate": 44100, "param_map": KNOBMAP.to_record(),
              "state_dict": build_model(spec).state_dict(), **over}
    save_checkpoint(path, record)
    return path


def test_a_checkpoint_without_a_rate_was_trained_at_44100(tmp_path):
    path = _save(tmp_path / "old.pt")
    data = torch.load(path, weights_only=True)
    del data["sample_rate"]
    torch.save(data, path)
    record, _ = load_checkpoint(path)
    assert record["sample_rate"] == 44100
    assert NeuralRenderer.load(path).sample_rate == 44100


def test_a_checkpoint_with_a_bad_rate_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"bad\.pt: checkpoint holds an invalid sample_rate -1"):
        load_checkpoint(_save(tmp_path / "bad.pt", sample_rate=-1))


# --- end to end: a 48 kHz manifest -------------------------------------------------------
def _write_manifest(folder, rates: dict | None = None) -> str:
    """Pairs rendered with a digital compressor at ``SETTINGS``, 2 s each, at 48 kHz (or
    ``rates[row index]``); returns the manifest's path."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    lines = ["split,input,target,threshold,ratio"]
    rows = [(split, s) for split, settings in SETTINGS.items() for s in settings]
    for i, (split, (threshold, ratio)) in enumerate(rows):
        rate = (rates or {}).get(i, SR48)
        x = synthesize(2.0, rate, seed=40 + i).astype(np.float32)
        x *= 0.9 / max(float(np.max(np.abs(x))), 1e-9)
        params = {**PARAMS, "threshold_db": threshold, "ratio": ratio, "make_up_db": 0.0}
        y = StreamingCompressor(params, rate).process(x[None, :])[0]
        sf.write(str(folder / "audio" / f"{i}_in.wav"), x, rate, subtype="FLOAT")
        sf.write(str(folder / "audio" / f"{i}_target.wav"), y, rate, subtype="FLOAT")
        lines.append(f"{split},audio/{i}_in.wav,audio/{i}_target.wav,{threshold},{ratio}")
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_48k_manifest_trains_at_48k_and_renders_at_any_rate(run_cli, tmp_path):
    manifest = _write_manifest(tmp_path)
    out = tmp_path / "run"
    res = run_cli(["train_neural.py", "data=manifest", f"data.path={manifest}", f"dsp_dir={tmp_path / 'fits'}",
                   f"out_dir={out}", *TINY], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "48000 Hz, control frame 35 samples (0.73 ms)" in res.stdout
    assert (out / "test_esr.csv").is_file()   # the Test take was scored at its own rate
    record, _ = load_checkpoint(out / "best.pt")
    assert record["sample_rate"] == SR48 and record["model"]["hyperparameters"]["frame"] == 35

    renderer = NeuralRenderer.load(out / "best.pt")
    setting = {"threshold": -22.0, "ratio": 3.0}
    x48 = synthesize(0.5, SR48, seed=7).astype(np.float32)
    y48 = renderer.render(x48, SR48, setting)
    x44 = signal.resample_poly(x48, 147, 160).astype(np.float32)
    y44 = renderer.render(x44, 44100, setting)
    assert y48.shape == x48.shape and y44.shape == x44.shape
    assert np.isfinite(y48).all() and np.isfinite(y44).all() and np.std(y48) > 1e-3
    # the 44.1 kHz render is the 48 kHz one resampled (below 18 kHz, after the first 50 ms)
    ref = signal.resample_poly(y48, 147, 160)[:y44.size]
    band = signal.butter(8, 18000, fs=44100, output="sos")
    a, b = signal.sosfiltfilt(band, y44)[2205:], signal.sosfiltfilt(band, ref)[2205:]
    assert np.sum((a - b) ** 2) / np.sum(b ** 2) < 1e-3


def test_a_manifest_mixing_rates_is_refused_before_any_fit(run_cli, tmp_path, clean_failure):
    manifest = _write_manifest(tmp_path, rates={2: 44100})   # the Val take at 44.1 kHz
    res = run_cli(["train_neural.py", "data=manifest", f"data.path={manifest}", f"dsp_dir={tmp_path / 'fits'}",
                   f"out_dir={tmp_path / 'run'}", *TINY], cwd=tmp_path)
    clean_failure(res, "2_in.wav", "44100 Hz", "48000 Hz")
    assert not (tmp_path / "fits").exists() and not (tmp_path / "run").exists()
