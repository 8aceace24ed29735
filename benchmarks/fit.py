"""End-to-end fit of a digital target: autograd Hessian vs the fused kernel, side by side.

The input is 35 s of seeded program material (:func:`audio.material.synthesize`), the
target the plain digital compressor (:func:`dsp.models.ff5_streaming.render`) at one of three
settings (threshold -20 dB, make-up 0 dB throughout):

- ``ff_a``: ratio 3, attack 1 ms, release 100 ms;
- ``ff_b``: ratio 5, attack 30 ms, release 30 ms;
- ``ff_c``: ratio 8, attack 0.1 ms, release 200 ms.

The pair is cut into 12 s frames with a 1 s overlap and fitted from the published
default start (``init=None``: -36 dB, 4:1, 1 ms, 200 ms, level-matched make-up) with
``hessian="autograd"`` and with ``hessian="kernel"``, after warming up both (numba
cache, torch initialisation) on the first seconds of the material. Reported: wall time
of ``fit_frames``, iterations, ESR, convergence, fitted parameters, their largest
relative difference between the two fits and from the truth, and the peak extra
resident memory of the whole kernel fit against one torchcomp forward pass
(:func:`dsp.models.ff5.compress`) on the same framed audio, each measured in a fresh
process after a warm-up.

Targets: kernel >= 10x faster, parameters equal to 1e-4 relative, ESR < 1e-6, kernel
fit peak memory <= 1.5x a torchcomp forward pass.

Usage: ``python benchmarks/fit.py [--target ff_a|ff_b|ff_c] [--seconds 35] [--seed 0]
[--no-autograd] [--no-memory]``
"""
from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from audio.framing import Frames, make_frames  # noqa: E402
from audio.material import synthesize  # noqa: E402
from dsp.models.ff5 import compress
from dsp.fitting.ff5 import FitOptions, FitResult, fit_frames
from dsp.models.parameters import DEFAULT_INIT, PARAM_NAMES, Parameterisation

SR = 44100
FRAME_S = 12.0
OVERLAP_S = 1.0
TARGETS = {
    "ff_a": {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0},
    "ff_b": {"threshold_db": -20.0, "ratio": 5.0, "attack_ms": 30.0, "release_ms": 30.0, "make_up_db": 0.0},
    "ff_c": {"threshold_db": -20.0, "ratio": 8.0, "attack_ms": 0.1, "release_ms": 200.0, "make_up_db": 0.0},
}
METHODS = ("autograd", "kernel")
SPEEDUP_TARGET = 10.0
PARAM_RTOL = 1e-4
ESR_TARGET = 1e-6
MEMORY_TARGET = 1.5


def build(target: str, seconds: float, seed: int) -> Frames:
    """The framed (input, digital target) pair."""
    from dsp.models.ff5_streaming import render
    x = synthesize(seconds, SR, seed).astype(np.float64)
    y = render(x, SR, TARGETS[target])
    return make_frames(x, y, SR, FRAME_S, OVERLAP_S)


def head(frames: Frames, seconds: float = 3.0) -> Frames:
    """The first seconds of every frame (warm-up data)."""
    n = int(seconds * frames.sample_rate)
    return Frames(frames.x[:, :n].copy(), frames.y[:, :n].copy(), np.minimum(frames.lengths, n),
                  frames.warmup, frames.sample_rate)


def fit(frames: Frames, method: str, max_iterations: int | None = None) -> FitResult:
    options = FitOptions(hessian=method)
    if max_iterations is not None:
        options.newton.max_iterations = max_iterations
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # non-convergence is reported in the table
        return fit_frames(frames, None, options)


def warm_up(frames: Frames, methods) -> None:
    """Load the numba cache / initialise torch on a few seconds, outside the timings."""
    short = head(frames)
    for method in methods:
        fit(short, method, max_iterations=2)


def rel_diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """|a - b| / max(|b|, 1) per parameter: relative, except that a dB value near 0
    (make-up) compares in dB."""
    return {k: abs(a[k] - b[k]) / max(abs(b[k]), 1.0) for k in PARAM_NAMES}


# --- memory: one fresh process per measurement, high-water mark reset before it ------------

from benchmarks.memory import reset_peak as _reset_peak, status_kib as _status_kib  # noqa: E402


def _measure_child(what: str, target: str, seconds: float, seed: int) -> None:
    """In a child process: print the peak extra resident bytes of ``what`` on data that is
    already in memory, after a warm-up on its first seconds."""
    frames = build(target, seconds, seed)
    if what == "kernel_fit":
        warm_up(frames, ["kernel"])
        run = lambda: fit(frames, "kernel")  # noqa: E731
    elif what == "forward":
        param = Parameterisation(SR)
        natural = param.natural(param.from_physical(DEFAULT_INIT))
        x = torch.from_numpy(frames.x)                         # shares memory, no copy
        compress(torch.from_numpy(head(frames).x), natural)    # warm-up
        run = lambda: compress(x, natural)  # noqa: E731
    else:
        raise ValueError(what)
    gc.collect()
    base = _reset_peak()
    out = run()
    peak = _status_kib("VmHWM") - base
    del out
    print(peak * 1024)


def peak_memory(what: str, target: str, seconds: float, seed: int) -> float | None:
    """Peak extra resident bytes of ``what`` from a fresh process (None if it failed).

    glibc is told to give large blocks back to the system at once, so memory freed by one
    allocation is not silently reused by the next and the high-water mark is honest.
    """
    cmd = [sys.executable, __file__, "--target", target, "--seconds", str(seconds),
           "--seed", str(seed), "--measure", what]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        print(f"[memory measurement {what!r} failed]\n{res.stderr.strip()[-2000:]}", file=sys.stderr)
        return None
    return float(res.stdout.strip().splitlines()[-1])


# --- report ---------------------------------------------------------------------------------

def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=sorted(TARGETS), default="ff_a")
    ap.add_argument("--seconds", type=float, default=35.0, help="length of the material (default 35)")
    ap.add_argument("--seed", type=int, default=0, help="material seed (default 0)")
    ap.add_argument("--no-autograd", action="store_true", help="fit with the kernel only (fast)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.seconds <= OVERLAP_S:
        ap.error(f"--seconds must exceed the {OVERLAP_S:g} s warm-up")
    if args.measure:
        _measure_child(args.measure, args.target, args.seconds, args.seed)
        return

    truth = TARGETS[args.target]
    frames = build(args.target, args.seconds, args.seed)
    methods = ("kernel",) if args.no_autograd else METHODS
    warm_up(frames, methods)

    results, walls = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        results[method] = fit(frames, method)
        walls[method] = time.perf_counter() - t0

    memory = {}
    if not args.no_memory:
        for what in ("kernel_fit", "forward"):
            memory[what] = peak_memory(what, args.target, args.seconds, args.seed)

    B, T = frames.x.shape
    print(f"Fit of {args.seconds:g} s of program material (seed {args.seed}) to digital target "
          f"{args.target} {truth}")
    print(f"{B} frames x {FRAME_S:g} s ({B * T} samples, {frames.scored_samples} scored), default start, "
          f"float64, torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}")
    print(f"{'hessian':9s} {'wall s':>8s} {'solver s':>9s} {'iters':>6s} {'s/iter':>7s} {'ESR':>9s} "
          f"{'conv':>5s}  " + " ".join(f"{k:>13s}" for k in PARAM_NAMES))
    print(f"{'truth':9s} {'':>8s} {'':>9s} {'':>6s} {'':>7s} {'':>9s} {'':>5s}  "
          + " ".join(f"{truth[k]:13.6f}" for k in PARAM_NAMES))
    for method, r in results.items():
        print(f"{method:9s} {walls[method]:8.2f} {r.seconds:9.2f} {r.iterations:6d} "
              f"{r.seconds / max(r.iterations, 1):7.3f} {r.esr:9.2e} {str(r.converged):>5s}  "
              + " ".join(f"{r.params[k]:13.6f}" for k in PARAM_NAMES))
    for method, r in results.items():
        print(f"  {method}: {r.reason}; max relative error vs truth "
              f"{max(rel_diff(r.params, truth).values()):.2e}")

    print()
    kern = results["kernel"]
    print(f"kernel ESR = {kern.esr:.2e}  (target < {ESR_TARGET:g})  {_verdict(kern.esr < ESR_TARGET)}; "
          f"converged {kern.converged}")
    if "autograd" in results:
        auto = results["autograd"]
        speedup = walls["autograd"] / walls["kernel"]
        diff = rel_diff(kern.params, auto.params)
        worst = max(diff, key=diff.get)
        print(f"autograd ESR = {auto.esr:.2e}  (target < {ESR_TARGET:g})  {_verdict(auto.esr < ESR_TARGET)}; "
              f"converged {auto.converged}")
        print(f"autograd fit / kernel fit wall time = {speedup:.1f}x  (target >= {SPEEDUP_TARGET:g}x)  "
              f"{_verdict(speedup >= SPEEDUP_TARGET)}; per iteration "
              f"{(auto.seconds / max(auto.iterations, 1)) / (kern.seconds / max(kern.iterations, 1)):.1f}x")
        print(f"max relative parameter difference kernel vs autograd = {diff[worst]:.2e} ({worst})  "
              f"(target <= {PARAM_RTOL:g})  {_verdict(diff[worst] <= PARAM_RTOL)}")
    if memory:
        fmt = lambda b: "failed" if b is None else f"{b / 2 ** 20:.1f} MiB"  # noqa: E731
        print(f"peak extra resident memory: kernel fit (set-up + level match + solver) "
              f"{fmt(memory['kernel_fit'])}, one torchcomp forward pass {fmt(memory['forward'])} "
              f"(one (B, T) float64 array is {frames.x.nbytes / 2 ** 20:.1f} MiB)")
        if memory["kernel_fit"] and memory["forward"]:
            ratio = memory["kernel_fit"] / memory["forward"]
            print(f"kernel fit / torchcomp forward peak memory = {ratio:.2f}  (target <= {MEMORY_TARGET:g})  "
                  f"{_verdict(ratio <= MEMORY_TARGET)}")


if __name__ == "__main__":
    main()
