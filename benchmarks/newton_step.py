"""Cost of one Newton step: torchcomp forward and autograd derivatives vs the fused kernel.

On N frames of 12 s of synthetic program material (noise and tone bursts at random
levels) whose target is the plain digital compressor, times at the published start
point (-36 dB, 4:1, 1 ms, 200 ms, 0 dB):

- one torchcomp forward (the loss, :meth:`AutogradObjective.loss`);
- the autograd gradient and the autograd Hessian (reverse over reverse);
- the fused kernel: loss only, loss + gradient, loss + gradient + exact Hessian;

each the median of a few repeats after a warm-up, and the peak extra resident memory
of each step, measured in a fresh process per step (the kernel against a torchcomp
forward pass on the same audio).

Usage: ``python benchmarks/newton_step.py [--frames N] [--repeats R] [--no-memory]``
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

from audio.framing import Frames, make_frames  # noqa: E402
from dsp.models.ff5 import compress
from dsp.derivatives.ff5_kernel import KernelObjective
from dsp.derivatives.autograd import AutogradObjective
from dsp.models.parameters import DEFAULT_INIT, Parameterisation

SR = 44100
FRAME_S = 12.0
OVERLAP_S = 1.0
TARGET = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 120.0, "make_up_db": 3.0}


def program(rng: np.random.Generator, n: int, sr: int = SR) -> np.ndarray:
    """Program-like test material: bursts of white noise, dull noise and harmonic tones.

    Each burst lasts 30-600 ms at a level drawn from -45..-3 dBFS, with 5 ms fades.
    """
    out = np.zeros(n)
    fade = int(0.005 * sr)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    pos = 0
    while pos < n:
        length = min(int(rng.uniform(0.03, 0.6) * sr), n - pos)
        kind = rng.integers(3)
        if kind == 0:
            seg = rng.standard_normal(length)
        elif kind == 1:
            pole = rng.uniform(0.9, 0.995)
            seg = scipy.signal.lfilter([1.0 - pole], [1.0, -pole], rng.standard_normal(length))
        else:
            t = np.arange(length) / sr
            f0 = rng.uniform(60.0, 1000.0)
            seg = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 5))
        seg = seg / (np.sqrt(np.mean(seg ** 2)) + 1e-12)
        seg *= 10.0 ** (rng.uniform(-45.0, -3.0) / 20.0)
        if length > 2 * fade:
            seg[:fade] *= ramp
            seg[-fade:] *= ramp[::-1]
        out[pos:pos + length] = seg
        pos += length
    return np.clip(out, -1.0, 1.0)


def build(frames_n: int, seed: int):
    """Frames, parameter map and the evaluation point."""
    rng = np.random.default_rng(seed)
    n = int(round(((FRAME_S - OVERLAP_S) * frames_n + OVERLAP_S) * SR))
    x = program(rng, n)
    param = Parameterisation(SR)
    target = compress(torch.from_numpy(x)[None], param.natural(param.from_physical(TARGET)))[0].numpy()
    frames = make_frames(x, target, SR, FRAME_S, OVERLAP_S)
    assert frames.x.shape[0] == frames_n, frames.x.shape
    return frames, param, param.from_physical(DEFAULT_INIT)


OBJECTIVES = {"autograd": AutogradObjective, "kernel": KernelObjective}

# name -> (label, objective, method)
STEPS = {
    "forward": ("torchcomp forward (loss)", "autograd", "loss"),
    "auto_grad": ("autograd gradient", "autograd", "loss_grad"),
    "auto_hess": ("autograd Hessian", "autograd", "loss_grad_hess"),
    "kern_loss": ("kernel loss only", "kernel", "loss"),
    "kern_grad": ("kernel loss + gradient", "kernel", "loss_grad"),
    "kern_hess": ("kernel loss + gradient + Hessian", "kernel", "loss_grad_hess"),
}


def head(frames, seconds: float = 2.0) -> Frames:
    """The first seconds of every frame (for warming up without touching the full data)."""
    n = int(seconds * frames.sample_rate)
    return Frames(frames.x[:, :n].copy(), frames.y[:, :n].copy(), np.minimum(frames.lengths, n),
                  frames.warmup, frames.sample_rate)


# --- memory: one fresh process per step, high-water mark reset before the step ----------

from benchmarks.memory import reset_peak as _reset_peak, status_kib as _status_kib  # noqa: E402


def _measure_child(name: str, frames_n: int, seed: int) -> None:
    """Runs in a child process: print the peak extra resident memory (bytes) of building
    the objective, then of one call of the step (its first on the full data)."""
    import gc
    _, kind, method = STEPS[name]
    frames, param, z = build(frames_n, seed)
    getattr(OBJECTIVES[kind](head(frames), param), method)(z)  # warm-up: numba cache, torch init
    gc.collect()
    base = _reset_peak()
    obj = OBJECTIVES[kind](frames, param)
    setup = _status_kib("VmHWM") - base
    gc.collect()
    base = _reset_peak()
    getattr(obj, method)(z)
    print(setup * 1024, (_status_kib("VmHWM") - base) * 1024)


def peak_memory(name: str, frames_n: int, seed: int) -> tuple[float, float] | None:
    """(objective set-up, one call) peak extra resident bytes, from a fresh process.

    glibc is told to give large blocks back to the system at once, so memory freed by
    one allocation is not silently reused by the next and the high-water mark is honest.
    """
    import os
    cmd = [sys.executable, __file__, "--frames", str(frames_n), "--seed", str(seed), "--measure", name]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return None
    setup, step = res.stdout.strip().splitlines()[-1].split()
    return float(setup), float(step)


# --- timing ----------------------------------------------------------------------------

def median_time(fn, z, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(z)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3, help="number of 12 s frames (default 3)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per step (median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.frames < 1:
        ap.error("--frames must be at least 1")
    if args.measure:
        _measure_child(args.measure, args.frames, args.seed)
        return

    frames, param, z = build(args.frames, args.seed)
    objectives = {kind: cls(frames, param) for kind, cls in OBJECTIVES.items()}
    table = {name: (label, getattr(objectives[kind], method)) for name, (label, kind, method) in STEPS.items()}
    for name, (_, fn) in table.items():  # warm-up: numba compile / cache load, torch init
        if name != "auto_hess":               # (slow, and nothing left to warm)
            fn(z)

    times, results = {}, {}
    for name, (_, fn) in table.items():
        times[name], results[name] = median_time(fn, z, args.repeats)
    memory = {}
    if not args.no_memory:
        for name in table:
            memory[name] = peak_memory(name, args.frames, args.seed)

    B, T = frames.x.shape
    print(f"Newton step on {B} frames x {FRAME_S:g} s ({B * T} samples, {frames.scored_samples} scored), "
          f"float64, torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}, "
          f"median of {args.repeats}")
    print(f"{'step':34s} {'seconds':>9s} {'x forward':>10s} {'peak MiB':>9s} {'set-up MiB':>11s}")
    fwd = times["forward"]
    for name, (label, _) in table.items():
        mem = memory.get(name)
        step_s, setup_s = ("-", "-") if mem is None else (f"{mem[1] / 2 ** 20:.2f}", f"{mem[0] / 2 ** 20:.1f}")
        print(f"{label:34s} {times[name]:9.4f} {times[name] / fwd:10.3f} {step_s:>9s} {setup_s:>11s}")
    print(f"peak MiB: extra resident memory of one call; set-up MiB: building the objective "
          f"(one (B, T) float64 array is {frames.x.nbytes / 2 ** 20:.1f} MiB)")

    fused = times["kern_hess"]
    speedup = times["auto_hess"] / fused
    print(f"kernel (loss+grad+Hessian) / torchcomp forward = {fused / fwd:.3f}  (target <= 3)  "
          f"{'met' if fused / fwd <= 3 else 'MISSED'}")
    print(f"autograd Hessian / kernel (loss+grad+Hessian)  = {speedup:.1f}x  (target >= 10x)  "
          f"{'met' if speedup >= 10 else 'MISSED'}")
    print(f"kernel loss only / torchcomp forward = {times['kern_loss'] / fwd:.3f}")
    if memory.get("kern_hess") and memory.get("forward"):
        print(f"peak memory of a call, kernel (loss+grad+Hessian) / torchcomp forward = "
              f"{memory['kern_hess'][1] / memory['forward'][1]:.3f}")

    la, ga, ha = results["auto_hess"]
    lk, gk, hk = results["kern_hess"]
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max())  # noqa: E731
    print(f"agreement with autograd (max abs diff / max abs entry): loss {abs(lk - la) / abs(la):.1e}, "
          f"gradient {rel(gk, ga):.1e}, Hessian {rel(hk, ha):.1e}")


if __name__ == "__main__":
    main()
