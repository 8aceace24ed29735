"""``compare.py`` as a user runs it: on a tiny corpus it fits what is missing, reuses a
trained model, and writes the CSV, the markdown and four plots with finite metrics;
bad input ends in one ``error:`` line."""
from __future__ import annotations

import csv
import math

import pytest

from report.evaluate import columns
from support import CAPPED_ITERATIONS, PLUMBING_CLASS

LEVELS = "[100,90,80]"


def _tiny(cache, extra=()):
    return [f"data.cache_dir={cache}", "data.corpus.train_seconds=3", "data.corpus.eval_seconds=2",
            f"data.corpus.levels={LEVELS}", "quiet=true", PLUMBING_CLASS, *extra]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, run_cli):
    tmp = tmp_path_factory.mktemp("compare")
    cache, dsp_dir, runs = tmp / "cache", tmp / "dsp", tmp / "runs"
    # the DSP fit the models and the comparison use, Train only, 90 held out, capped
    res = run_cli(["train_comp.py", f"ckpt_dir={dsp_dir}", f"levels={LEVELS}", "unseen_levels=[90]",
                   CAPPED_ITERATIONS, *_tiny(cache)], cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    # a tiny hybrid model (a few steps: the plumbing, not the accuracy, is under test)
    res = run_cli(["train_neural.py", "model=s6", "variant=hybrid", f"out_dir={runs}/s6_hybrid",
                   f"dsp_dir={dsp_dir}", "unseen_levels=[90]", "train.max_steps=2", "train.val_every=1", "train.val_warmup_s=0.25",
                   "train.val_seconds=1.5", "train.episode=2", "train.warmup_s=0.5",
                   "test=false", *_tiny(cache)], cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp / "report"
    # three models are missing: compare trains them (one after another, in its own process:
    # joblib's n_jobs=1; tests/jobs/test_multirun.py runs jobs side by side) with the given overrides
    tiny = ["train.max_steps=2", "train.val_every=1", "train.val_warmup_s=0.25", "train.val_seconds=1.5",
            "train.episode=2", "train.warmup_s=0.5", "test=false", "unseen_levels=[90]"]
    tiny_training = "[" + ",".join(f"'{o}'" for o in tiny) + "]"
    res = run_cli(["compare.py", f"out_dir={out}", f"dsp_dir={dsp_dir}", f"runs_dir={runs}", "models=[s6,lstm]",
                   "variants=[hybrid,blackbox]", "unseen_levels=[90]", "plots.peak_reduction=90",
                   f"train_overrides={tiny_training}", "train_jobs=1", "rtf_seconds=0.25", "dsp_fits=[]", *_tiny(cache)],
                  cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return out, res


@pytest.mark.slow
def test_compare_writes_csv_markdown_and_plots(compared):
    out, res = compared
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert list(rows[0]) == columns()
    kinds = {(r["model"], r["kind"]) for r in rows}
    assert kinds == {("ff5", "dsp"), ("ff5", "dsp-interp"), ("s6", "hybrid"), ("s6", "blackbox"),
                     ("lstm", "hybrid"), ("lstm", "blackbox")}
    # every level of both modes, once per model
    assert len(rows) == 6 * 2 * 3
    assert {r["split"] for r in rows if r["peak_reduction"] == "90"} == {"unseen"}
    for r in rows:
        for k in ("esr", "mae", "stft", "lufs_diff", "loudness_dynamics", "gr_trajectory", "rtf_256", "params"):
            assert math.isfinite(float(r[k])), (k, r)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 4 and all((out / p).stat().st_size > 10_000 for p in pngs)
    md = (out / "compare.md").read_text()
    assert "| model |" in md and all(p in md for p in pngs)
    # the per-level tables: one per mode, the unseen level starred, a line per series
    for mode in ("compress", "limit"):
        table = md.split(f"## ESR per level, {mode}")[1].split("##")[0]
        assert "| 100 | 90* | 80 |" in table and table.count("\n| ") == 1 + 6
    assert "ESR seen" in res.stdout   # the summary table is printed
    summary = md.split("## Summary")[1].split("##")[0]
    assert "LD err LU" in summary and "GR traj dB" in summary   # the dynamics metrics beside ESR
    # the missing models were trained by compare.py through the launcher, their messages kept
    # in the jobs' folders under out_dir/trainings
    runs = out.parent / "runs"
    for name in ("s6_blackbox", "lstm_hybrid", "lstm_blackbox"):
        assert (runs / name / "best.pt").is_file()
    assert len(list((out / "trainings").glob("*/job.out"))) == 3   # s6_hybrid trained before: reused


@pytest.mark.slow
def test_compare_hybrid_starts_as_the_dsp_model(compared):
    """Two training steps barely move a zero-initialised correction: the hybrid's ESR
    stays close to the DSP model's, a check that both are rendered the same way."""
    out, _ = compared
    rows = list(csv.DictReader((out / "compare.csv").open()))
    dsp = {(r["mode"], r["peak_reduction"]): float(r["esr"]) for r in rows if r["kind"] == "dsp"}
    hyb = {(r["mode"], r["peak_reduction"]): float(r["esr"]) for r in rows if r["kind"] == "hybrid" and r["model"] == "s6"}
    for key, e in dsp.items():
        assert hyb[key] == pytest.approx(e, rel=0.5, abs=0.01), key


@pytest.mark.slow
def test_a_registered_metric_reaches_the_csv_and_the_markdown(compared):
    """Adding a metric is one function and one registration (docs/ARCHITECTURE.md)."""
    import numpy as np
    from audio.metrics import METRICS, register_metric
    from common.config import load_config
    from jobs.compare import run_compare
    out, _ = compared
    tmp = out.parent

    @register_metric("peak_error", "peak err", ".3g", "largest absolute sample difference")
    def peak_error(pred, target, sample_rate, skip=0):
        return float(np.max(np.abs(np.asarray(pred)[skip:] - np.asarray(target)[skip:])))

    try:
        args = [f"out_dir={tmp / 'with_metric'}", f"dsp_dir={tmp / 'dsp'}", "models=[]", "train_missing=false",
                "unseen_levels=[90]", "plots.peak_reduction=90", "rtf_seconds=0.1", "dsp_fits=[]",
                *_tiny(tmp / "cache")]
        assert run_compare(load_config("compare", args), args) == 0
    finally:
        METRICS.pop("peak_error")
    rows = list(csv.DictReader((tmp / "with_metric" / "compare.csv").open()))
    assert all(math.isfinite(float(r["peak_error"])) and float(r["peak_error"]) > 0 for r in rows)
    md = (tmp / "with_metric" / "compare.md").read_text()
    summary = md.split("## Summary")[1].split("##")[0]
    assert "peak err" in summary.splitlines()[2]          # a column of the summary table
    page = (tmp / "with_metric" / "report.html").read_text()
    assert page.count("<th class=\"num\">peak err</th>") >= 3   # the page's summary, every-row and setting tables


@pytest.mark.parametrize("args, named, fresh", [
    (["bogus_key=1"], "bogus_key", True),            # compare.py once in a new interpreter
    (["data.root=/no/such/folder"], "/no/such/folder", False),
    (["rtf_seconds=0"], "rtf_seconds", False),
    (["rtf_seconds=abc"], "rtf_seconds", False),
    (["report.settings=some"], "report.settings", False),
    (["report.excerpt_s=0"], "report.excerpt_s", False),
])
def test_compare_bad_settings(run_cli, clean_failure, tmp_path, args, named, fresh):
    res = run_cli(["compare.py", f"out_dir={tmp_path}/out", "train_missing=false", *args], cwd=tmp_path, fresh=fresh)
    clean_failure(res, named)
    assert not (tmp_path / "out").exists()


def test_compare_out_dir_is_a_file(run_cli, clean_failure, take_snapshot, tmp_path):
    f = tmp_path / "taken"
    f.write_text("keep me")
    before = take_snapshot(f)
    res = run_cli(["compare.py", f"out_dir={f}", "train_missing=false"], cwd=tmp_path)
    clean_failure(res, str(f), before=before, watch=(f,))


@pytest.mark.slow
def test_the_comparison_page_in_a_browser(compared, tmp_path):
    """report.html beside compare.csv: every model of compare.csv in its table (one row per
    model and setting), each held-out setting with its own table (one row per model) and
    excerpt players for the input, the target and every model's output and error, checked in
    headless Chromium (tests/browser.py); its audio decodes with libsndfile too."""
    import soundfile as sf
    from browser import check_page
    out, res = compared
    rows = list(csv.DictReader((out / "compare.csv").open()))
    models = {(r["model"], r["kind"]) for r in rows}
    held = sorted({(r["mode"], r["peak_reduction"]) for r in rows if r["split"] == "unseen"})
    page = out / "report.html"
    assert f"wrote {page}" in res.stdout
    text = page.read_text()
    for model, kind in models:
        assert f"{model} {kind}" in text
    found = check_page(page, tmp_path / "shots", {"rows": [len(rows)], "setting": [len(models)] * len(held)},
                       name="compare")
    # per held-out setting and excerpt: input, target, every output and every error
    excerpts = text.count("<h3>Excerpt ")
    assert excerpts >= len(held) and len(found["audio"]) == excerpts * (2 + 2 * len(models))
    for p in ("esr_vs_pr.png", "knobmap.png", "drum_hit.png", "sweep_spectrograms.png"):
        assert f'src="{p}"' in text
    for flac in (out / "report_files").glob("*.flac"):
        assert sf.info(str(flac)).format == "FLAC"
