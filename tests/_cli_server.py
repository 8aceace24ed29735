"""A fork server for the CLI tests: pay the imports once, run every command in a child.

Starting ``python train_comp.py`` costs seconds before ``main`` runs (torch, Hydra,
scipy, numba). The tests run dozens of commands, so this process imports the
project's modules once and then, for each request, forks a child that behaves like
``python SCRIPT ARGS...`` started in ``cwd``: its own process, argv, working
directory, file descriptors 0/1/2 (stdin from /dev/null, stdout and stderr to the
files named in the request) and exit status. An exception that escapes the script
prints a traceback and exits 1, as the interpreter would.

The parent never runs torch code, so the children start torch's thread pool
afresh (GNU OpenMP is not fork-safe after use). It does compile and run the numba
kernels once (torchcomp's smoother is compiled anew in every process otherwise),
with numba's fork-safe ``workqueue`` threading layer, which the children inherit.

Protocol: one JSON request a line on stdin ``{"script", "args", "cwd", "stdout",
"stderr", "env", "timeout"}`` (``"module"`` instead of ``"script"``: ``python -m MODULE``); one JSON reply a line on stdout ``{"rc", "timed_out"}``
(a child still running at its timeout is killed).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _preload() -> None:
    sys.path.insert(0, ROOT)
    import runpy  # noqa: F401
    import torch  # noqa: F401
    import torchcomp  # noqa: F401
    import hydra  # noqa: F401
    import scipy.signal  # noqa: F401
    import soundfile  # noqa: F401
    import tqdm  # noqa: F401
    import common.config  # noqa: F401
    import common.errors  # noqa: F401
    import audio.io  # noqa: F401
    import audio.datasets  # noqa: F401
    import jobs.fit  # noqa: F401
    import dsp.models.ff5_streaming  # noqa: F401
    _warm_numba()
    sys.path.remove(ROOT)


def _warm_numba() -> None:
    """Compile the numba kernels here, on numpy arrays only (no torch), so children
    start with machine code. Best effort: a failure only costs the children time."""
    import numpy as np
    try:
        from torchcomp.core import compressor_kernel
        compressor_kernel(np.full((1, 64), 0.5), np.ones(1), np.full(1, 0.1), np.full(1, 0.01))
    except Exception:
        pass
    try:
        from audio.framing import make_frames
        from dsp import kernel
        rng = np.random.default_rng(0)
        natural = [-20.0, 3.0, 0.05, 0.001, 0.0]
        for dtype in (np.float64, np.float32):  # files are read as float32, digital targets are float64
            x = rng.uniform(-0.5, 0.5, 4000).astype(dtype)
            data = kernel.prepare(make_frames(x, 0.5 * x, 2000, frame_s=2.0, overlap_s=0.5))
            kernel.loss_natural(data, natural)
            kernel.loss_grad_natural(data, natural)
            kernel.loss_grad_hess_natural(data, natural)
            kernel.output_natural(data, natural)
            kernel.output_energy_natural(data, natural)
            kernel.target_energy(data)
    except Exception:
        pass


def _child(req: dict) -> None:
    import runpy

    try:
        os.chdir(req["cwd"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.update(req.get("env") or {})
        script, module = req.get("script"), req.get("module")
        if module:   # `python -m MODULE`: the working directory goes first on the path
            sys.argv = [module, *req["args"]]
            sys.path[0] = os.getcwd()
        else:
            sys.argv = [script, *req["args"]]
            sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` sets it
        code = 0
        try:
            if module:
                sys.modules.pop(module, None)  # preloaded by an import: `-m` runs a fresh copy as __main__
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = 70
    os._exit(code)


def main() -> None:
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    _preload()
    reply = sys.stdout
    reply.write(json.dumps({"ready": True}) + "\n")
    reply.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        deadline = time.monotonic() + float(req.get("timeout", 300))
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                timed_out = True
                break
            time.sleep(0.005)
        rc = os.waitstatus_to_exitcode(status)
        reply.write(json.dumps({"rc": rc, "timed_out": timed_out}) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
