"""The evaluation protocol: fits read Train material only and never an unseen level.

Every audio read during a tiny per-level chain, a tiny joint fit and the
ensure-the-fit of a comparison is recorded (``read_aligned_pair`` wrapped where the
fitting code calls it); the Val/Test scoring that follows a fit (``esr_val``,
``esr_test``, the knob map check) reads through its own module and is not a fit.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

import jobs.chain
import jobs.joint_fit
from common.config import load_config
from common.errors import UserError
from support import (CAPPED_ITERATIONS, CHAIN_LEVELS, CHAIN_MODES, PLUMBING_CLASS, chain_overrides, program,
                     write_wav)
from dsp.storage.open_fit import load_param_map
from jobs.ensure import ensure_dsp_fit
from jobs.fit import run_fit_job

UNSEEN = 90


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("protocol-cache")


def _overrides(cache: Path, ckpt: Path, *extra: str) -> list[str]:
    # Val/Test takes of 2 s: long enough for the 1 s warm-up, so Val selection really runs
    return [*chain_overrides(cache, ckpt), "data.corpus.eval_seconds=2", "knobmap.check_step=0", *extra]


@pytest.fixture
def reads(monkeypatch) -> list[Path]:
    """Targets read by the fitting code (the chain's and the joint fit's read_aligned_pair)."""
    seen: list[Path] = []

    def recorder(original):
        def read_pair(inp, tgt, *a, **k):
            seen.append(Path(tgt))
            return original(inp, tgt, *a, **k)
        return read_pair

    monkeypatch.setattr(jobs.chain, "read_aligned_pair", recorder(jobs.chain.read_aligned_pair))
    monkeypatch.setattr(jobs.joint_fit, "read_aligned_pair", recorder(jobs.joint_fit.read_aligned_pair))
    return seen


@pytest.fixture
def capped_fits(monkeypatch):
    """The fits ensure_dsp_fit starts are capped as the tiny chain's are (``support.CAPPED_ITERATIONS``)."""
    import jobs.ensure
    original = jobs.ensure._run_fit
    monkeypatch.setattr(jobs.ensure, "_run_fit",
                        lambda overrides, data: original([*overrides, CAPPED_ITERATIONS], data))


def _splits(paths) -> set[str]:
    return {p.parent.name for p in paths}


def _check_records(folder: Path, fitted_split_reads: set[str]) -> None:
    assert fitted_split_reads == {"Train"}
    with open(folder / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fitted_rows = [r for r in rows if r["esr"] != ""]
    assert fitted_rows and all(int(r["peak_reduction"]) != UNSEEN for r in fitted_rows)
    assert {"esr_val", "esr_test"} <= set(rows[0])
    kmap = load_param_map(folder / "knobmap.yaml")
    assert kmap.protocol["fit_splits"] == ["Train"] and kmap.protocol["held_out"] == [UNSEEN]
    assert all(UNSEEN not in lv for lv in kmap.protocol["fitted"].values())
    assert not list(folder.rglob(f"pr_{UNSEEN}"))
    # the knob model still answers at the held-out level
    assert all(kmap.at({"mode": m, "peak_reduction": UNSEEN}) for m in kmap.modes)


@pytest.mark.slow
def test_per_level_chain_reads_train_only_and_skips_unseen(tmp_path, cache, reads):
    cfg = load_config("config", _overrides(cache, tmp_path / "pl", f"unseen_levels=[{UNSEEN}]"))
    assert list(cfg.data.fit_splits) == ["Train"]           # the default
    assert run_fit_job(cfg) == 0
    assert reads and all(f"__{UNSEEN}." not in p.name for p in reads)
    _check_records(tmp_path / "pl", _splits(reads))


@pytest.mark.slow
@pytest.mark.slow
def test_joint_opto_fits_the_cells_curves_through_one_set_of_blocks_per_mode(tmp_path, cache, reads, run_cli):
    cfg = load_config("config", _overrides(cache, tmp_path / "jo", "method=joint", "compressor=opto",
                                           f"unseen_levels=[{UNSEEN}]", "joint.candidates=[[2,1e-3]]",
                                           "joint.priors=[1e-3]", "optimiser.max_iterations=5"))
    assert run_fit_job(cfg) == 0
    assert reads and _splits(reads) == {"Train"} and all(f"__{UNSEEN}." not in p.name for p in reads)
    kmap = load_param_map(tmp_path / "jo" / "knobmap.yaml")
    assert kmap.compressor == "opto" and kmap.protocol["held_out"] == [UNSEEN]
    from dsp.models.graybox import BLOCK_NAMES
    from dsp.models.opto import OPTO_NAMES
    for mode in CHAIN_MODES:
        at = [kmap.at({"mode": mode, "peak_reduction": pr}) for pr in CHAIN_LEVELS]
        assert all(set(OPTO_NAMES) <= set(p) for p in at)
        # the blocks: one set per mode at every setting, the held-out one included, fitted (not the start)
        assert all(p[k] == at[0][k] for p in at for k in BLOCK_NAMES)
        assert at[0]["input_shelf_db"] != 0.0 or at[0]["tube_asymmetry"] != 0.0
        # the config's monotone prior: the threshold does not rise with PR
        assert at[0]["threshold_db"] <= at[-1]["threshold_db"] + 1e-6
        assert (at[0]["input_mix"] == 0.0) == (mode == "compress")   # the input tap: limit mode only
    record = yaml.safe_load((tmp_path / "jo" / "joint.yaml").read_text())
    assert all(g["curves"]["space"]["kind"] == "opto" for g in record["groups"].values())
    with open(tmp_path / "jo" / "summary.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["esr"] != ""]
    assert rows and all(r["release_slow_ms"] != "" and r["esr_test"] != "" for r in rows)
    _renders_and_exports(tmp_path / "jo", run_cli, tmp_path)


def test_the_selection_says_each_candidate(capsys):
    say = jobs.joint_fit._print_candidate("limit")
    row = {"size": 4, "smoothness": 1e-3, "prior": 0.0, "val_esr": 0.01234, "iterations": 12, "seconds": 41.6}
    say(row)
    say({**row, "size": 9, "seconds": 0.0, "same_as": 0})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "limit: candidate size 4, smoothness 0.001, prior 0: Val ESR 0.0123, 12 Newton iterations, 42 s"
    assert lines[1].endswith("0 s (same basis as candidate 1)")


def _renders_and_exports(folder: Path, run_cli, tmp_path: Path) -> None:
    """test_comp.py renders a fit folder at a setting between its levels as the API does, and
    export.py exports it (its own check against the Python renderer passing)."""
    import leveller
    import soundfile as sf
    x = program(1.0, seed=3)
    write_wav(tmp_path / "in.wav", x)
    res = run_cli(["test_comp.py", str(folder), "in.wav", "out.wav", "--peak-reduction", "85", "--mode", "compress"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    y = sf.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)[0].T
    ref = leveller.open_fit(folder).render(x.astype("float32"), 44100, {"mode": "compress", "peak_reduction": 85})
    assert abs(y - ref).max() < 1e-6
    res = run_cli(["export.py", str(folder), "model.pt"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "model.pt").is_file()


def test_joint_fit_reads_train_to_fit_val_to_choose(tmp_path, cache, reads, run_cli):
    cfg = load_config("config", _overrides(cache, tmp_path / "joint", "method=joint", f"unseen_levels=[{UNSEEN}]",
                                           "joint.candidates=[[2,1e-3],[3,1e-2]]", "optimiser.max_iterations=5"))
    assert run_fit_job(cfg) == 0
    assert reads and all(f"__{UNSEEN}." not in p.name for p in reads)
    train = [p for p in reads if p.parent.name == "Train"]
    assert len(train) == len(CHAIN_MODES) * (len(CHAIN_LEVELS) - 1)
    assert _splits(reads) <= {"Train"}     # the Val takes go through the scoring path
    _check_records(tmp_path / "joint", _splits(reads))
    with open(tmp_path / "joint" / "summary.csv", newline="") as fh:
        held = {int(r["peak_reduction"]) for r in csv.DictReader(fh) if r["held_out"] == "True"}
    assert held == {UNSEEN}
    record = yaml.safe_load((tmp_path / "joint" / "joint.yaml").read_text())
    assert record["protocol"]["held_out"] == [UNSEEN] and set(record["groups"]) == set(CHAIN_MODES)
    # the config's shape priors reached the fit, and its record says so
    assert all(g["monotone"] == {"threshold_db": "decreasing"} and g["prior"] in cfg.joint.priors
               for g in record["groups"].values())
    assert all({r["prior"] for r in t} == set(cfg.joint.priors) for t in record["selection"].values())
    assert (tmp_path / "joint" / "joint_curves.png").is_file()
    _renders_and_exports(tmp_path / "joint", run_cli, tmp_path)


@pytest.mark.parametrize("setting, message", [
    ("joint.decreasing=[threshold]", "joint: monotone: .*'threshold'"),
    ("joint.increasing=[threshold_db]", "joint: 'threshold_db' is both increasing and decreasing"),
    ("joint.priors=[1e-3,-1]", "joint: prior must be a finite weight >= 0"),
    ("joint.priors=[x]", "joint: could not convert"),
    ("joint.stall=1.5", r"joint: stall must be a fraction in \[0, 1\)"),
    ("joint.stall=abc", "joint: could not convert"),
])
def test_bad_joint_shape_settings_are_refused_before_reading(tmp_path, cache, reads, setting, message):
    cfg = load_config("config", _overrides(cache, tmp_path / "bad", "method=joint", setting))
    with pytest.raises(UserError, match=message):
        run_fit_job(cfg)
    assert not reads and not (tmp_path / "bad").exists()


def test_joint_stall_setting_reaches_the_joint_options(tmp_path, cache):
    from dsp.fitting.ff5 import FitOptions
    from dsp.fitting.joint import JOINT_STALL
    default = load_config("config", _overrides(cache, tmp_path / "a", "method=joint"))
    off = load_config("config", _overrides(cache, tmp_path / "b", "method=joint", "joint.stall=0"))
    assert jobs.joint_fit.joint_options_from_config(default, FitOptions(), {})[0].stall == JOINT_STALL
    assert jobs.joint_fit.joint_options_from_config(off, FitOptions(), {})[0].stall == 0.0


@pytest.mark.slow
def test_ensure_fits_without_unseen_and_refuses_a_fit_that_saw_them(tmp_path, cache, reads, capped_fits):
    cfg = load_config("compare", [f"data.cache_dir={cache}", "data.corpus.train_seconds=3", PLUMBING_CLASS,
                                  "data.corpus.eval_seconds=2", f"data.corpus.levels=[{','.join(map(str, CHAIN_LEVELS))}]",
                                  f"data.corpus.modes=[{','.join(CHAIN_MODES)}]"])
    kmap = ensure_dsp_fit(cfg.data, tmp_path / "held", quiet=True, modes=list(CHAIN_MODES), unseen=[UNSEEN])
    assert reads and _splits(reads) == {"Train"} and all(f"__{UNSEEN}." not in p.name for p in reads)
    assert kmap.protocol["held_out"] == [UNSEEN]
    # a production fit (nothing held out) is refused for a comparison holding 90 out
    full = load_config("config", _overrides(cache, tmp_path / "full"))
    assert run_fit_job(full) == 0
    with pytest.raises(UserError, match=r"fitted at the unseen level\(s\) \[90\].*unseen_levels=\[90\]"):
        ensure_dsp_fit(cfg.data, tmp_path / "full", fit=False, unseen=[UNSEEN])
    # ... and so is one that read Val or Test, or one whose record does not say
    rec = yaml.safe_load((tmp_path / "full" / "knobmap.yaml").read_text())
    rec["protocol"] = {**rec["protocol"], "fit_splits": ["Train", "Val"], "fitted": {}}
    (tmp_path / "full" / "knobmap.yaml").write_text(yaml.safe_dump(rec))
    with pytest.raises(UserError, match="read Val material"):
        ensure_dsp_fit(cfg.data, tmp_path / "full", fit=False, unseen=[])
    del rec["protocol"]
    (tmp_path / "full" / "knobmap.yaml").write_text(yaml.safe_dump(rec))
    with pytest.raises(UserError, match="does not record which splits"):
        ensure_dsp_fit(cfg.data, tmp_path / "full", fit=False, unseen=[])
    # asking the DSP fit to read Val is refused before anything runs
    cfg.data.fit_splits = ["Train", "Val"]
    with pytest.raises(UserError, match="data.fit_splits"):
        ensure_dsp_fit(cfg.data, tmp_path / "other", unseen=[UNSEEN])
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_ensure_refits_a_map_made_on_other_material(tmp_path, cache, capped_fits):
    def data(seed):
        return load_config("compare", [f"data.cache_dir={cache}", "data.corpus.train_seconds=3", PLUMBING_CLASS,
                                       "data.corpus.eval_seconds=2", f"data.corpus.seed={seed}",
                                       f"data.corpus.levels=[{','.join(map(str, CHAIN_LEVELS))}]",
                                       f"data.corpus.modes=[{CHAIN_MODES[0]}]"]).data
    folder = tmp_path / "fits"
    first = ensure_dsp_fit(data(0), folder, quiet=True, modes=[CHAIN_MODES[0]], unseen=[UNSEEN])
    # the same material: reused as it is
    again = ensure_dsp_fit(data(0), folder, fit=False, modes=[CHAIN_MODES[0]], unseen=[UNSEEN])
    assert again.protocol["data_key"] == first.protocol["data_key"]
    # another corpus (seed 9) in the same folder: refused without fitting, refitted with
    with pytest.raises(UserError, match="fitted on other material"):
        ensure_dsp_fit(data(9), folder, fit=False, modes=[CHAIN_MODES[0]], unseen=[UNSEEN])
    refit = ensure_dsp_fit(data(9), folder, quiet=True, modes=[CHAIN_MODES[0]], unseen=[UNSEEN])
    assert refit.protocol["data_key"] != first.protocol["data_key"]
    pr = max(CHAIN_LEVELS)
    assert refit.at({"mode": CHAIN_MODES[0], "peak_reduction": pr}) != first.at({"mode": CHAIN_MODES[0], "peak_reduction": pr})


@pytest.mark.slow
def test_joint_graybox_shares_one_set_of_blocks_per_mode(tmp_path, cache, run_cli):
    cfg = load_config("config", _overrides(cache, tmp_path / "jgb", "method=joint", "compressor=graybox",
                                           f"unseen_levels=[{UNSEEN}]", "joint.candidates=[[2,1e-3]]",
                                           "optimiser.max_iterations=5"))
    assert run_fit_job(cfg) == 0
    kmap = load_param_map(tmp_path / "jgb" / "knobmap.yaml")
    assert kmap.compressor == "graybox"
    from dsp.models.graybox import BLOCK_NAMES
    for mode in CHAIN_MODES:
        at = [kmap.at({"mode": mode, "peak_reduction": pr}) for pr in CHAIN_LEVELS]
        # the blocks are the same at every setting, the held-out one included, and not the start
        assert all(p[k] == at[0][k] for p in at for k in BLOCK_NAMES)
        assert at[0]["input_shelf_db"] != 0.0 or at[0]["tube_asymmetry"] != 0.0
    with open(tmp_path / "jgb" / "summary.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["esr"] != ""]
    assert rows and all(r["tube_drive"] != "" for r in rows)
    _renders_and_exports(tmp_path / "jgb", run_cli, tmp_path)
