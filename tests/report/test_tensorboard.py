"""``logger=tensorboard``: a short training and a short fit write event files holding scalars,
audio (target against model) and the report's figures, read back with TensorBoard's
EventAccumulator; ``logger=csv`` writes none; a bad logger name is one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import PLUMBING_CLASS
import soundfile as sf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SR = 44100


def _events(folder: Path) -> EventAccumulator:
    assert list(folder.glob("events.out.tfevents.*")), f"no event file in {folder}"
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_short_training_logs_scalars_audio_and_figures(run_cli, chain_cache, chain_reference, tmp_path):
    out = tmp_path / "run"
    res = run_cli(["train_neural.py", "data.corpus.train_seconds=3.0", "data.corpus.eval_seconds=1.0",
                   "data.corpus.levels=[100,90,80]", "data.corpus.modes=[compress,limit]",
                   f"data.cache_dir={chain_cache}", f"dsp_dir={chain_reference}", f"out_dir={out}",
                   "unseen_levels=[]", "quiet=true", PLUMBING_CLASS, "+hyperparameters.width=4", "train.batch_size=2",
                   "train.warmup_s=0.05", "train.segment_s=0.1", "train.episode=2", "train.val_every=2",
                   "train.val_seconds=0.5", "train.max_steps=4", "logger=tensorboard"])
    assert res.returncode == 0, res.stderr
    acc = _events(out / "tensorboard")
    tags = acc.Tags()
    assert {"val/esr", "val/esr_dsp", "train/loss", "train/lr"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("val/esr")] == [0, 2, 4]
    assert all(np.isfinite(e.value) for e in acc.Scalars("val/esr"))
    audio = [t for t in tags["audio"] if t.startswith("audio/")]
    assert len([t for t in audio if t.endswith("/target")]) >= 2
    assert {t.replace("/target", "/model") for t in audio if t.endswith("/target")} <= set(audio)
    assert acc.Audio(audio[0])[0].sample_rate == SR
    assert {"figures/knob_map", "figures/esr_vs_setting"} <= set(tags["images"])
    assert acc.Images("figures/knob_map")[0].width > 100
    assert (out / "log.csv").is_file()   # the CSV log stays


def test_short_fit_logs_newton_iterations_and_audio(run_cli, tmp_path):
    t = np.arange(2 * SR) / SR
    x = 0.5 * np.sin(2 * np.pi * 220 * t) * (0.2 + 0.8 * (np.sin(2 * np.pi * 1.5 * t) > 0))
    sf.write(tmp_path / "in.wav", x.astype(np.float32), SR)
    base = ["train_comp.py", "data=ff_a", "data.input=in.wav", "data.seconds=2", "quiet=true"]
    res = run_cli([*base, "ckpt_dir=fit", "logger=tensorboard"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    acc = _events(tmp_path / "fit" / "tensorboard")
    esr = acc.Scalars("newton/esr")
    assert len(esr) >= 3 and esr[-1].value < esr[0].value
    assert {"audio/ff_a/target", "audio/ff_a/model"} <= set(acc.Tags()["audio"])
    res = run_cli([*base, "ckpt_dir=csv_only"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "csv_only" / "tensorboard").exists()


def test_unknown_logger_is_one_line(run_cli, clean_failure, tmp_path):
    sf.write(tmp_path / "in.wav", np.zeros(SR, dtype=np.float32) + 0.1, SR)
    res = run_cli(["train_comp.py", "data=ff_a", "data.input=in.wav", "ckpt_dir=fit", "logger=wandb"], cwd=tmp_path)
    clean_failure(res, "logger", "wandb")
