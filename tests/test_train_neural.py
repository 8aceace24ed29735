"""``train_neural.py`` and ``test_comp.py --neural`` as a user runs them, on the tiny chain's
corpus: a short training writes best.pt, last.pt, log.csv and the test table; a rerun
resumes; the checkpoint renders through test_comp.py; bad input ends in one line."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from neural.inference import NeuralRenderer
from support import PLUMBING_CLASS

SR = 44100


def _tiny(cache, dsp_dir, out_dir, *extra):
    return ["train_neural.py", "data.corpus.train_seconds=3.0", "data.corpus.eval_seconds=1.0",
            "data.corpus.levels=[100,90,80]", "data.corpus.modes=[compress,limit]", f"data.cache_dir={cache}",
            f"dsp_dir={dsp_dir}", f"out_dir={out_dir}", "unseen_levels=[90]", "quiet=true",
            "+hyperparameters.width=4", "train.batch_size=2", "train.warmup_s=0.05", "train.segment_s=0.1",
            "train.episode=2", "train.val_every=2", "train.val_seconds=0.5", "train.max_steps=4", "skip_s=0.25",
            PLUMBING_CLASS, *extra]


@pytest.fixture(scope="module")
def chain_reference(tmp_path_factory, chain_cache, run_cli):
    """The tiny chain with the unseen level 90 held out: train_neural.py refuses a DSP fit that saw it."""
    from support import chain_overrides
    ckpt = tmp_path_factory.mktemp("chain-heldout") / "fits"
    res = run_cli(["train_comp.py", *chain_overrides(chain_cache, ckpt), "unseen_levels=[90]"])
    assert res.returncode == 0, res.stderr
    return ckpt


def _log_steps(path):
    with open(path, newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, chain_cache, chain_reference, run_cli):
    out = tmp_path_factory.mktemp("neural") / "run"
    res = run_cli(_tiny(chain_cache, chain_reference, out, "quiet=false"))   # with its progress bar
    assert res.returncode == 0, res.stderr
    return out, res


@pytest.mark.slow
def test_training_writes_checkpoints_log_and_table(trained):
    out, res = trained
    for name in ("best.pt", "last.pt", "log.csv", "test_esr.csv"):
        assert (out / name).is_file(), name
    assert _log_steps(out / "log.csv") == [0, 2, 4]
    with open(out / "test_esr.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["mode"], r["peak_reduction"], r["seen"]) for r in rows} == {
        (m, str(p), str(p != 90)) for m in ("compress", "limit") for p in (100, 90, 80)}
    assert all(float(r["esr_dsp"]) > 0 and float(r["esr_model"]) > 0 for r in rows)
    assert "UNSEEN" in res.stdout and "mean ESR" in res.stdout and "wrote" in res.stdout
    assert "4/4" in res.stderr and "step" in res.stderr   # the bar counts steps, the run's budget, to the end
    r = NeuralRenderer.load(out / "best.pt")
    assert r.variant == "hybrid" and r.record["unseen_levels"] == [90]
    # the hybrid's default conditioning: fitted parameters, switch, then PR / 100
    assert r.record["model"]["conditioning"] == "fitted+knobs"
    assert r.conditioning({"mode": "limit", "peak_reduction": 90})[-2:].tolist() == pytest.approx([1.0, 0.9])
    assert all(pr != 90 for _, pr in r.record["trained_levels"])


def test_rerun_resumes_from_last(trained, chain_cache, chain_reference, run_cli, clean_failure, tmp_path):
    """A rerun resumes from last.pt; a plateau-schedule run may be made longer, a cosine one
    (the default: its learning rate follows max_steps) may not."""
    out, _ = trained
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    res = run_cli(_tiny(chain_cache, chain_reference, copy, "test=false"))
    assert res.returncode == 0, res.stderr
    assert "(resumed)" in res.stdout
    assert _log_steps(copy / "log.csv") == [0, 2, 4]
    res = run_cli(_tiny(chain_cache, chain_reference, copy, "train.max_steps=6", "test=false"))
    clean_failure(res, "train.max_steps", "cosine", "resume=false")
    plateau = tmp_path / "plateau"
    for steps in (4, 6):
        res = run_cli(_tiny(chain_cache, chain_reference, plateau, f"train.max_steps={steps}", "train.schedule=plateau",
                            "test=false"))
        assert res.returncode == 0, res.stderr
    assert "(resumed)" in res.stdout
    assert _log_steps(plateau / "log.csv") == [0, 2, 4, 6]


def test_resume_refuses_changed_settings(trained, chain_cache, chain_reference, run_cli, clean_failure,
                                         take_snapshot, tmp_path):
    """A rerun with other training settings is refused with the changed keys named (it used
    to print "(resumed)" and train with the new batch size but the old learning rate);
    resume=false says plainly that it starts over."""
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    before = take_snapshot(copy)
    res = run_cli(_tiny(chain_cache, chain_reference, copy, "train.batch_size=3", "train.lr=0.1", "test=false"))
    line = clean_failure(res, str(copy / "last.pt"), "train.batch_size", "train.lr", "resume=false",
                         before=before, watch=(copy,))
    assert "train.max_steps" not in line
    res = run_cli(_tiny(chain_cache, chain_reference, copy, "train.batch_size=3", "resume=false", "test=false"))
    assert res.returncode == 0, res.stderr
    assert "starting over" in res.stdout and "(resumed)" not in res.stdout


def test_blackbox_and_a_missing_chain_fitted_first(chain_cache, run_cli, tmp_path):
    dsp = tmp_path / "fits"
    res = run_cli(_tiny(chain_cache, dsp, tmp_path / "bb", "model=lstm", "variant=blackbox", "modes=[compress]",
                        "+hyperparameters.hidden=4", "~hyperparameters.width", "train.max_steps=2"))
    assert res.returncode == 0, res.stderr
    assert "fitting it first" in res.stdout and (dsp / "knobmap.yaml").is_file()
    r = NeuralRenderer.load(tmp_path / "bb" / "best.pt")
    assert r.variant == "blackbox" and r.name == "lstm blackbox"


def test_test_comp_renders_a_neural_checkpoint(trained, run_cli, tmp_path):
    out, _ = trained
    rng = np.random.default_rng(3)
    x = (0.3 * rng.standard_normal((2, SR // 2)) * np.linspace(0.1, 1.0, SR // 2)).astype(np.float32)
    sf.write(str(tmp_path / "in.wav"), x.T, SR, subtype="FLOAT")
    best = out / "best.pt"
    res = run_cli(["test_comp.py", "--neural", best, "in.wav", "a.wav", "--peak-reduction", "85", "--mode", "limit"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "wrote a.wav" in res.stdout
    # the positional checkpoint, recognised by its content
    res = run_cli(["test_comp.py", best, "in.wav", "b.wav", "--peak-reduction", "85", "--mode", "limit",
                   "--block", "1000"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    a, _ = sf.read(str(tmp_path / "a.wav"), dtype="float32", always_2d=True)
    b, _ = sf.read(str(tmp_path / "b.wav"), dtype="float32", always_2d=True)
    np.testing.assert_allclose(a, b, atol=1e-5)
    renderer = NeuralRenderer.load(best)
    proc = renderer.block_processor(SR, {"mode": "limit", "peak_reduction": 85})
    np.testing.assert_allclose(a.T, proc(x), atol=1e-5)


@pytest.mark.parametrize("case", ["model", "variant", "head", "conditioning", "data_root", "train_key"])
def test_bad_training_input(case, run_cli, clean_failure, tmp_path):
    args = {"model": (["model=bogus"], "bogus"), "variant": (["variant=bogus"], "bogus"),
            "head": (["head=blackbox"], "blackbox"),
            "conditioning": (["variant=blackbox", "conditioning=fitted"], "fitted"),
            "data_root": (["data=signaltrain", f"data.root={tmp_path / 'nowhere'}"], "nowhere"),
            "train_key": (["train.lr=fast"], "lr")}[case]
    res = run_cli(["train_neural.py", f"out_dir={tmp_path / 'out'}", *args[0]], cwd=tmp_path)
    clean_failure(res, args[1])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["garbage", "out_of_range", "no_setting"])
def test_bad_neural_render_input(case, trained, run_cli, clean_failure, workspace, tmp_path):
    out, _ = trained
    (tmp_path / "junk.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    src = workspace / "in.wav"
    setting = ["--peak-reduction", "60", "--mode", "compress"]
    args, name = {
        "garbage": (["--neural", tmp_path / "junk.pt", src, tmp_path / "o.wav", *setting], "junk.pt"),
        # 48 kHz renders (resampled); PR 60 lies outside the fitted 80..100: refused, the nearest named
        "out_of_range": (["--neural", out / "best.pt", workspace / "tgt48.wav", tmp_path / "o.wav", *setting],
                         "nearest fitted setting is compress PR 80"),
        "no_setting": (["--neural", out / "best.pt", src, tmp_path / "o.wav"], "--peak-reduction"),
    }[case]
    res = run_cli(["test_comp.py", *args])
    clean_failure(res, name)
    assert not (tmp_path / "o.wav").exists()


# --- bad settings (first written with the lead's bad-input checks) ---------------------
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


def test_garbage_resume_checkpoint(run_cli, clean_failure, take_snapshot, tmp_path, chain_cache, chain_reference):
    """A damaged last.pt is refused with one line naming it. Everything else is in place
    (the shared tiny chain and corpus), so the failure can only be about last.pt."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"not a torch checkpoint")
    before = take_snapshot(run)
    res = run_cli(_tiny(chain_cache, chain_reference, run), cwd=tmp_path)
    clean_failure(res, str(run / "last.pt"), before=before, watch=(run,))


@pytest.mark.slow
def test_crossfit_fits_the_halves_and_trains_on_them(chain_cache, chain_reference, run_cli, tmp_path):
    """crossfit=true: the chains of each take's first and second half are fitted beside the DSP fit
    (Train only, the unseen level held out), and the model records that it trained on them."""
    import shutil

    from audio.devices import la2a_setting
    from dsp.storage.open_fit import load_param_map
    dsp = tmp_path / "fits"
    shutil.copytree(chain_reference, dsp)
    res = run_cli(_tiny(chain_cache, dsp, tmp_path / "run", "crossfit=true", "modes=[compress]",
                        "train.max_steps=2", "test=false"))
    assert res.returncode == 0, res.stderr
    halves = [load_param_map(dsp / "crossfit" / name / "knobmap.yaml", "knobmap") for name in ("first_half", "second_half")]
    assert all(h.protocol["held_out"] == [90] and h.protocol["fit_splits"] == ["Train"] for h in halves)
    first, second = (h.at(la2a_setting("compress", 100)) for h in halves)
    assert first != second   # fitted on different audio
    r = NeuralRenderer.load(tmp_path / "run" / "best.pt")
    assert r.record["crossfit"] is True
