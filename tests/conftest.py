"""Shared fixtures: short audio pairs, running the CLIs, and checking clean failures.

CLI tests run a script as a user would (``python SCRIPT ARGS`` in a working
directory) through :func:`run_cli`. By default the command runs in a child forked
from a server that has already imported torch, Hydra and the project
(``tests/_cli_server.py``): a real process with its own argv, cwd, stdout, stderr
and exit status, without paying seconds of imports per command. ``fresh=True``
starts ``sys.executable SCRIPT`` with :mod:`subprocess` instead; each script is run
that way at least once (the single-pair fit, the killed chain, a bad-input case that
is also checked to give the same output through the server, a render).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# The suite runs on pytest-xdist workers (pytest.ini: -n 2, one per core). Each worker is
# one core's worth: one thread for torch, numba and OpenMP (set before they are imported,
# and inherited by the CLI children), or their pools oversubscribe the cores and spin.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

# Generated corpora of tests that name no data.cache_dir go to a folder of this session,
# never the user's cache (inherited by the CLI children).
if "LA2A_CACHE_DIR" not in os.environ:
    import tempfile
    os.environ["LA2A_CACHE_DIR"] = tempfile.mkdtemp(prefix="la2a-test-cache-")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if str(ROOT / "tests") not in sys.path:
    sys.path.append(str(ROOT / "tests"))  # for the test helpers (_reference)
from _reference import reference_render  # noqa: E402
from dsp.models.ff5_streaming import render

from support import (CHAIN_EVAL_S, CHAIN_LEVELS, CHAIN_MODES, CHAIN_TRAIN_S, ROOT, SR, TRUE_PARAMS,  # noqa: E402,F401
                     _ckpt_text, chain_overrides, program, write_pair, write_wav)


@pytest.fixture
def make_pair(tmp_path):
    """``make_pair(name="pair", seconds=3, sr=44100, seed=1, params=..., channels=1, subtype="FLOAT")``."""
    def make(name: str = "pair", **kw) -> tuple[Path, Path]:
        return write_pair(kw.pop("folder", tmp_path), name, **kw)
    return make


# --------------------------------------------------------------------------------------
# running the command-line tools
# --------------------------------------------------------------------------------------
class _CliServer:
    def __init__(self):
        env = {k: v for k, v in os.environ.items() if k != "LA2A_DEBUG"}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "_cli_server.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(ROOT))
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("the CLI fork server did not start")
        self.tmp = Path(tempfile.mkdtemp(prefix="cli-server-"))

    def run(self, script: str, args: list[str], cwd: Path, env: dict | None, timeout: float):
        out, err = self.tmp / "stdout", self.tmp / "stderr"
        if script == "-m":
            target, args = {"module": args[0]}, args[1:]
        else:
            target = {"script": str(ROOT / script)}
        req = {**target, "args": [str(a) for a in args], "cwd": str(cwd),
               "stdout": str(out), "stderr": str(err), "env": env or {}, "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired([script, *args], timeout)
        return reply["rc"], out.read_text(), err.read_text()

    def close(self):
        self.proc.stdin.close()
        self.proc.kill()  # idle between requests; no need to wait for its interpreter to tidy up
        self.proc.wait(timeout=30)
        for f in self.tmp.iterdir():
            f.unlink()
        self.tmp.rmdir()


@pytest.fixture(scope="session")
def _cli_server():
    if not hasattr(os, "fork"):  # no fork (Windows): every command is a fresh process
        yield None
        return
    server = _CliServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def run_cli(_cli_server):
    """``run_cli([script, *args], cwd=ROOT, fresh=False, env=None, timeout=300) -> CompletedProcess``.

    ``script`` is a file name at the repository root (``train_comp.py``); it is run by
    absolute path, so ``cwd`` may be anywhere and relative arguments resolve there.
    ``["-m", MODULE, *args]`` runs ``python -m MODULE`` (``cwd`` must then be the root).
    """
    def run(args, cwd: Path = ROOT, *, fresh: bool = False, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        script, rest = str(args[0]), [str(a) for a in args[1:]]
        if fresh or not hasattr(os, "fork"):
            full_env = {k: v for k, v in os.environ.items() if k != "LA2A_DEBUG"}
            full_env.update(env or {})
            command = [sys.executable, "-m", *rest] if script == "-m" else [sys.executable, str(ROOT / script), *rest]
            return subprocess.run(command, cwd=str(cwd), env=full_env,
                                  capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        rc, out, err = _cli_server.run(script, rest, Path(cwd), env, timeout)
        return subprocess.CompletedProcess([script, *rest], rc, out, err)
    return run


# --------------------------------------------------------------------------------------
# checking that a failure is clean
# --------------------------------------------------------------------------------------
def snapshot(*paths: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file at or under ``paths`` (folders are listed recursively,
    so a new or half-written file shows up as a difference)."""
    snap = {}
    for p in map(Path, paths):
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_dir():
                snap[str(f)] = (b"<folder>", 0)
            elif f.exists():
                snap[str(f)] = (f.read_bytes(), f.stat().st_mtime_ns)
    return snap


def check_clean_failure(result: subprocess.CompletedProcess, *names: str,
                        before: dict | None = None, watch: tuple = ()) -> str:
    """Assert a user error: exit 2, exactly one stderr line ``error: ...`` holding each
    of ``names``, no traceback, and the files in ``watch`` as in ``before``.

    Returns the error line.
    """
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "internal error" not in line, line
    assert result.returncode == 2, (result.returncode, line)
    for name in names:
        assert str(name) in line, f"{name!r} not named in {line!r}"
    if before is not None:
        assert snapshot(*watch) == before, "files on disk changed after a failed run"
    return line


@pytest.fixture(scope="session")
def clean_failure():
    """The checker :func:`check_clean_failure` as a fixture."""
    return check_clean_failure


@pytest.fixture(scope="session")
def take_snapshot():
    return snapshot


# --------------------------------------------------------------------------------------
# the tiny chain shared by the chain tests
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chain_cache(tmp_path_factory) -> Path:
    """A cache folder holding the tiny chain's stand-in corpus (generated once)."""
    from audio.corpus import CorpusSpec, ensure_corpus
    cache = tmp_path_factory.mktemp("chain-cache")
    spec = CorpusSpec(train_seconds=CHAIN_TRAIN_S, eval_seconds=CHAIN_EVAL_S,
                      levels=tuple(CHAIN_LEVELS), modes=tuple(CHAIN_MODES))
    ensure_corpus(cache, spec, quiet=True)
    return cache


@pytest.fixture(scope="session")
def chain_reference(tmp_path_factory, chain_cache, run_cli) -> Path:
    """An uninterrupted run of the tiny chain (``python train_comp.py ...``); its ckpt_dir.

    (Through the fork server; the kill test starts the same chain as a plain process.)
    """
    ckpt = tmp_path_factory.mktemp("chain-ref") / "fits"
    res = run_cli(["train_comp.py", *chain_overrides(chain_cache, ckpt)])
    assert res.returncode == 0, res.stderr
    return ckpt


@pytest.fixture(scope="session")
def chain_settings() -> dict:
    """The tiny chain's ``modes`` and ``levels``."""
    return {"modes": list(CHAIN_MODES), "levels": list(CHAIN_LEVELS)}


@pytest.fixture(scope="session")
def chain_args(chain_cache):
    """``chain_args(ckpt_dir) -> [overrides]`` for the tiny chain on the shared corpus."""
    return lambda ckpt_dir: chain_overrides(chain_cache, ckpt_dir)


def _read_summary(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def read_summary():
    """``read_summary(path) -> [row dicts]`` of a summary.csv (values as strings)."""
    return _read_summary


# --------------------------------------------------------------------------------------
# a folder of good and bad files for the bad-input tests of every CLI
# --------------------------------------------------------------------------------------
def _signaltrain(root: Path, names: list[str], x: np.ndarray) -> None:
    (root / "Train").mkdir(parents=True)
    for name in names:
        write_wav(root / "Train" / name, x)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A folder (used as the working directory) holding, by relative name:

    ``in.wav``/``tgt.wav`` a good 3 s pair; ``junk.wav`` random bytes; ``text.wav`` text;
    ``empty.wav`` 0 samples; ``tgt48.wav`` 48 kHz; ``tgt_short.wav`` 1 s shorter;
    ``tgt_stereo.wav``; ``silent.wav``; ``nan.wav``/``inf.wav`` non-finite samples;
    ``late_silent.wav`` a target silent after the 1 s warm-up; ``short_in.wav``/
    ``short_tgt.wav`` a 0.5 s pair; ``fits/ckpt.yaml`` a good checkpoint and ``out.wav``
    an earlier output (both must survive failed runs); damaged checkpoints
    ``garbage.yaml``, ``nokeys.yaml``, ``neural.yaml``, ``ratio05.yaml``, ``nanparam.yaml``;
    ``nomap/`` a folder without knobmap.yaml; ``kmap/`` a compress-only knob map;
    ``afile`` a plain file; SignalTrain folders ``st_good``, ``st_unpaired``, ``st_dup``,
    ``st_unknown``.
    """
    from dsp.knobs.knobmap import KnobMap
    ws = tmp_path_factory.mktemp("workspace")
    x = program(3.0, SR, seed=7)
    y = render(x, SR, TRUE_PARAMS)
    write_wav(ws / "in.wav", x)
    write_wav(ws / "tgt.wav", y)
    (ws / "junk.wav").write_bytes(np.random.default_rng(1).bytes(8192))
    (ws / "text.wav").write_text("RIFF? no: just some text that ends in .wav\n")
    write_wav(ws / "empty.wav", np.zeros((1, 0)))
    write_wav(ws / "tgt48.wav", y, 48000)
    write_wav(ws / "tgt_short.wav", y[:, :-SR])
    write_wav(ws / "tgt_stereo.wav", np.concatenate([y, y]))
    write_wav(ws / "silent.wav", np.zeros_like(x))
    nan = x.copy()
    nan[0, SR] = np.nan
    write_wav(ws / "nan.wav", nan)
    inf = y.copy()
    inf[0, -5] = np.inf
    write_wav(ws / "inf.wav", inf)
    late = y.copy()
    late[:, SR // 2:] = 0.0
    write_wav(ws / "late_silent.wav", late)
    write_wav(ws / "short_in.wav", x[:, :SR // 2])
    write_wav(ws / "short_tgt.wav", y[:, :SR // 2])
    (ws / "fits").mkdir()
    (ws / "fits" / "ckpt.yaml").write_text(_ckpt_text(TRUE_PARAMS))
    write_wav(ws / "out.wav", y, subtype="PCM_16")
    (ws / "garbage.yaml").write_bytes(bytes(range(256)) * 8)
    (ws / "nokeys.yaml").write_text("params: {threshold_db: -20}\n")
    (ws / "neural.yaml").write_text(_ckpt_text(TRUE_PARAMS, kind="neural"))
    (ws / "ratio05.yaml").write_text(_ckpt_text({**TRUE_PARAMS, "ratio": 0.5}))
    (ws / "nanparam.yaml").write_text(_ckpt_text({**TRUE_PARAMS, "release_ms": float("nan")}))
    (ws / "nomap").mkdir()
    (ws / "nomap" / "summary.csv").write_text("mode\n")
    (ws / "kmap").mkdir()
    KnobMap({"compress": {100: TRUE_PARAMS, 50: {**TRUE_PARAMS, "ratio": 2.0}}}, "ff5").save(ws / "kmap" / "knobmap.yaml")
    (ws / "afile").write_text("not a folder\n")
    good = ["input_001_.wav", "target_001_LA2A_3c__0__100.wav"]
    _signaltrain(ws / "st_good", good, x)
    _signaltrain(ws / "st_unpaired", good + ["input_002_.wav"], x)
    _signaltrain(ws / "st_dup", good + ["target_001_LA2A_3c__0__90.wav"], x)
    _signaltrain(ws / "st_unknown", good + ["take2.wav"], x)
    return ws


@pytest.fixture(scope="session")
def reference():
    """``reference(x, sample_rate, params) -> float64``: the compressor from its documented
    semantics, a plain loop independent of the project (``tests/_reference.py``)."""
    return reference_render


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test: tiny models and tensors gain nothing from
    threads, and on a busy machine every small op would wait for the pool (10x slower)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Files holding ``slow`` tests first: the xdist workers take whole files in this order,
    so the longest start first and the short ones fill in at the end (the suite's wall
    time then comes close to half its CPU time on 2 cores)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)   # stable: order kept within each group
