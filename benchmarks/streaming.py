"""Streaming speed of the neural models: real-time factor per backbone, head and block size.

Real-time factor (RTF) = seconds of audio / seconds of wall time to process it block
by block through ``head.process`` on one thread under ``torch.inference_mode()``
(44.1 kHz, batch 1, default sizes). RTF 10 means one second of audio takes 0.1 s.
Only the neural part is timed: for the hybrids the DSP output and gain are given
(they come from the fitted compressor, whose cost is not included here).
The blocks are cut before timing (a host hands the model its buffers).
Each figure is the best of ``--repeats`` runs, taken round-robin over all cases.
Wall-clock RTF is the figure that counts; the CPU-time RTF beside it (CPU seconds of
this process) shows what the model costs when the machine is shared and the process
waits for a core.

    python benchmarks/streaming.py [--seconds 1] [--repeats 7] [--blocks 64 256 1024] [--backbones s6 lru ...]
                                   [--audio-path off on]   # the heads without and with the audio path

Every backbone in :data:`neural.backbones.BACKBONES` is measured (s6, lstm, and the seed
papers' ff, ed, s4d, lru) unless ``--backbones`` names a subset, each with the sizes
and the heads its model file ``cfg/model/<backbone>.yaml`` trains by default (its
hybrid head and the black box; control rate included where the file sets ``frame``).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from neural import BACKBONES, build_head, count_parameters  # noqa: E402
from common.config import load_config, to_plain  # noqa: E402

SAMPLE_RATE = 44100
# hybrids are conditioned on the 5 fitted DSP parameters, the switch and PR, the black box on the knobs
COND_DIM = {"hybrid_gain": 7, "hybrid_add": 7, "blackbox": 2}


def _signals(n: int, seed: int = 0):
    """A noise signal with a slow amplitude envelope, the DSP output and gain stand-ins."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SAMPLE_RATE
    x = 0.5 * torch.randn(1, n, generator=g) * (0.55 + 0.45 * torch.sin(2 * torch.pi * 2.0 * t))
    gain_db = -6.0 * (1.0 + torch.sin(2 * torch.pi * 0.5 * t)).unsqueeze(0)
    y_dsp = x * 10.0 ** (gain_db / 20.0)
    return x, y_dsp, gain_db


def _run(model, cond, blocks) -> tuple:
    """Stream ``blocks`` once from silence; return (wall seconds, CPU seconds)."""
    state = model.initial_state(1)
    wall, cpu = time.perf_counter(), time.process_time()
    for xb, yb, gb in blocks:
        _, state = model.process(xb, yb, gb, cond, state)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(cases, seconds: float, repeats: int) -> dict:
    """Best wall and CPU real-time factors of every (name, model, cond, block) case.

    The repeats go round all cases in turn, so that a busy spell on the machine
    hits every case alike rather than one of them.
    """
    runs = {}
    for name, model, cond, block in cases:
        n = max(1, int(seconds * SAMPLE_RATE) // block) * block
        x, y_dsp, g_dsp = _signals(n)
        blocks = list(zip(x.split(block, 1), y_dsp.split(block, 1), g_dsp.split(block, 1)))
        with torch.inference_mode():
            _run(model, cond, blocks[:20])  # warm-up (and compilation on first use)
        runs[name] = (model, cond, blocks, n / SAMPLE_RATE, [])
    with torch.inference_mode():
        for _ in range(repeats):
            for model, cond, blocks, _, times in runs.values():
                times.append(_run(model, cond, blocks))
    return {
        name: (audio / min(t[0] for t in times), audio / min(t[1] for t in times))
        for name, (_, _, _, audio, times) in runs.items()
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per run (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure, best kept (default 7)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--audio-path", nargs="+", choices=["config", "on", "off"], default=["config"],
                        help="the heads' audio path: as the model file says (default), on (its defaults) or off; "
                             "several are measured side by side")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES),
                        help="backbones to measure (default: all)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {}
    cases = []
    for backbone in args.backbones:
        spec = load_config("train_neural", [f"model={backbone}"]).model
        for variant, mode in itertools.product(("hybrid", "blackbox"), args.audio_path):
            head = spec["heads"][variant]
            path = {"config": (spec.get("audio_path") or {}).get(variant), "on": True, "off": None}[mode]
            model = build_head(head, backbone, COND_DIM[head], audio_path=path if path in (None, True) else to_plain(path),
                               **spec["hyperparameters"]).eval()
            cond = torch.rand(1, COND_DIM[head])
            models[backbone, head, mode] = model
            cases += [((backbone, head, mode, block), model, cond, block) for block in args.blocks]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rtf = measure(cases, args.seconds, args.repeats)

    print(f"streaming real-time factor, {SAMPLE_RATE} Hz, batch 1, {args.threads} thread(s), "
          f"torch {torch.__version__}, best of {args.repeats} x {args.seconds:g} s")
    print("cells: wall / CPU  (audio seconds per wall second / per CPU second of this process; "
          f"load average at start {load:.2f} on {os.cpu_count()} CPUs)")
    header = f"{'backbone':<9}{'head':<13}{'frame':>6}{'params':>7}" + "".join(f"{'@' + str(b):>15}" for b in args.blocks)
    header = header.replace(f"{'frame':>6}", f"{'path':>7}{'frame':>6}")
    print(header)
    print("-" * len(header))
    for (backbone, head, mode), model in models.items():
        cells = "".join(f"{'%.1f / %.1f' % rtf[backbone, head, mode, b]:>15}" for b in args.blocks)
        on = "on" if model.audio_path is not None else "off"
        print(f"{backbone:<9}{head:<13}{on:>7}{model.frame:>6}{count_parameters(model):>7}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
