"""The chain's reliability: a rerun skips finished levels and refits missing or damaged
ones, a killed run resumes to the same result as an uninterrupted one, and the same
config gives the same parameters bit for bit."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from common.locks import LOCK_NAME
from support import program, write_wav
from jobs.chain import SUMMARY_COLUMNS
from dsp.models.parameters import PARAM_NAMES

ROOT = Path(__file__).resolve().parents[2]
FIT_KEYS = ("params", "esr", "loss", "iterations", "converged", "initial_params")


def _ckpts(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("ckpt.yaml"))}


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _fit_part(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    return {k: data[k] for k in FIT_KEYS}


def test_rerun_refits_only_the_missing_level(run_cli, chain_reference, chain_args, read_summary, tmp_path):
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    ckpts = _ckpts(fits)
    gone = "compress/pr_90/ckpt.yaml"
    ckpts.pop(gone).unlink()
    (fits / "summary.csv").unlink()
    kept = {k: (p.read_bytes(), p.stat().st_mtime_ns) for k, p in ckpts.items()}
    res = run_cli(["train_comp.py", *chain_args(fits)])
    assert res.returncode == 0, res.stderr
    # the skipped levels were only read; the missing one was fitted again, identically
    assert {k: (p.read_bytes(), p.stat().st_mtime_ns) for k, p in ckpts.items()} == kept
    assert _fit_part(fits / gone) == _fit_part(chain_reference / gone)
    ref = read_summary(chain_reference / "summary.csv")
    new = read_summary(fits / "summary.csv")
    assert _without_seconds(new) == _without_seconds(ref)
    # seconds of a skipped level come from its checkpoint: unchanged
    assert [r["seconds"] for r in new if r["peak_reduction"] != "90" or r["mode"] != "compress"] == \
        [r["seconds"] for r in ref if r["peak_reduction"] != "90" or r["mode"] != "compress"]


def test_damaged_checkpoint_is_refitted(run_cli, chain_reference, chain_args, read_summary, tmp_path):
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    bad = fits / "limit" / "pr_80" / "ckpt.yaml"
    bad.write_text("params: [half-written\n")
    res = run_cli(["train_comp.py", *chain_args(fits)])
    assert res.returncode == 0, res.stderr
    assert "refitting" in res.stderr and "Traceback" not in res.stderr
    assert _fit_part(bad) == _fit_part(chain_reference / "limit" / "pr_80" / "ckpt.yaml")
    assert _without_seconds(read_summary(fits / "summary.csv")) == \
        _without_seconds(read_summary(chain_reference / "summary.csv"))


def test_rerun_with_another_init_is_refused(run_cli, chain_reference, chain_args, clean_failure, take_snapshot,
                                            tmp_path):
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    before = take_snapshot(fits)
    res = run_cli(["train_comp.py", *chain_args(fits), "init=default"])
    clean_failure(res, "init=chain", "init=default", before=before, watch=(fits,))


def test_a_copied_chain_on_another_corpus_is_refitted(run_cli, chain_reference, chain_args, read_summary,
                                                      tmp_path):
    """The fits of a copied checkpoint folder are keyed by their data: rerun on another
    corpus (the same level names, other audio), every level is refitted with a note, and
    summary.csv and knobmap.yaml hold the fresh fits only (they used to be rewritten from
    the old fits, every level "done before")."""
    from dsp.storage.records import load_checkpoint
    from dsp.storage.open_fit import load_param_map
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    old = {name: _fit_part(path) for name, path in _ckpts(fits).items()}
    res = run_cli(["train_comp.py", *chain_args(fits), "data.corpus.seed=9", "data.corpus.train_seconds=2.5"])
    assert res.returncode == 0, res.stderr
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note: refitting")]
    assert len(notes) == len(old) and all("input file" in ln for ln in notes), res.stderr
    kmap = load_param_map(fits / "knobmap.yaml")
    for name, path in _ckpts(fits).items():
        record = load_checkpoint(path)
        assert _fit_part(path) != old[name], name
        assert record["fit_key"]["input"]["digest"] != yaml.safe_load(
            (chain_reference / name).read_text())["fit_key"]["input"]["digest"]
        mode, level = name.split("/")[:2]
        assert kmap.table[mode][int(level[3:])] == record["params"]
    summary = {(r["mode"], r["peak_reduction"]): float(r["esr"]) for r in read_summary(fits / "summary.csv")}
    assert summary == pytest.approx({(n.split("/")[0], n.split("/")[1][3:]): load_checkpoint(p)["esr"]
                                     for n, p in _ckpts(fits).items()}, rel=1e-5)
    # the same run again: everything is reused, nothing refitted
    again = run_cli(["train_comp.py", *chain_args(fits), "data.corpus.seed=9", "data.corpus.train_seconds=2.5"])
    assert again.returncode == 0 and "refitting" not in again.stderr, again.stderr


def test_another_setting_refits_with_a_note(run_cli, chain_reference, chain_args, tmp_path):
    """A setting that changes the result (here the frame overlap) refits; the note names it."""
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    res = run_cli(["train_comp.py", *chain_args(fits), "modes=[compress]", "levels=[100]", "data.overlap_s=0.5",
                   "knobmap.check_step=0"])
    assert res.returncode == 0, res.stderr
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note: refitting")]
    assert len(notes) == 1 and "overlap_s" in notes[0], res.stderr


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(run_cli, chain_reference, chain_args, read_summary,
                                                        tmp_path):
    fits = tmp_path / "fits"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_comp.py"), *chain_args(fits)], cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (fits.exists() and _ckpts(fits)):
            assert proc.poll() is None, "the chain ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _ckpts(fits)
    total = len(_ckpts(chain_reference))
    assert 1 <= len(done) < total, f"killed too late to test anything ({len(done)} of {total} levels done)"
    assert not (fits / "summary.csv").exists()
    # nothing half-written: every file there is a complete checkpoint (and the killed run's
    # writer lock, free again: the next run takes it over)
    for path in fits.rglob("*"):
        assert path.is_dir() or path.name in ("ckpt.yaml", LOCK_NAME), path
    for name, path in done.items():
        assert _fit_part(path) == _fit_part(chain_reference / name)
    res = run_cli(["train_comp.py", *chain_args(fits)])
    assert res.returncode == 0, res.stderr
    ref = read_summary(chain_reference / "summary.csv")
    new = read_summary(fits / "summary.csv")
    assert list(new[0]) == SUMMARY_COLUMNS + ["esr_val", "esr_test", "converged", "at_bound"]
    assert not (fits / LOCK_NAME).exists()
    assert _without_seconds(new) == _without_seconds(ref)
    for name in _ckpts(chain_reference):
        assert _fit_part(fits / name) == _fit_part(chain_reference / name)


def test_same_config_same_parameters(chain_reference, chain_args, tmp_path):
    """The chain run in this process from the same config matches the CLI run bit for bit."""
    from audio.datasets import fit_pair_finder, load_pairs
    from common.config import load_config
    from jobs.chain import ChainSpec, run_chain
    from dsp.storage.records import load_checkpoint
    from jobs.fit_options import fit_options, initial_params

    cfg = load_config("config", [*chain_args(tmp_path / "fits"), "modes=[compress]", "levels=[100,90]"])
    options = fit_options(cfg)
    spec = ChainSpec(["compress"], [100, 90], "chain", initial_params(cfg, options.ranges))
    rows = run_chain(fit_pair_finder(load_pairs(cfg.data, quiet=True), cfg.data), tmp_path / "fits", spec, options)
    assert [(r["mode"], r["peak_reduction"]) for r in rows] == [("compress", 100), ("compress", 90)]
    for r in rows:
        ref = load_checkpoint(chain_reference / "compress" / f"pr_{r['peak_reduction']}" / "ckpt.yaml")
        assert {k: r[k] for k in PARAM_NAMES} == ref["params"]
        assert (r["esr"], r["iterations"]) == (ref["esr"], ref["iterations"])


@pytest.mark.slow
def test_the_chain_writes_a_fit_report_that_a_browser_shows(chain_reference, chain_settings, read_summary, tmp_path):
    """report.html in the chain's folder: the summary table (one row per level), the knob
    curves, and per fitted setting the input, target, fit and error players and a gain
    trace, checked in headless Chromium (tests/browser.py); its audio decodes with libsndfile."""
    import soundfile as sf
    from browser import check_page
    page = chain_reference / "report.html"
    text = page.read_text()
    rows = read_summary(chain_reference / "summary.csv")
    levels = [(m, pr) for m in chain_settings["modes"] for pr in chain_settings["levels"]]
    assert len(rows) == len(levels)
    for mode, pr in levels:
        assert f"{mode} PR {pr}" in text
    assert "knobmap.png" in text and (chain_reference / "knobmap.png").is_file()
    found = check_page(page, tmp_path / "shots", {"summary-as-summary-csv": [len(rows)]}, name="fit")
    assert len(found["audio"]) == 4 * len(levels)        # input, target, fit, error per setting
    assert len(found["images"]) == 1 + len(levels)       # the knob map, a gain trace per setting
    for flac in (chain_reference / "report_files").glob("*.flac"):
        info = sf.info(str(flac))
        assert info.format == "FLAC" and info.subtype == "PCM_16" and info.frames > 0
def _start_chain(chain_args, fits: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train_comp.py"), *chain_args(fits), *extra],
                            cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)


def _wait_for(condition, proc, what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_second_run_into_the_folder_is_refused_naming_the_first(run_cli, chain_reference, chain_args,
                                                                   clean_failure, tmp_path):
    """One writer per output folder: while a run writes there, another (here with other
    ranges, which would refit every level) is refused with one line naming the first."""
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    first = _start_chain(chain_args, fits, tmp_path, "compressor.ranges.ratio=[1,5]")
    try:
        _wait_for(lambda: (fits / LOCK_NAME).is_file() and (fits / LOCK_NAME).stat().st_size > 0, first, "its lock")
        res = run_cli(["train_comp.py", *chain_args(fits)], cwd=tmp_path)
        clean_failure(res, "fits", "another run", "train_comp.py", f"process {first.pid}")
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_a_killed_refit_leaves_no_map_that_disagrees_with_its_levels(run_cli, chain_reference, chain_args,
                                                                     clean_failure, tmp_path):
    """A refit with other settings into a finished folder, killed once its first new level is
    written: the old knob map is gone (not silently rendered), and the rerun completes it."""
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    old = {name: path.read_bytes() for name, path in _ckpts(fits).items()}
    proc = _start_chain(chain_args, fits, tmp_path, "compressor.ranges.ratio=[1,5]")
    try:
        _wait_for(lambda: any(p.read_bytes() != old[n] for n, p in _ckpts(fits).items() if p.is_file()), proc,
                  "a refitted level")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (fits / "knobmap.yaml").exists() and not (fits / "summary.csv").exists()
    write_wav(tmp_path / "in.wav", program(0.5, seed=3))
    res = run_cli(["test_comp.py", str(fits), "in.wav", "out.wav", "--peak-reduction", "90", "--mode", "compress"],
                  cwd=tmp_path)
    clean_failure(res, "fits", "fit not found")
    res = run_cli(["train_comp.py", *chain_args(fits), "compressor.ranges.ratio=[1,5]"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    kmap = yaml.safe_load((fits / "knobmap.yaml").read_text())
    assert all(p["ratio"] <= 5.0 for lv in kmap["modes"].values() for p in lv.values())
