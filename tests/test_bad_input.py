"""The bad-input corpus: every entry script, fed what users and faults feed it, ends with a
non-zero exit, one ``error:`` line naming the problem, no traceback, and nothing changed
on disk (the working folder is snapshotted before and after each case).

Many single cases live beside the scripts' own tests; this table holds the issue's list
in one place, the override and knob-map cases of issue 16 included.
"""
from __future__ import annotations

import shutil

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
    "digital empty input": (["digital_compressor.py", "empty.wav", "o.wav", *DIGITAL], ["empty.wav", "empty"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_cleanly(case, folder, run_cli, clean_failure, take_snapshot):
    args, words = CASES[case]
    before = take_snapshot(folder)
    res = run_cli(args, cwd=folder)
    clean_failure(res, *words, before=before, watch=(folder,))
