"""Real-time factor of the stand-in optical leveller on one thread.

    python benchmarks/standin_speed.py [--seconds 60] [--repeats 3]

Renders synthesised program material (``audio.material.synthesize``) at a few
knob settings and prints the best-of-N real-time factor (seconds of audio per
second of wall time). The numba kernel is compiled (or loaded from its cache)
before timing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from audio.material import synthesize  # noqa: E402
from audio.standin import render  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args()

    sr = args.sample_rate
    t0 = time.perf_counter()
    render(np.zeros(64, np.float32), sr, 50.0, "compress")
    compile_s = time.perf_counter() - t0
    x = synthesize(args.seconds, sr, seed=0)

    print(f"stand-in render, {args.seconds:g} s of material at {sr} Hz, one thread "
          f"(first call incl. compile/cache load: {compile_s:.2f} s)")
    print(f"{'mode':<9} {'PR':>4} {'best s':>8} {'x real time':>12}")
    for mode in ("compress", "limit"):
        for pr in (40.0, 70.0, 100.0):
            best = min(_timed(x, sr, pr, mode) for _ in range(max(args.repeats, 1)))
            print(f"{mode:<9} {pr:>4g} {best:>8.3f} {args.seconds / best:>12.1f}")
    return 0


def _timed(x: np.ndarray, sr: int, pr: float, mode: str) -> float:
    t0 = time.perf_counter()
    render(x, sr, pr, mode)
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
