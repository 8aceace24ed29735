"""export.py: one TorchScript file that runs in a fresh process without the project, and clean failures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio.devices import la2a_setting
from deploy.verify import check_signal, stream
from dsp.storage.records import save_checkpoint
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable
from dsp.models.ff5_streaming import StreamingCompressor

SR = 44100
P = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 2.0}
TABLE = {"compress": {100: P, 60: {**P, "threshold_db": -10.0, "attack_ms": 3.0}, 40: {**P, "ratio": 2.0}},
         "limit": {100: {**P, "ratio": 10.0}, 40: {**P, "release_ms": 300.0}}}

# run in a fresh interpreter: isolated mode (no PYTHONPATH, no user site, no script folder on the path),
# a working folder outside the repository, and the project's packages blocked from import (an
# editable install, pip install -e ., would put them on the path), so the file runs on torch alone
RUNNER = """
import importlib.abc, json, sys
PROJECT = {"audio", "common", "deploy", "dsp", "jobs", "neural", "report", "leveller"}
class NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PROJECT:
            raise ImportError("the project was imported: " + name)
        return None
sys.meta_path.insert(0, NoProject())
import numpy as np, torch
try:
    import dsp
    raise SystemExit("the project is importable: dsp")
except ImportError:
    pass
x = torch.from_numpy(np.load("x.npy"))
for i, (model, knobs) in enumerate(json.loads(sys.argv[1])):
    m = torch.jit.load(model)
    outs = [m(x[:, j:j + 257], *knobs) for j in range(0, x.shape[1], 257)]
    np.save(f"y{i}.npy", torch.cat(outs, 1).numpy())
"""


def run_fresh(jobs: list[tuple[Path, list[float]]], x: np.ndarray, folder: Path) -> list[np.ndarray]:
    """Outputs of each (model file, knobs) on ``x`` in blocks of 257, from one fresh isolated interpreter."""
    np.save(folder / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    spec = json.dumps([[str(m), list(k)] for m, k in jobs])
    proc = subprocess.run([sys.executable, "-I", "-c", RUNNER, spec], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [np.load(folder / f"y{i}.npy") for i in range(len(jobs))]


BLOCKS = {"input_highpass_hz": 25.0, "input_shelf_hz": 9000.0, "input_shelf_db": -6.0, "tube_drive": 2.5,
          "tube_asymmetry": 0.3, "output_highpass_hz": 12.0}
RECORD = {"compressor": "ff5", "esr": 0.01, "loss": 0.01, "iterations": 3, "converged": True, "seconds": 1.0, "sample_rate": SR}
# a manifest fit: one ckpt.yaml per take under rows/, as train_comp.py data=manifest writes them
TAKES = [({"threshold": -30.0, "ratio": 2.0}, P), ({"threshold": -10.0, "ratio": 2.0}, {**P, "threshold_db": -8.0}),
         ({"threshold": -20.0, "ratio": 6.0}, {**P, "ratio": 7.0, "release_ms": 40.0})]


def write_manifest_fit(folder: Path) -> Path:
    for i, (knobs, params) in enumerate(TAKES):
        (folder / "rows" / f"{i:04d}_take").mkdir(parents=True)
        save_checkpoint(folder / "rows" / f"{i:04d}_take" / "ckpt.yaml", {"params": params, **RECORD, "knobs": knobs})
    return folder


@pytest.fixture
def sources(tmp_path):
    fit = tmp_path / "fit"
    fit.mkdir()
    save_checkpoint(fit / "ckpt.yaml", {"params": P, **RECORD})
    chain = tmp_path / "chain"
    chain.mkdir()
    KnobMap(TABLE, "ff5").save(chain / "knobmap.yaml")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    return fit, chain, outside


@pytest.mark.slow
def test_fit_and_chain_export_run_without_the_project(sources, run_cli, tmp_path):
    fit, chain, outside = sources
    x = check_signal(0.3, SR, channels=2, seed=5)
    res = run_cli(["export.py", fit, tmp_path / "fit.pt"], fresh=True)
    assert res.returncode == 0, res.stderr
    assert "forward(x)" in res.stdout and "max difference" in res.stdout
    res = run_cli(["export.py", chain, tmp_path / "chain.pt"])
    assert res.returncode == 0, res.stderr
    settings = ((0, 72.5), (1, 40.0))
    ys = run_fresh([(tmp_path / "fit.pt", [])] + [(tmp_path / "chain.pt", [pr, mode]) for mode, pr in settings],
                   x, outside)
    assert np.max(np.abs(ys[0] - StreamingCompressor(P, SR).process(x))) < 1e-4
    for (mode, pr), y in zip(settings, ys[1:]):
        ref = StreamingCompressor(KnobMap(TABLE, "ff5").at(la2a_setting(("compress", "limit")[mode], pr)), SR).process(x)
        assert np.max(np.abs(y - ref)) < 1e-4


def test_graybox_fit_and_knob_map_export_run_without_the_project(tmp_path, run_cli):
    from dsp.models.graybox_streaming import StreamingGraybox
    gray = {**P, **BLOCKS}
    (tmp_path / "fit").mkdir()
    save_checkpoint(tmp_path / "fit" / "ckpt.yaml", {"params": gray, **RECORD, "compressor": "graybox"})
    kmap = KnobMap({"compress": {40: gray, 100: {**gray, "tube_drive": 0.5, "input_highpass_hz": 60.0}},
                    "limit": {70: {**gray, "ratio": 9.0}}}, "graybox")
    (tmp_path / "chain").mkdir()
    kmap.save(tmp_path / "chain" / "knobmap.yaml")
    for src, out in (("fit", "gfit.pt"), ("chain", "gchain.pt")):
        res = run_cli(["export.py", tmp_path / src, tmp_path / out])
        assert res.returncode == 0, res.stderr
        assert "graybox" in res.stdout and "max difference" in res.stdout
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    x = check_signal(0.3, SR, channels=2, seed=6)
    settings = (("compress", 63.0), ("limit", 10.0))
    ys = run_fresh([(tmp_path / "gfit.pt", [])] + [(tmp_path / "gchain.pt", [pr, float(mode == "limit")])
                                                  for mode, pr in settings], x, outside)
    assert np.max(np.abs(ys[0] - StreamingGraybox(gray, SR).process(x))) < 1e-4
    assert np.max(np.abs(ys[0] - StreamingCompressor(P, SR).process(x))) > 1e-2   # not the five alone
    for (mode, pr), y in zip(settings, ys[1:]):
        assert np.max(np.abs(y - StreamingGraybox(kmap.at(la2a_setting(mode, pr)), SR).process(x))) < 1e-4


@pytest.mark.parametrize("backbone", ["lru", "s6"])
def test_neural_export_runs_without_the_project(tmp_path, run_cli, backbone):
    """The default hybrids (LRU, S6): control rate, conditioning standardised, the audio-rate path on."""
    sys.path.insert(0, str(Path(__file__).parent / "deploy"))
    try:
        from test_scripted_neural import AUDIO_PATH, write_checkpoint
    finally:
        sys.path.pop(0)
    from neural.inference import NeuralRenderer
    path = write_checkpoint(tmp_path / "best.pt", backbone, conditioning="fitted+knobs", extra={"frame": 32},
                            normalised=True, audio_path=AUDIO_PATH)
    res = run_cli(["export.py", path, tmp_path / f"{backbone}.pt"])
    assert res.returncode == 0, res.stderr
    assert f"{backbone} hybrid" in res.stdout
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    x = check_signal(0.2, SR, channels=1, seed=2)
    (y,) = run_fresh([(tmp_path / f"{backbone}.pt", [65.0, 1.0])], x, outside)
    ref = stream(NeuralRenderer.load(path).block_processor(SR, la2a_setting("limit", 65.0)), x, 4096)
    assert np.max(np.abs(y - ref)) < 1e-4


def test_manifest_fit_exports_with_its_knobs_in_order(tmp_path, run_cli):
    folder = write_manifest_fit(tmp_path / "manifest")
    res = run_cli(["export.py", folder, tmp_path / "dev.pt"])
    assert res.returncode == 0, res.stderr
    assert "forward(x, knobs)  # knobs: [threshold, ratio]" in res.stdout and "max difference" in res.stdout
    table = KnobTable(["threshold", "ratio"], TAKES)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    x = check_signal(0.2, SR, channels=2, seed=4)
    queries = [{"threshold": -12.0, "ratio": 2.5}, {"threshold": -21.0, "ratio": 5.0}]
    ys = run_fresh([(tmp_path / "dev.pt", [[q["threshold"], q["ratio"]]]) for q in queries], x, outside)
    refs = [StreamingCompressor(table.at(q), SR).process(x) for q in queries]
    for y, ref in zip(ys, refs):
        assert np.max(np.abs(y - ref)) < 1e-4
    assert np.max(np.abs(refs[0] - refs[1])) > 1e-2  # the two settings pick different fits


def test_help(run_cli):
    res = run_cli(["export.py", "--help"])
    assert res.returncode == 0 and "usage" in res.stdout and "--sample-rate" in res.stdout


def test_bad_inputs_fail_cleanly(sources, tmp_path, run_cli, clean_failure, take_snapshot):
    fit, chain, _ = sources
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(b"\x00\xff\x10 not yaml {{{")
    empty = tmp_path / "empty"
    empty.mkdir()
    existing = tmp_path / "old.pt"
    existing.write_bytes(b"keep me")
    bad_map = tmp_path / "bad" / "knobmap.yaml"
    bad_map.parent.mkdir()
    bad_map.write_text("kind: knobmap\nmodes: {compress: {50: {threshold_db: .nan}}}\n")
    graybox_take = tmp_path / "gmanifest" / "rows" / "0000_take" / "ckpt.yaml"
    graybox_take.parent.mkdir(parents=True)
    save_checkpoint(graybox_take, {"params": {**P, **BLOCKS}, **RECORD, "compressor": "graybox",
                                   "knobs": {"threshold": -20.0}})
    manifest = write_manifest_fit(tmp_path / "manifest")
    watch = (tmp_path,)
    cases = [
        ([tmp_path / "missing", existing], ["missing", "not found"]),
        ([garbage, existing], ["garbage.yaml"]),
        ([empty, existing], ["empty", "fit not found"]),
        ([bad_map.parent, existing], ["knobmap.yaml"]),
        ([fit / "ckpt.yaml", fit / "ckpt.yaml"], ["ckpt.yaml", "source itself"]),
        ([chain, chain / "knobmap.yaml"], ["knobmap.yaml", "source itself"]),
        ([fit, tmp_path], ["is a folder"]),
        ([fit, tmp_path / "nofolder" / "m.pt"], ["does not exist"]),
        ([fit, existing, "--sample-rate", "0"], ["sample rate"]),
        ([chain, existing, "--neutone"], ["already exists"]),
        ([graybox_take.parents[2], existing], ["gmanifest", "graybox knob table has no exported form"]),
        ([manifest, tmp_path / "nm", "--neutone"], ["manifest", "no Neutone form"]),
    ]
    for args, names in cases:
        before = take_snapshot(*watch)
        clean_failure(run_cli(["export.py", *args]), *names, before=before, watch=watch)
    assert existing.read_bytes() == b"keep me"


@pytest.mark.parametrize("params", [P, {**P, **BLOCKS}], ids=["ff5", "graybox"])
def test_fit_as_knob_map_for_neutone_equals_the_fit(params):
    """The Neutone form of a one-pair fit (a one-level knob map) renders as the fit at any knob."""
    import torch
    from deploy.build import build, resolve_source
    from jobs.export import fit_as_knob_map
    from tempfile import TemporaryDirectory
    with TemporaryDirectory() as d:
        compressor = "graybox" if len(params) > 5 else "ff5"
        save_checkpoint(Path(d) / "ckpt.yaml", {"params": params, **RECORD, "compressor": compressor})
        ex = build(*resolve_source(Path(d) / "ckpt.yaml"))
    fixed, knob = torch.jit.script(ex.module), torch.jit.script(fit_as_knob_map(ex.module, SR))
    x = torch.from_numpy(check_signal(0.1, SR, channels=2, seed=8))
    assert torch.equal(knob(x, 30.0, 1.0), fixed(x))
