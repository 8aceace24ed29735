"""Host-like check of the exported models: what a plug-in host sees, buffer size by buffer size.

Each exported file (``export.py``'s TorchScript) is loaded alone in a fresh ``python -I``
process (nothing of this project importable: torch only) with one torch thread, and
streamed as a host streams it, one buffer per call. Printed per model and buffer size:

- the CPU time per buffer (this thread's, ``time.thread_time_ns``: what the model costs,
  whatever else the machine runs), median and 99th percentile, over a long stream;
- the real-time factor: seconds of audio per CPU second over that stream;
- the memory growth over the stream (resident set, after the first minute to the end);
- the time per buffer on silence after the loud stream, median and 99th percentile over
  the last half of ``--silence`` seconds of digital silence (a decaying filter state must not
  reach the subnormal range, where every multiplication costs tens of times more);
- the latency: what the module reports (``latency()``) and what an impulse shows;
- whether ``reset()`` returns to the start: the same signal after ``reset()`` gives the
  output of a freshly loaded file, bit for bit.

Models (built synthetically, as ``benchmarks/export_rtf.py`` does, at ``--rate``): a
one-pair ff5 fit, a gray-box knob map, and the default S6 and LSTM hybrids
(``cfg/model/<backbone>.yaml`` sizes, control rate, ``cfg/model/base.yaml``'s audio path,
weights moved off their start) on that gray-box map; an opto knob map (an LA-2A-like cell in
the same blocks) and three hybrids on it (``opto``, ``lru_opto``, ``s6_opto``, ``lstm_opto``: the
default model class's, the LRU the default backbone); the hybrids are checkpoints at
``--rate`` (their control frame scaled to it, 35 samples at 48 kHz). Or exportable
sources given with ``--source``. The signal is the project's synthesised program material
(drums, bass, plucks, chords, speech-like bursts) at -12 dBFS RMS or so, looped.

    python benchmarks/host.py [--models fit graybox s6 lstm opto lru_opto s6_opto lstm_opto] [--blocks 32 64 128 256 512 2048]
                              [--minutes 10] [--silence 60] [--rate 48000] [--channels 1]
                              [--source PATH ...] [--json OUT.json] [--python] [--neutone PYTHON]

``--python`` adds the hybrids streamed through the Python renderer's block processor
(``NeuralRenderer.block_processor``: what ``test_comp.py --neural`` and ``leveller`` stream
with), in a fresh process of its own (the project importable), timed the same way.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

MODELS = ("fit", "graybox", "s6", "lstm", "opto", "lru_opto", "s6_opto", "lstm_opto")
LABELS = {"fit": "one-pair ff5 fit", "graybox": "gray-box knob map", "s6": "S6 hybrid (gray-box, path)",
          "lstm": "LSTM hybrid (gray-box, path)", "opto": "opto knob map", "lru_opto": "LRU hybrid (opto, path)",
          "s6_opto": "S6 hybrid (opto, path)",
          "lstm_opto": "LSTM hybrid (opto, path)"}
HYBRIDS = {"s6": ("s6", "graybox"), "lstm": ("lstm", "graybox"), "lru_opto": ("lru", "opto"), "s6_opto": ("s6", "opto"),
           "lstm_opto": ("lstm", "opto")}   # model name -> (backbone, the DSP map it is trained on)
SETTING = (65.0, 1.0)   # peak reduction, mode (limit): the knob arguments of the knob maps and hybrids

# the child: torch only (python -I, run from a temporary folder), one thread
CHILD = r'''
import array, json, sys, time
import torch
torch.set_num_threads(1)
a = json.loads(sys.argv[1])
knobs = a["knobs"]
block = a["block"]
rate = a["rate"]
loud = torch.load(a["signal"])
channels = loud.shape[0]

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20

def blocks_of(x):
    return [x[:, i:i + block].contiguous() for i in range(0, x.shape[1] - block + 1, block)]

class PythonProcessor:
    """The Python renderer's block processor (what test_comp.py --neural and leveller stream with),
    called as a host calls an exported module."""

    def __init__(self):
        sys.path.insert(0, a["root"])
        from neural.inference import NeuralRenderer
        self.renderer = NeuralRenderer.load(a["file"])
        self.reset()

    def reset(self):
        setting = {"mode": "limit" if knobs[1] >= 0.5 else "compress", "peak_reduction": knobs[0]}
        self.proc = self.renderer.block_processor(rate, setting)

    def forward(self, b, *setting):   # the setting is fixed at reset (the stream's knobs)
        return torch.from_numpy(self.proc(b.numpy()))

    def latency(self):
        return 0


def load():
    if a["python"]:
        return PythonProcessor()
    if not a["neutone"]:
        return torch.jit.load(a["file"])
    from neutone_sdk.utils import load_neutone_model
    model = load_neutone_model(a["file"])[0]
    model.set_daw_sample_rate_and_buffer_size(rate, block)
    return model

params = torch.zeros(4, block)   # a Neutone model's knobs, 0..1 per sample
if knobs:
    params[0], params[1] = knobs[0] / 100.0, knobs[1]

def caller(model):
    if a["neutone"]:   # the wrapper reuses its buffers: a host copies what comes out
        return lambda b: model.forward(b, params).clone()
    return lambda b: model.forward(b, *knobs)

m = load()
call = caller(m)
with torch.inference_mode():
    probe = blocks_of(loud[:, :rate * 2])
    ys = [call(b) for b in probe]          # the first calls optimise the graph
    m.reset()
    first = torch.cat([call(b) for b in probe], 1)
    fresh = load()
    again = torch.cat([caller(fresh)(b) for b in probe], 1)
    reset_ok = bool(torch.equal(first, again))
    # an impulse after silence: the first sample that moves is the delay
    m.reset()
    imp = torch.zeros(channels, 8 * block)
    at = 4 * block + 3
    imp[:, at] = 0.5
    out = torch.cat([call(b) for b in blocks_of(imp)], 1)
    moved = (out.abs() > 0).any(0).nonzero()
    delay = int(moved[0]) - at if moved.numel() else -1
    if a["neutone"]:
        reported = int(m.calc_buffering_delay_samples()) + int(m.calc_model_delay_samples())
    else:
        reported = int(m.latency()) if hasattr(m, "latency") else None
    # the long stream: the loud material looped, one buffer per call, CPU time of this thread
    m.reset()
    loops = max(1, int(round(a["minutes"] * 60 * rate / loud.shape[1])))
    src = blocks_of(loud)
    # the timings go to preallocated arrays: the harness itself must not grow with the stream
    times = array.array("q", bytes(8 * loops * len(src)))
    rss_start = None
    minute = 60 * rate // block
    k = 0
    for _ in range(loops):
        for b in src:
            t = time.thread_time_ns()
            call(b)
            times[k] = time.thread_time_ns() - t
            k += 1
            if k == minute:
                rss_start = rss_mb()
    rss_end = rss_mb()
    silence = torch.zeros(channels, block)
    quiet = array.array("q", bytes(8 * (int(a["silence"] * rate) // block)))
    for i in range(len(quiet)):
        t = time.thread_time_ns()
        call(silence)
        quiet[i] = time.thread_time_ns() - t
    quiet = quiet[len(quiet) // 2:]
    # the harness: an empty scripted call from this loop
    empty = torch.jit.script(torch.nn.Identity())
    calls = array.array("q")
    for b in src[:2000]:
        t = time.thread_time_ns()
        empty(b)
        calls.append(time.thread_time_ns() - t)
    # the machine's pace: one small tensor operation in TorchScript (20 chained adds on 64 doubles)
    adds = torch.jit.CompilationUnit("def f(x: Tensor):\n" + "    x = x + 1.0\n" * 20 + "    return x\n").f
    row = torch.zeros(1, 64, dtype=torch.float64)
    ops = array.array("q")
    for _ in range(2000):
        t = time.thread_time_ns()
        adds(row)
        ops.append(time.thread_time_ns() - t)

def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] / 1000.0

print(json.dumps({"median_us": q(times, 0.5), "p99_us": q(times, 0.99),
                  "rtf": len(times) * block / rate / (sum(times) / 1e9), "audio_s": len(times) * block / rate,
                  "rss_start_mb": rss_start if rss_start is not None else rss_end, "rss_end_mb": rss_end,
                  "silence_median_us": q(quiet, 0.5), "silence_p99_us": q(quiet, 0.99),
                  "reported_latency": reported, "impulse_delay": delay, "reset_ok": reset_ok,
                  "harness_us": q(calls, 0.5), "op_us": (q(ops, 0.5) - q(calls, 0.5)) / 20}))
'''


def synthetic_sources(folder: Path, rate: int, models) -> dict:
    """The exportable sources of :data:`MODELS` at ``rate`` (``benchmarks/export_rtf.py``'s tables)."""
    import yaml
    from export_rtf import GRAYBOX_TABLE, OPTO_TABLE, PARAMS
    from dsp.knobs.knobmap import KnobMap
    from dsp.storage.records import save_checkpoint
    from neural.checkpoint import build_model, model_spec, save_checkpoint as save_neural
    from neural.control import frame_at_rate
    sources = {}
    if "fit" in models:
        (folder / "fit").mkdir()
        save_checkpoint(folder / "fit" / "ckpt.yaml", {"compressor": "ff5", "params": PARAMS, "esr": 0.0, "loss": 0.0,
                                                       "iterations": 0, "converged": True, "seconds": 0.0,
                                                       "sample_rate": rate})
        sources["fit"] = folder / "fit"
    maps = {"graybox": KnobMap(GRAYBOX_TABLE, "graybox"), "opto": KnobMap(OPTO_TABLE, "opto")}
    for name, kmap in maps.items():
        (folder / name).mkdir()
        kmap.save(folder / name / "knobmap.yaml")
        if name in models:
            sources[name] = folder / name
    base = yaml.safe_load((ROOT / "cfg" / "model" / "base.yaml").read_text())
    path_options = (base.get("audio_path") or {}).get("hybrid")
    for name, (backbone, dsp) in HYBRIDS.items():
        if name not in models:
            continue
        hp = dict(yaml.safe_load((ROOT / "cfg" / "model" / f"{backbone}.yaml").read_text())["hyperparameters"])
        hp["frame"] = frame_at_rate(int(hp["frame"]), rate)
        torch.manual_seed(0)
        spec = model_spec(backbone, "hybrid_gain", "fitted", hp, audio_path=path_options)
        model = build_model(spec)
        with torch.no_grad():   # off the start, as after training
            model.backbone.out_proj.weight.normal_(0.0, 0.05)
            model.audio_path.fir.add_(torch.randn(model.audio_path.fir.shape) * 0.05)
            model.audio_path.branch.normal_(0.0, 0.3)
            model.audio_path.shaper_base.copy_(torch.tensor([0.05, -0.02]))
        path = folder / f"{name}_hybrid.pt"
        save_neural(path, {"model": spec, "variant": "hybrid", "sample_rate": rate,
                           "param_map": maps[dsp].to_record(), "state_dict": model.state_dict(), "config": {}})
        sources[name] = path
    return sources


def program(rate: int, channels: int, seconds: float = 30.0) -> torch.Tensor:
    from audio.material import synthesize
    x = np.asarray(synthesize(seconds, rate, seed=3), dtype=np.float32).reshape(1, -1)
    if channels > 1:   # the other channels a little later and quieter: not the same signal
        x = np.concatenate([x] + [0.8 * np.roll(x, 37 * c, axis=1) for c in range(1, channels)], 0)
    return torch.from_numpy(np.ascontiguousarray(x))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--blocks", type=int, nargs="+", default=[32, 64, 128, 256, 512, 2048])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the timed stream (default 10)")
    ap.add_argument("--silence", type=float, default=60.0, help="seconds of silence after it (default 60)")
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--source", nargs="*", default=None, help="exportable sources instead of the synthetic ones")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--python", action="store_true",
                    help="also time the hybrids through the Python renderer's block processor (NeuralRenderer."
                         "block_processor: test_comp.py --neural, leveller), the same way")
    ap.add_argument("--neutone", default=None, metavar="PYTHON",
                    help="the Python of neutone-sdk's environment (docs/NEUTONE.md): also export the LRU hybrid on opto "
                         "(the default; else the S6 hybrid on the gray-box) as a "
                         "Neutone model (the SDK's submission checks) and time it the same way, stereo at --rate")
    args = ap.parse_args(argv)

    from jobs.export import export_model
    tmp = Path(tempfile.mkdtemp(prefix="host-"))
    if args.source:
        sources = {Path(s).stem: Path(s) for s in args.source}
    else:
        sources = synthetic_sources(tmp, args.rate, args.models)
    files = {}
    for name, src in sources.items():
        res = export_model(src, tmp / f"{name}.ts", args.rate if name in ("fit", "graybox") else None)
        files[name] = res
    signal = tmp / "program.pt"
    torch.save(program(args.rate, args.channels), signal)
    load = os.getloadavg()
    print(f"machine: {machine()}; load average {load[0]:.2f} at start")
    print(f"{args.rate} Hz, {args.channels} channel(s), one thread, each model alone in a fresh `python -I` "
          f"process; CPU time of the calling thread; a {args.minutes:g}-minute stream of program material, "
          f"then {args.silence:g} s of silence")
    header = (f"{'model':30s} {'buffer':>6s} {'median us':>10s} {'p99 us':>9s} {'RTF':>7s} {'mem MB':>7s} "
              f"{'silence us':>11s} {'latency':>8s} {'reset':>6s}")
    print(header)
    print("-" * len(header))
    rows = []
    runs = [(name, res.out, res.kind, sys.executable, False, signal) for name, res in files.items()]
    if args.python:   # the neural sources again, through the Python renderer's block processor
        for name in [n for n in sources if n in HYBRIDS]:
            LABELS[name + "_python"] = LABELS[name].replace("(", "(Python, ", 1)
            runs.append((name + "_python", sources[name], "python", sys.executable, False, signal))
    neutone_source = next((n for n in ("lru_opto", "s6") if n in sources), None)   # the default hybrid first
    if args.neutone and neutone_source:
        stereo = tmp / "program-stereo.pt"
        torch.save(program(args.rate, 2), stereo)
        start = time.perf_counter()
        out_dir = tmp / f"{neutone_source}_neutone"
        made = subprocess.run([args.neutone, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                               "from jobs.export import export_neutone; export_neutone(sys.argv[2], sys.argv[3])",
                               str(ROOT), str(sources[neutone_source]), str(out_dir)], capture_output=True,
                              text=True, cwd=ROOT)
        label = LABELS[neutone_source].split(" (")[0]
        if made.returncode != 0:
            print(f"Neutone export failed: {(made.stderr.strip().splitlines() or ['?'])[-1]}")
        else:
            print(f"Neutone: the {label} passed the SDK's save_neutone_model checks (submission, "
                  f"{time.perf_counter() - start:.0f} s); timed below as the plug-in runs it (stereo)")
            LABELS[f"{neutone_source}_neutone"] = f"{LABELS[neutone_source]}, Neutone model"
            runs.append((f"{neutone_source}_neutone", out_dir / "model.nm", "neutone", args.neutone, True, stereo))
    for name, out_file, kind, python, neutone, sig in runs:
        knobs = [] if kind == "fit" else [SETTING[0], SETTING[1]]
        for block in args.blocks:
            payload = json.dumps({"file": str(out_file), "knobs": knobs, "block": block, "rate": args.rate,
                                  "signal": str(sig), "minutes": args.minutes, "silence": args.silence,
                                  "neutone": neutone, "python": kind == "python", "root": str(ROOT)})
            out = subprocess.run([python, "-I", "-c", CHILD, payload], capture_output=True, text=True, cwd=tmp)
            if out.returncode != 0:
                print(f"{LABELS.get(name, name):30s} {block:6d} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r.update(model=name, block=block)
            rows.append(r)
            latency = f"{r['reported_latency']}/{r['impulse_delay']}"
            print(f"{LABELS.get(name, name):30s} {block:6d} {r['median_us']:10.1f} {r['p99_us']:9.1f} {r['rtf']:7.1f} "
                  f"{r['rss_end_mb'] - r['rss_start_mb']:7.1f} {r['silence_median_us']:5.1f}/{r['silence_p99_us']:<5.1f} "
                  f"{latency:>8s} {'yes' if r['reset_ok'] else 'NO':>6s}", flush=True)
    load_end = os.getloadavg()
    if rows:
        print(f"harness: an empty scripted call costs {np.median([r['harness_us'] for r in rows]):.1f} us per "
              f"buffer here (included above); one small tensor operation "
              f"{np.median([r.get('op_us', float('nan')) for r in rows]):.2f} us (the machine's pace); "
              f"load average {load_end[0]:.2f} at the end")
    print("columns: CPU us per buffer (median, 99th percentile); RTF = audio s / CPU s over the stream; memory growth "
          "from minute 1 to the end; silence: median/p99 us per buffer on silence after it; latency: "
          "reported/impulse (samples); reset: same output as a freshly loaded file")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "load": [load[0], load_end[0]], "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
