"""Peak memory of one fit on a long pair, against the pair's float32 size.

A synthetic mono pair of ``--minutes`` (default 20, the length of a real SignalTrain
file) is written to ``--dir`` (default a folder under /tmp; never the repository):
program material (:func:`audio.material.synthesize`, one seed per minute) through
the plain digital compressor (:class:`dsp.models.ff5_streaming.StreamingCompressor`), both written
block by block as float32 wav.

The fit then runs in a fresh process, as ``train_comp.py data.input=.. data.target=..``
does: read the pair (:func:`audio.io.read_pair`), frame it
(:func:`audio.framing.frame_pair`), the target energy for the progress bar
(:func:`dsp.derivatives.autograd.target_energy`), and :func:`dsp.fitting.ff5.fit_frames` with the
fused kernel from the published default start. Memory does not grow with the
iterations, so ``--iterations`` (default 3) caps the Newton steps to keep the run
short; ``--iterations 100`` fits to convergence.

Reported side by side: the process's resident memory after the imports and the
kernel's compilation (the fixed overhead), its peak (``ru_maxrss``), the peak
above the overhead, the pair's float32 size (input + target) and their ratio.
Target: ratio <= 1.5.

    python benchmarks/fit_memory.py [--minutes 20] [--iterations 3] [--dir /tmp/fit_memory]
    python benchmarks/fit_memory.py --process [10 20] [--classes ff5 graybox opto]   # the whole train_comp.py process
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
TRUTH = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0}
TARGET_RATIO = 1.5


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_pair(folder: Path, minutes: float) -> tuple[Path, Path]:
    """Write the synthetic pair (once; reused when already there)."""
    import soundfile as sf

    from audio.material import synthesize
    from dsp.models.ff5_streaming import StreamingCompressor

    inp, tgt = folder / f"input_{minutes:g}min.wav", folder / f"target_{minutes:g}min.wav"
    if inp.is_file() and tgt.is_file():
        return inp, tgt
    folder.mkdir(parents=True, exist_ok=True)
    comp = StreamingCompressor(TRUTH, SR)
    total = int(round(minutes * 60 * SR))
    with sf.SoundFile(str(inp) + ".part", "w", SR, 1, "FLOAT", format="WAV") as fx, \
            sf.SoundFile(str(tgt) + ".part", "w", SR, 1, "FLOAT", format="WAV") as fy:
        done, seed = 0, 0
        while done < total:
            n = min(60 * SR, total - done)
            x = synthesize(n / SR, SR, seed=seed)[None, :]
            fx.write(x.T)
            fy.write(comp.process(x).T)
            done, seed = done + n, seed + 1
    os.replace(str(inp) + ".part", inp)
    os.replace(str(tgt) + ".part", tgt)
    return inp, tgt


def measure(inp: str, tgt: str, iterations: int) -> dict:
    """One fit in this (fresh) process; returns the memory figures."""
    import warnings

    import numpy as np

    from audio.framing import make_frames
    from audio.io import read_pair
    from audio.framing import frame_pair
    from dsp.fitting.ff5 import FitOptions, fit_frames
    from dsp.fitting.newton import NewtonOptions
    from dsp.derivatives.autograd import target_energy

    # compile the kernels (numba cache) and initialise torch on a tiny pair first
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, 3 * SR).astype(np.float32)
    fit_frames(make_frames(x, 0.5 * x, SR), None, FitOptions(newton=NewtonOptions(max_iterations=1)))
    del x
    overhead = _rss_mib()
    peak_before = _peak_mib()

    t0 = time.perf_counter()
    x, y, sr = read_pair(inp, tgt)
    pair_mib = (x.nbytes + y.nbytes) / 2 ** 20
    frames = frame_pair(x, y, sr, 12.0, 1.0, tgt)
    energy = target_energy(frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_frames(frames, None, FitOptions(newton=NewtonOptions(max_iterations=iterations)),
                         level_match=True)
    seconds = time.perf_counter() - t0
    peak = _peak_mib()
    return {"overhead_mib": overhead, "peak_before_mib": peak_before, "peak_mib": peak,
            "pair_mib": pair_mib, "seconds": seconds, "iterations": res.iterations,
            "esr": res.esr, "energy": energy, "params": res.params}


def whole_process(inp: Path, tgt: Path, compressor: str, iterations: int, folder: Path) -> tuple[float, float]:
    """``python train_comp.py data.input=.. data.target=..`` as a user runs it, in a fresh
    process: (its peak resident memory in MiB, its seconds). The child's peak, read by a
    wrapper process of its own (``RUSAGE_CHILDREN`` holds the largest child it waited for)."""
    cmd = [sys.executable, str(ROOT / "train_comp.py"), f"data.input={inp}", f"data.target={tgt}",
           f"ckpt_dir={folder / ('fit_' + compressor)}", f"compressor={compressor}",
           f"optimiser.max_iterations={iterations}", "quiet=true"]
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True)
    peak, seconds = out.stdout.split()[-2:]
    return float(peak), float(seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--iterations", type=int, default=3, help="Newton steps (memory does not grow with them)")
    ap.add_argument("--dir", default="/tmp/fit_memory", help="where the synthetic pair is written")
    ap.add_argument("--measure", nargs=2, metavar=("INPUT", "TARGET"), help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument("--process", nargs="*", type=float, metavar="MINUTES",
                    help="instead: the whole train_comp.py process's peak memory on mono pairs of these lengths "
                         "(default 10 and 20 minutes), each of --classes; target <= 800 MiB at 10 minutes")
    ap.add_argument("--classes", nargs="+", default=["ff5", "graybox", "opto"], choices=["ff5", "graybox", "opto"],
                    help="the model classes of --process (default all three; opto is train_comp.py's default)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.measure:  # the child: one fit, figures as JSON on stdout
        print(json.dumps(measure(*a.measure, a.iterations)))
        return 0
    folder = Path(a.dir)
    if ROOT in folder.resolve().parents or folder.resolve() == ROOT:
        raise SystemExit("write the pair outside the repository (--dir)")
    if a.process is not None:
        print(f"{'minutes':>7} {'class':>8} {'pair f32 MiB':>13} {'peak RSS MiB':>13} {'target':>8} {'seconds':>8}")
        for minutes in a.process or [10.0, 20.0]:
            inp, tgt = write_pair(folder, minutes)
            pair = 2 * minutes * 60 * SR * 4 / 2 ** 20
            for compressor in a.classes:
                peak, seconds = whole_process(inp, tgt, compressor, a.iterations, folder)
                target = "<= 800" if minutes == 10 else ""
                print(f"{minutes:7g} {compressor:>8} {pair:13.0f} {peak:13.0f} {target:>8} {seconds:8.1f}", flush=True)
        return 0
    inp, tgt = write_pair(folder, a.minutes)
    out = subprocess.run([sys.executable, __file__, "--measure", str(inp), str(tgt),
                          "--iterations", str(a.iterations)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    above = r["peak_mib"] - r["overhead_mib"]
    ratio = above / r["pair_mib"]
    print(f"pair: {a.minutes:g} min mono at {SR} Hz ({inp.name}, {tgt.name})")
    print(f"{'overhead MiB':>13} {'peak MiB':>9} {'fit MiB':>8} {'pair f32 MiB':>13} {'ratio':>6} "
          f"{'target':>7} {'iters':>5} {'seconds':>8} {'ESR':>10}")
    print(f"{r['overhead_mib']:13.0f} {r['peak_mib']:9.0f} {above:8.0f} {r['pair_mib']:13.0f} "
          f"{ratio:6.2f} {'<= ' + format(TARGET_RATIO, 'g'):>7} {r['iterations']:5d} {r['seconds']:8.1f} "
          f"{r['esr']:10.3e}")
    if a.json:
        print(json.dumps({**r, "fit_mib": above, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
