"""The command line of every entry point (issue 15): --help, --cfg job, unknown keys,
data=ff_a on the user's input, and the report's words."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from support import ROOT, SR, program, write_wav

SCRIPTS = ["train_comp.py", "train_neural.py", "compare.py", "test_comp.py", "digital_compressor.py", "export.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0_with_usage(run_cli, script):
    res = run_cli([script, "--help"])
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert "python " + script in res.stdout or "usage:" in res.stdout


def test_standin_help():
    res = subprocess.run([sys.executable, "-m", "audio.standin", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "--peak-reduction" in res.stdout


@pytest.mark.parametrize("script, key, meaning", [
    ("train_comp.py", "data.align", "latency and polarity"),
    ("train_comp.py", "levels", ""),
    ("train_neural.py", "variant", "hybrid | blackbox"),
    ("train_neural.py", "model.train.lr", ""),
    ("compare.py", "unseen_levels", ""),
    ("compare.py", "train_jobs", "trainings at once"),
])
def test_hydra_help_lists_settings_with_defaults_and_meanings(run_cli, script, key, meaning):
    out = run_cli([script, "--help"]).stdout
    line = next((ln for ln in out.splitlines() if ln.strip().startswith(key + " ")), None)
    assert line is not None, out
    assert "=" in line and meaning in line


def test_help_follows_the_chosen_data_file(run_cli):
    out = run_cli(["train_comp.py", "--help", "data=ff_a"]).stdout
    assert any(ln.strip().startswith("data.digital.ratio ") and "3.0" in ln for ln in out.splitlines())


def test_cfg_job_prints_the_composed_config(run_cli):
    res = run_cli(["train_comp.py", "--cfg", "job", "data=ff_a", "levels=[90,80]"])
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    assert cfg["data"]["name"] == "ff_a" and cfg["levels"] == [90, 80] and cfg["data"]["align"] == "auto"
    res = run_cli(["train_neural.py", "--cfg=job", "model=lstm"])
    assert res.returncode == 0 and yaml.safe_load(res.stdout)["model"]["name"] == "lstm"


@pytest.mark.parametrize("script, override, suggestion", [
    ("train_comp.py", "leves=[1]", "did you mean levels?"),
    ("train_comp.py", "+leves=[1]", "did you mean levels?"),
    ("train_comp.py", "align=off", "did you mean data.align?"),
    ("train_neural.py", "+varient=blackbox", "did you mean variant?"),
    ("compare.py", "out_dri=x", "did you mean out_dir?"),
    ("train_comp.py", "data.inptu=x.wav", "did you mean data.input?"),
])
def test_unknown_key_is_an_error_with_a_suggestion(run_cli, clean_failure, script, override, suggestion):
    clean_failure(run_cli([script, override]), override, suggestion)


def test_open_tables_take_new_keys(run_cli):
    res = run_cli(["train_neural.py", "--cfg", "job", "+hyperparameters.width=12"])
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(res.stdout)["hyperparameters"] == {"width": 12}


def test_bad_cfg_value(run_cli, clean_failure):
    clean_failure(run_cli(["train_comp.py", "--cfg", "hydra"]), "--cfg hydra")


def test_ff_a_uses_the_given_input_and_no_corpus(run_cli, tmp_path):
    write_wav(tmp_path / "mine.wav", program(3.0, SR, seed=4))
    res = run_cli(["train_comp.py", "data=ff_a", "data.input=mine.wav", "data.seconds=2.5", "ckpt_dir=ck",
                   "quiet=true", "data.frame_s=1.5", "data.overlap_s=0.5"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = yaml.safe_load((tmp_path / "ck" / "ckpt.yaml").read_text())
    assert rec["input"] == "mine.wav" and rec["esr"] < 1e-6
    assert not (tmp_path / "cache").exists()


def test_ff_a_without_input_synthesises_only_what_it_needs(run_cli, tmp_path):
    res = run_cli(["train_comp.py", "data=ff_a", "data.seconds=2.5", "ckpt_dir=ck", "quiet=true",
                   "data.frame_s=1.5", "data.overlap_s=0.5"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "synthesised" in yaml.safe_load((tmp_path / "ck" / "ckpt.yaml").read_text())["input"]
    assert not (tmp_path / "cache").exists()


def test_report_text_says_what_was_evaluated():
    from jobs.compare import _evaluated
    from omegaconf import OmegaConf
    from report.summary import markdown_table
    rows = [{"mode": "compress", "peak_reduction": pr, "split": "unseen" if pr == 65 else "seen"}
            for pr in (60, 65, 70)]
    what, unseen = _evaluated(rows, OmegaConf.create({"unseen_levels": [45, 65, 85]}))
    assert what == "compress mode, 3 levels (PR 60, 65, 70)" and unseen.startswith("65 ")
    table = markdown_table([{"d": 1.0}], [("d", "|dLUFS|", ".2f")])
    head, sep, body = table.splitlines()
    # every line has as many unescaped cell separators as the separator line
    count = lambda ln: ln.replace("\\|", "").count("|")  # noqa: E731
    assert count(head) == count(sep) == count(body) == 2
