"""The bad-input corpus: every entry script, fed what users and faults feed it, ends with a
non-zero exit, one ``error:`` line naming the problem, no traceback, and nothing changed
on disk (the working folder is snapshotted before and after each case).

Many single cases live beside the scripts' own tests; this table holds the issue's list
in one place, the override and knob-map cases of issue 16 included.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import TRUE_PARAMS

KMAP = "kind: knobmap\ncompressor: ff5\nmodes: {{compress: {{{pr}: {{{params}}}}}}}\n"


def _kmap_text(pr=50, **over) -> str:
    params = {**TRUE_PARAMS, **over}
    return KMAP.format(pr=pr, params=", ".join(f"{k}: {v}" for k, v in params.items()))


@pytest.fixture(scope="module")
def folder(workspace, tmp_path_factory):
    """A copy of the shared bad-input workspace plus damaged knob maps."""
    ws = tmp_path_factory.mktemp("bad-input") / "ws"
    shutil.copytree(workspace, ws)
    for name, text in {"kmap_ratio05": _kmap_text(ratio=0.5), "kmap_negattack": _kmap_text(attack_ms=-5),
                       "kmap_pr150": _kmap_text(pr=150), "kmap_squash": _kmap_text().replace("compress", "squash"),
                       "kmap_hot": _kmap_text(make_up_db=900)}.items():
        (ws / name).mkdir()
        (ws / name / "knobmap.yaml").write_text(text)
    # issue 26: a manifest knob named like a path, a manifest inside the folder its fit
    # writes, a root with only Val takes, a truncated torch file
    (ws / "mf_path_knob.csv").write_text("split,input,target,x/../../../../elsewhere/fit\nTrain,in.wav,tgt.wav,1\n")
    (ws / "msum").mkdir()
    (ws / "msum" / "manifest_summary.csv").write_text("split,input,target,threshold\nTrain,../in.wav,../tgt.wav,1\n")
    (ws / "st_valonly" / "Val").mkdir(parents=True)
    for name in ("input_001_.wav", "target_001_LA2A_3c__0__100.wav"):
        shutil.copy(ws / "in.wav", ws / "st_valonly" / "Val" / name)
    (ws / "trunc.pt").write_bytes(b"PK\x03\x04" + bytes(60))
    (ws / "st_short" / "Test").mkdir(parents=True)   # a 3 s Test take: shorter than a 5 s warm-up
    shutil.copy(ws / "in.wav", ws / "st_short" / "Test" / "input_002_.wav")
    shutil.copy(ws / "tgt.wav", ws / "st_short" / "Test" / "target_002_LA2A_3c__0__100.wav")
    return ws


PAIR = ["data.input=in.wav", "data.target=tgt.wav", "ckpt_dir=fits2", "quiet=true"]
CHAIN = ["ckpt_dir=fits2", "quiet=true", "data.cache_dir=cache2"]
NEURAL = ["dsp_dir=fits2", "out_dir=run2", "quiet=true", "data.cache_dir=cache2", "fit_chain=false"]
COMPARE = ["dsp_dir=fits2", "out_dir=report2", "quiet=true", "data.cache_dir=cache2", "train_missing=false"]
RENDER = ["in.wav", "o.wav", "--peak-reduction", "50", "--mode", "compress"]
DIGITAL = ["--threshold", "-20", "--ratio", "3", "--attack", "1", "--release", "100"]

# case: (script and arguments, words the error line must hold)
CASES = {
    # overrides (issue 16, item 6)
    "fit levels=abc": (["train_comp.py", *CHAIN, "levels=abc"], ["levels", "abc"]),
    "fit levels=[100.5]": (["train_comp.py", *CHAIN, "levels=[100.5]"], ["levels", "100.5"]),
    "fit levels=[100,100]": (["train_comp.py", *CHAIN, "levels=[100,100]"], ["levels", "100", "more than once"]),
    "fit levels=[150]": (["train_comp.py", *CHAIN, "levels=[150]"], ["levels", "0..100"]),
    "fit modes=[squash]": (["train_comp.py", *CHAIN, "modes=[squash]"], ["modes", "squash"]),
    "fit modes=compress": (["train_comp.py", *CHAIN, "modes=compress"], ["modes", "expected a list"]),
    "train levels=abc": (["train_neural.py", *NEURAL, "levels=abc"], ["levels", "abc"]),
    "train unseen_levels=[45,45]": (["train_neural.py", *NEURAL, "unseen_levels=[45,45]"],
                                    ["unseen_levels", "45", "more than once"]),
    "train seed=1.5": (["train_neural.py", *NEURAL, "seed=1.5"], ["seed", "1.5"]),
    "train threads=many": (["train_neural.py", *NEURAL, "threads=many"], ["threads", "many"]),
    "train batch_size=0": (["train_neural.py", *NEURAL, "train.batch_size=0"], ["train.batch_size"]),
    "train out_dir is a file": (["train_neural.py", *NEURAL[:-1], "out_dir=afile"], ["afile", "is a file"]),
    "compare unseen_levels=abc": (["compare.py", *COMPARE, "unseen_levels=abc"], ["unseen_levels", "abc"]),
    "compare out_dir is a file": (["compare.py", *COMPARE, "out_dir=afile"], ["afile", "is a file"]),
    # knob maps validated like checkpoints (item 4)
    "render knob map ratio 0.5": (["test_comp.py", "kmap_ratio05", *RENDER], ["knobmap.yaml", "ratio = 0.5"]),
    "render knob map negative attack": (["test_comp.py", "kmap_negattack", *RENDER],
                                        ["knobmap.yaml", "attack_ms = -5"]),
    "render knob map PR 150": (["test_comp.py", "kmap_pr150", *RENDER], ["knobmap.yaml", "150"]),
    "render knob map unknown mode": (["test_comp.py", "kmap_squash", *RENDER], ["knobmap.yaml", "squash"]),
    "render knob map make-up 900 dB": (["test_comp.py", "kmap_hot", *RENDER], ["knobmap.yaml", "make_up_db"]),
    "export knob map ratio 0.5": (["export.py", "kmap_ratio05", "model.pt"], ["knobmap.yaml", "ratio = 0.5"]),
    # checkpoints
    "render ckpt ratio 0.5": (["test_comp.py", "ratio05.yaml", "in.wav", "o.wav"], ["ratio05.yaml", "ratio"]),
    "render garbage ckpt": (["test_comp.py", "garbage.yaml", "in.wav", "o.wav"], ["garbage.yaml"]),
    "render NaN ckpt": (["test_comp.py", "nanparam.yaml", "in.wav", "o.wav"], ["nanparam.yaml", "NaN"]),
    "export garbage ckpt": (["export.py", "garbage.yaml", "model.pt"], ["garbage.yaml"]),
    # audio files
    "fit missing input": (["train_comp.py", *PAIR[1:], "data.input=nothere.wav"], ["nothere.wav", "not found"]),
    "fit rates differ": (["train_comp.py", *PAIR[::2], "data.target=tgt48.wav", "quiet=true"],
                         ["tgt48.wav", "sample rate"]),
    "fit NaN samples": (["train_comp.py", *PAIR[1:], "data.input=nan.wav"], ["nan.wav", "NaN"]),
    "fit silent target": (["train_comp.py", *PAIR[::2], "data.target=silent.wav", "quiet=true"],
                          ["silent.wav", "silent"]),
    "fit signaltrain unpaired": (["train_comp.py", "data=signaltrain", "data.root=st_unpaired", *CHAIN],
                                 ["input_002_.wav", "unpaired"]),
    "fit ckpt_dir is a file": (["train_comp.py", "data.input=in.wav", "data.target=tgt.wav", "ckpt_dir=afile"],
                               ["afile", "is a file"]),
    "render random bytes": (["test_comp.py", "fits/ckpt.yaml", "junk.wav", "o.wav"], ["junk.wav"]),
    "render over its input": (["test_comp.py", "fits/ckpt.yaml", "in.wav", "./in.wav"], ["in.wav", "overwrite"]),
    "digital ratio 0.5": (["digital_compressor.py", "in.wav", "o.wav", *DIGITAL[:2], "--ratio", "0.5",
                           *DIGITAL[4:]], ["--ratio", "0.5"]),
    # issue 26: names that become paths, outputs over inputs, settings before any work
    "manifest knob named like a path": (["train_comp.py", "data=manifest", "data.path=mf_path_knob.csv", *CHAIN],
                                        ["mf_path_knob.csv", "x/../../../../elsewhere/fit"]),
    "manifest fit over its manifest": (["train_comp.py", "data=manifest", "data.path=msum/manifest_summary.csv",
                                        "ckpt_dir=msum", "quiet=true"], ["msum", "manifest_summary.csv"]),
    "fit frame_s=abc": (["train_comp.py", *PAIR, "data.frame_s=abc"], ["data.frame_s", "abc"]),
    "fit frame_s=-1": (["train_comp.py", *PAIR, "data.frame_s=-1"], ["data.frame_s", "-1"]),
    "fit overlap_s over frame_s": (["train_comp.py", *PAIR, "data.frame_s=2", "data.overlap_s=3"],
                                   ["data.overlap_s", "data.frame_s"]),
    "fit root with only Val takes": (["train_comp.py", "data=signaltrain", "data.root=st_valonly", *CHAIN],
                                     ["st_valonly", "Train", "Val takes only"]),
    "render truncated .pt": (["test_comp.py", "trunc.pt", "in.wav", "o.wav"], ["trunc.pt", "truncated"]),
    "compare unknown model": (["compare.py", *COMPARE, "models=[foo]"], ["models", "foo"]),
    "compare takes no longer than skip_s": (["compare.py", *COMPARE, "data=signaltrain", "data.root=st_short",
                                             "skip_s=5"], ["target_002_LA2A_3c__0__100.wav", "skip_s=5"]),
    "digital threshold beyond the model's range": (["digital_compressor.py", "in.wav", "o.wav", "--threshold", "-250",
                                                    *DIGITAL[2:]], ["--threshold", "-250"]),
    "digital empty input": (["digital_compressor.py", "empty.wav", "o.wav", *DIGITAL], ["empty.wav", "empty"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_cleanly(case, folder, run_cli, clean_failure, take_snapshot):
    args, words = CASES[case]
    before = take_snapshot(folder)
    res = run_cli(args, cwd=folder)
    clean_failure(res, *words, before=before, watch=(folder,))


def test_early_failure_leaves_no_new_folder(folder, run_cli, clean_failure, take_snapshot):
    """An error after the output folder's lock was taken removes the folders the run made."""
    before = take_snapshot(folder)
    res = run_cli(["train_comp.py", "data.input=in.wav", "data.target=silent.wav", "ckpt_dir=new/deep/fits",
                   "quiet=true"], cwd=folder)
    clean_failure(res, "silent.wav", "silent", before=before, watch=(folder,))
    assert not (folder / "new").exists()


def test_a_users_temporary_look_alikes_survive_a_run(folder, run_cli, tmp_path):
    """Only the project's own abandoned temporaries are cleaned up; files a user named like
    temporaries (the issue's two) are not touched by a render into their folder."""
    out = tmp_path / "renders"
    (out / ".notes.tmp-2024-backup").mkdir(parents=True)
    (out / ".notes.tmp-2024-backup" / "keep.txt").write_text("mine\n")
    (out / ".draft.tmp-31337").write_text("mine too\n")
    res = run_cli(["test_comp.py", "fits/ckpt.yaml", "in.wav", str(out / "o.wav")], cwd=folder)
    assert res.returncode == 0, res.stderr
    assert (out / ".notes.tmp-2024-backup" / "keep.txt").read_text() == "mine\n"
    assert (out / ".draft.tmp-31337").read_text() == "mine too\n"
    assert (out / "o.wav").is_file()


def test_a_second_writer_is_refused_naming_the_first(folder, run_cli, clean_failure, take_snapshot, tmp_path):
    """One writer per output folder: while this process holds the lock, a fit into the
    folder is refused with one line naming this process."""
    import os

    from common.locks import output_lock
    fits = tmp_path / "busy"
    with output_lock(fits, "checkpoint folder"):
        before = take_snapshot(fits)
        res = run_cli(["train_comp.py", *PAIR[:2], f"ckpt_dir={fits}", "quiet=true"], cwd=folder)
        clean_failure(res, "busy", "another run", f"process {os.getpid()}", before=before, watch=(fits,))


@pytest.mark.slow
def test_a_killed_refit_never_leaves_the_old_map(chain_reference, chain_args, run_cli, clean_failure, tmp_path):
    """A refit with other settings into a finished chain folder, killed -9 as soon as it has
    started: the old knob map is gone, so rendering says the map is missing instead of
    silently using a map that disagrees with the levels being rewritten."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    fits = tmp_path / "fits"
    shutil.copytree(chain_reference, fits)
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_comp.py"), *chain_args(fits),
                             "compressor.ranges.ratio=[1,5]"], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (fits / "knobmap.yaml").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the refit never invalidated the map"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    res = run_cli(["test_comp.py", str(fits), "in.wav", "out.wav", "--peak-reduction", "90", "--mode", "compress"],
                  cwd=tmp_path)
    clean_failure(res, "fits", "fit not found")


def test_api_refuses_settings_and_parameters_the_command_line_refuses(folder):
    """The Python API validates as the command line does: a knob map's setting (PR outside
    0..100, NaN, text) and rendering parameters (attack <= 0, ratio < 1, a bad sample rate)."""
    import math

    import numpy as np

    import leveller
    from dsp.storage.open_fit import load_param_map
    kmap = load_param_map(folder / "kmap" / "knobmap.yaml")
    for pr in (-5, 1000, math.nan, "abc"):
        with pytest.raises(leveller.UserError, match="peak.reduction"):
            kmap.at({"mode": "compress", "peak_reduction": pr})
    fit = leveller.open_fit(folder / "kmap")
    with pytest.raises(leveller.UserError):
        fit.render(np.zeros(100), 44100, {"mode": "compress", "peak_reduction": math.nan})
    x = np.zeros(4410)
    for over, words in [({"attack_ms": -5.0}, "attack_ms"), ({"attack_ms": 0.0}, "attack_ms"),
                        ({"ratio": 0.5}, "ratio")]:
        with pytest.raises(leveller.UserError, match=words):
            leveller.render(x, 44100, {**TRUE_PARAMS, **over})
    for sr in (0, -44100):
        with pytest.raises(leveller.UserError, match="sample rate"):
            leveller.render(x, sr, TRUE_PARAMS)
