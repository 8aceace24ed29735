"""``train_neural.py`` bad input: one ``error:`` line, non-zero exit, nothing on disk touched."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("args, named", [
    (["model=bogus"], "bogus"),
    (["variant=bogus"], "bogus"),
    (["no_such_key=1"], "no_such_key"),
    (["data=signaltrain", "data.root=/no/such/dataset"], "/no/such/dataset"),
])
def test_bad_settings(run_cli, clean_failure, tmp_path, args, named):
    res = run_cli(["train_neural.py", f"out_dir={tmp_path}/run", f"dsp_dir={tmp_path}/dsp", "fit_chain=false",
                   *args], cwd=tmp_path)
    clean_failure(res, named)
    assert not (tmp_path / "run").exists()


def test_missing_chain_without_fitting_is_an_error(run_cli, clean_failure, tmp_path):
    res = run_cli(["train_neural.py", f"out_dir={tmp_path}/run", f"dsp_dir={tmp_path}/nothing",
                   "fit_chain=false", "quiet=true", f"data.cache_dir={tmp_path}/cache", "data.corpus.train_seconds=2",
                   "data.corpus.eval_seconds=2", "data.corpus.levels=[100]"], cwd=tmp_path)
    clean_failure(res, "nothing")


def test_out_dir_is_a_file(run_cli, clean_failure, take_snapshot, tmp_path):
    f = tmp_path / "taken"
    f.write_text("keep me")
    before = take_snapshot(f)
    res = run_cli(["train_neural.py", f"out_dir={f}", f"dsp_dir={tmp_path}/dsp", "fit_chain=false"], cwd=tmp_path)
    clean_failure(res, str(f), before=before, watch=(f,))


def test_garbage_resume_checkpoint(run_cli, clean_failure, take_snapshot, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"not a torch checkpoint")
    before = take_snapshot(run)
    res = run_cli(["train_neural.py", f"out_dir={run}", f"dsp_dir={tmp_path}/dsp", "fit_chain=false",
                   f"data.cache_dir={tmp_path}/cache", "data.corpus.train_seconds=2", "data.corpus.eval_seconds=2",
                   "data.corpus.levels=[100]"], cwd=tmp_path)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
