"""A device with arbitrary knobs, end to end: a manifest corpus rendered with the digital
compressor at 8 knob settings (threshold, ratio, attack, release), its per-row DSP fits
(``train_comp.py data=manifest``), a tiny hybrid and a tiny black box trained on it
(``train_neural.py data=manifest``), rendered at a knob setting (``NeuralRenderer`` and
``test_comp.py --knob``), and ``compare.py data=manifest``; bad input ends in one line."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from audio.material import synthesize
from dsp.models.ff5_streaming import StreamingCompressor
from report.evaluate import columns
from tests.conftest import write_wav

pytestmark = pytest.mark.slow  # end to end: fits, trainings and a comparison on a manifest

SR = 44100
KNOBS = ("threshold", "ratio", "attack", "release")
# 8 settings of a digital compressor; the first 6 are trained at (and fitted), the last 2 are new
SETTINGS = [(-30, 2, 1, 50), (-30, 6, 10, 300), (-20, 2, 10, 300), (-20, 6, 1, 50),
            (-25, 4, 3, 100), (-35, 3, 5, 200), (-28, 5, 2, 80), (-22, 3, 8, 250)]
TRAIN, VAL, TEST = SETTINGS[:6], [SETTINGS[0], SETTINGS[4]], [SETTINGS[1], SETTINGS[3], SETTINGS[6], SETTINGS[7]]
TINY = ["+hyperparameters.width=4", "train.batch_size=2", "train.warmup_s=0.05", "train.segment_s=0.1",
        "train.episode=2", "train.val_every=2", "train.val_seconds=0.5", "train.max_steps=2", "quiet=true"]


def _device(x: np.ndarray, knobs: tuple) -> np.ndarray:
    t, r, a, rel = knobs
    params = {"threshold_db": t, "ratio": r, "attack_ms": a, "release_ms": rel, "make_up_db": 0.0}
    return StreamingCompressor(params, SR).process(x[None, :].astype(np.float32))[0]


def write_manifest(folder, rows, name="manifest.csv", knobs=KNOBS) -> str:
    """``rows``: ``(split, knob values, seconds, seed)``; writes the pairs and the CSV."""
    lines = [",".join(("split", "input", "target", *knobs))]
    for i, (split, setting, seconds, seed) in enumerate(rows):
        x = synthesize(seconds, SR, seed=seed).astype(np.float32)
        x *= 0.9 / max(float(np.max(np.abs(x))), 1e-9)   # loud enough for every threshold
        inp, tgt = f"audio/{i:02d}_in.wav", f"audio/{i:02d}_target.wav"
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        write_wav(folder / inp, x[None, :])
        write_wav(folder / tgt, _device(x, setting)[None, :])
        lines.append(",".join([split, inp, tgt, *(f"{v:g}" for v in setting[:len(knobs)])]))
    (folder / name).write_text("\n".join(lines) + "\n")
    return str(folder / name)


def _rows():
    return ([("Train", s, 2.0, 10 + i) for i, s in enumerate(TRAIN)] + [("Val", s, 1.0, 30 + i) for i, s in enumerate(VAL)]
            + [("Test", s, 2.0, 50 + i) for i, s in enumerate(TEST)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, run_cli):
    tmp = tmp_path_factory.mktemp("manifest")
    path = write_manifest(tmp, _rows())
    data = ["data=manifest", f"data.path={path}"]
    res = run_cli(["train_comp.py", *data, f"ckpt_dir={tmp / 'fits'}", "quiet=true"])
    assert res.returncode == 0, res.stderr
    assert len(list((tmp / "fits" / "rows").glob("*/ckpt.yaml"))) == len(TRAIN)
    runs = tmp / "runs"
    trained = {}
    # the black box finds no fits in its dsp_dir: it runs the manifest fit job first
    for model, variant, fits, extra in (
            ("s6", "hybrid", "fits", []),
            ("lstm", "blackbox", "fits_auto", ["+hyperparameters.hidden=4", "~hyperparameters.width"])):
        res = run_cli(["train_neural.py", *data, f"model={model}", f"variant={variant}", f"dsp_dir={tmp / fits}",
                       f"out_dir={runs / f'{model}_{variant}'}", *TINY, *extra])
        assert res.returncode == 0, res.stderr
        trained[variant] = res
    assert "fitting them first" in trained["blackbox"].stdout and "fitting" not in trained["hybrid"].stdout
    assert len(list((tmp / "fits_auto" / "rows").glob("*/ckpt.yaml"))) == len(TRAIN)
    return tmp, data, runs, trained


def _settings_of(rows):
    return {tuple(float(r[k]) for k in KNOBS) for r in rows}


def test_training_writes_a_table_per_test_setting(corpus):
    tmp, _, runs, trained = corpus
    for run, variant in ((runs / "s6_hybrid", "hybrid"), (runs / "lstm_blackbox", "blackbox")):
        for name in ("best.pt", "last.pt", "log.csv", "test_esr.csv"):
            assert (run / name).is_file(), name
        rows = list(csv.DictReader((run / "test_esr.csv").open()))
        assert list(rows[0]) == [*KNOBS, "seen", "esr_dsp", "esr_model"]
        assert _settings_of(rows) == {tuple(map(float, s)) for s in TEST}
        assert {r["seen"] for r in rows if tuple(float(r[k]) for k in KNOBS) in {tuple(map(float, s)) for s in TRAIN}} \
            == {"True"}
        assert sum(r["seen"] == "False" for r in rows) == 2
        assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for r in rows for k in ("esr_dsp", "esr_model"))
        out = trained[variant].stdout
        assert "NEW" in out and "trained" in out and "model/DSP" in out and "release" in out


def test_checkpoint_renders_at_any_knob_setting(corpus, run_cli):
    from neural.inference import NeuralRenderer
    from common.errors import UserError
    tmp, _, runs, _ = corpus
    r = NeuralRenderer.load(runs / "s6_hybrid" / "best.pt")
    assert r.knobs == list(KNOBS) and r.variant == "hybrid"
    assert r.record["model"]["conditioning"] == "fitted+knobs" and r.record["model"]["cond_dim"] == 9
    x = synthesize(0.5, SR, seed=3).astype(np.float32)
    fitted = dict(zip(KNOBS, map(float, TRAIN[2])))
    near = {**fitted, "release": 290.0}  # never fitted: the nearest fitted setting's DSP parameters
    assert r.dsp_params(near) == r.dsp_params(fitted)
    y = r.render(x, SR, near)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    proc = r.block_processor(SR, near)  # block by block as offline
    np.testing.assert_allclose(np.concatenate([proc(x[None, i:i + 1000])[0] for i in range(0, len(x), 1000)]),
                               y, atol=1e-5)
    with pytest.raises(UserError, match="does not match the knobs"):
        r.render(x, SR, {"mode": "compress", "peak_reduction": 50})
    with pytest.raises(UserError, match="missing release"):
        r.render(x, SR, {k: v for k, v in near.items() if k != "release"})
    with pytest.raises(UserError, match="far outside"):
        r.render(x, SR, {**near, "ratio": 60.0})
    # and from the command line
    write_wav(tmp / "probe.wav", x[None, :])
    knob_args = [a for k, v in near.items() for a in ("--knob", f"{k}={v:g}")]
    res = run_cli(["test_comp.py", "--neural", runs / "s6_hybrid" / "best.pt", tmp / "probe.wav", tmp / "o.wav",
                   *knob_args])
    assert res.returncode == 0, res.stderr
    assert "release 290" in res.stdout and (tmp / "o.wav").is_file()


@pytest.fixture(scope="module")
def compared(corpus, run_cli):
    tmp, data, runs, _ = corpus
    out = tmp / "report"
    res = run_cli(["compare.py", *data, f"out_dir={out}", f"dsp_dir={tmp / 'fits'}", f"runs_dir={runs}",
                   "models=[s6,lstm]", "variants=[hybrid,blackbox]", "train_missing=false", "skip_s=0.5", "rtf_seconds=0.25",
                   "quiet=true"])
    assert res.returncode == 0, res.stderr
    return out, res


def test_compare_by_knob_setting(compared):
    out, res = compared
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert list(rows[0]) == columns() + list(KNOBS)
    series = {("ff5", "dsp"), ("ff5", "dsp-nearest"), ("s6", "hybrid"), ("lstm", "blackbox")}
    assert {(r["model"], r["kind"]) for r in rows} == series
    assert len(rows) == len(series) * len(TEST)
    for model, kind in series:
        sel = [r for r in rows if (r["model"], r["kind"]) == (model, kind)]
        assert _settings_of(sel) == {tuple(map(float, s)) for s in TEST}
    assert {r["mode"] for r in rows} == {"manifest"} and {r["peak_reduction"] for r in rows} == {""}
    assert sum(r["split"] == "unseen" for r in rows) == 2 * len(series)
    for r in rows:
        for k in ("esr", "mae", "stft", "lufs_diff", "rtf_256", "params"):
            assert math.isfinite(float(r[k])), (k, r)
    # at a fitted setting the DSP model is the true compressor: its fit is close to exact
    dsp_seen = [float(r["esr"]) for r in rows if r["kind"] == "dsp" and r["split"] == "seen"]
    assert max(dsp_seen) < 0.05
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["drum_hit.png", "esr_by_setting.png", "sweep_spectrograms.png"]
    md = (out / "compare.md").read_text()
    assert "## ESR by knob setting" in md and "| threshold |" in md and all(p in md for p in pngs)
    assert "ESR s6 hybrid" in res.stdout and "ESR seen" in res.stdout
    assert "skipping s6 blackbox" in res.stdout


# --- bad input ------------------------------------------------------------------------
def test_compare_refuses_a_model_of_other_knobs(corpus, run_cli, clean_failure, tmp_path):
    tmp, _, runs, _ = corpus
    # the same audio, described with two knobs only (threshold, ratio): another device
    lines = (tmp / "manifest.csv").read_text().splitlines()
    two = [",".join(line.split(",")[:5]) for line in lines]
    (tmp / "two_knobs.csv").write_text("\n".join(two) + "\n")
    res = run_cli(["compare.py", "data=manifest", f"data.path={tmp / 'two_knobs.csv'}", f"out_dir={tmp_path / 'out'}",
                   f"dsp_dir={tmp_path / 'fits'}", f"runs_dir={runs}", "models=[s6]", "variants=[hybrid]",
                   "train_missing=false", "quiet=true"])
    clean_failure(res, "best.pt", "threshold, ratio")
    assert not (tmp_path / "out").exists()


def test_train_refuses_a_test_setting_far_outside(corpus, run_cli, clean_failure, tmp_path):
    tmp, _, _, _ = corpus
    lines = (tmp / "manifest.csv").read_text().splitlines()
    lines.append(lines[-1].rsplit(",", 1)[0] + ",5000")   # a Test row at release 5000 ms
    (tmp_path / "audio").symlink_to(tmp / "audio")
    (tmp_path / "far.csv").write_text("\n".join(lines) + "\n")
    res = run_cli(["train_neural.py", "data=manifest", f"data.path={tmp_path / 'far.csv'}",
                   f"dsp_dir={tmp / 'fits'}", f"out_dir={tmp_path / 'run'}", *TINY])
    clean_failure(res, "far.csv", "release", "5000", f"line {len(lines)}")
    assert not (tmp_path / "run").exists()


def test_train_without_fits_and_fit_chain_false(corpus, run_cli, clean_failure, tmp_path):
    tmp, data, _, _ = corpus
    res = run_cli(["train_neural.py", *data, f"dsp_dir={tmp_path / 'nofits'}", f"out_dir={tmp_path / 'run'}",
                   "fit_chain=false", *TINY])
    clean_failure(res, "nofits", "train_comp.py")
    assert not (tmp_path / "run").exists()


def test_la2a_compare_refuses_a_manifest_model(corpus):
    from common.errors import UserError
    from report.models import neural_candidate
    _, _, runs, _ = corpus
    with pytest.raises(UserError, match="knobs threshold, ratio, attack, release"):
        neural_candidate(runs / "s6_hybrid" / "best.pt")
