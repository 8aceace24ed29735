"""Sweeps through Hydra's launcher plugins (``python train_comp.py -m ...``): two jobs with the
joblib launcher and two through submitit's local executor, on a 2-s digital-compressor fit;
the sweep is checked before it starts, and a failing job is one ``error:`` line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from common.errors import UserError
from jobs.launch import expand_sweep, launch, split_launch_args

SR = 44100


@pytest.fixture
def short_input(tmp_path) -> Path:
    """2 s of a gated tone with noise (the digital target is rendered from it)."""
    t = np.arange(2 * SR) / SR
    x = 0.5 * np.sin(2 * np.pi * 220 * t) * (0.2 + 0.8 * (np.sin(2 * np.pi * 1.5 * t) > 0))
    x += 0.05 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(tmp_path / "in.wav", x.astype(np.float32), SR)
    return tmp_path / "in.wav"


def _fit_args(*extra):
    # relative paths: the jobs run in the caller's folder (hydra.job.chdir false)
    return ["train_comp.py", "-m", "data=ff_a", "data.input=in.wav", "data.seconds=2", "quiet=true",
            "optimiser.max_iterations=30", *extra]


def _ckpt(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_split_and_expand():
    args = split_launch_args(["-m", "model=s6,lstm", "hydra/launcher=submitit_local", "hydra.launcher.n_jobs=2", "seed=0"])
    assert args.multirun and args.hydra == ["hydra/launcher=submitit_local", "hydra.launcher.n_jobs=2"]
    assert args.job == ["model=s6,lstm", "seed=0"]
    assert expand_sweep(args.job) == [["model=s6", "seed=0"], ["model=lstm", "seed=0"]]
    assert len(expand_sweep(["model=s6,lstm", "variant=hybrid,blackbox"])) == 4


def test_jobs_sharing_an_output_folder_are_refused_before_launch(tmp_path):
    jobs = expand_sweep(["data=ff_a", "data.digital.ratio=3.0,4.0", f"ckpt_dir={tmp_path}/same"])
    with pytest.raises(UserError, match=r"jobs 0 and 1 both write .*same.*hydra:job.num"):
        launch("config", "jobs.fit:run_fit_job", jobs, [f"hydra.sweep.dir={tmp_path}/sweep"],
               job_name="train_comp", output_key="ckpt_dir", quiet=True)
    assert not (tmp_path / "sweep").exists()


def test_bad_key_in_one_job_is_one_line(run_cli, clean_failure, tmp_path):
    res = run_cli(["train_comp.py", "-m", "data=ff_a", "leves=[1],[2]"], cwd=tmp_path)
    clean_failure(res)
    assert "job 0" in res.stderr and "leves" in res.stderr
    res = run_cli(["train_comp.py", "hydra/launcher=joblib"], cwd=tmp_path)
    clean_failure(res)
    assert "add -m" in res.stderr


@pytest.mark.slow
def test_two_jobs_with_joblib(run_cli, short_input, tmp_path):
    cwd = short_input.parent
    res = run_cli(_fit_args("data.digital.ratio=3.0,4.0", "ckpt_dir=fits/r${data.digital.ratio}",
                            "hydra.sweep.dir=sweep", "hydra.launcher.n_jobs=2"), cwd=cwd)
    assert res.returncode == 0, res.stderr
    for ratio in (3.0, 4.0):
        ckpt = _ckpt(cwd / f"fits/r{ratio}/ckpt.yaml")
        assert ckpt["params"]["ratio"] == pytest.approx(ratio, rel=1e-3)
    for job in (0, 1):
        assert (cwd / f"sweep/{job}/job.out").is_file()
    assert not (cwd / "outputs").exists() and not (cwd / "multirun").exists()
    assert "2 jobs in" in res.stdout and res.stdout.count(": ok (") == 2


@pytest.mark.slow
def test_two_jobs_with_submitit_local_one_failing(run_cli, clean_failure, short_input, tmp_path):
    cwd = short_input.parent
    res = run_cli(_fit_args("data.input=in.wav,missing.wav", "ckpt_dir=fits/${hydra:job.num}",
                            "hydra/launcher=submitit_local", "hydra.sweep.dir=sweep",
                            "hydra.launcher.timeout_min=5"), cwd=cwd)
    clean_failure(res)
    assert "1 of 2 jobs failed" in res.stderr and "missing.wav" in res.stderr
    assert _ckpt(cwd / "fits/0/ckpt.yaml")["params"]["ratio"] == pytest.approx(3.0, rel=1e-3)
    assert not (cwd / "fits/1").exists()
    assert (cwd / "sweep/.submitit").is_dir()   # it went through submitit
    assert not (cwd / "outputs").exists() and not (cwd / "multirun").exists()
