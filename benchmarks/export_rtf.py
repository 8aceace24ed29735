"""Real-time factor of the exported TorchScript modules beside the Python renderers, and their agreement.

For each model, the same mono signal (default 10 s at 44.1 kHz, noise bursts with loud and
quiet passages) goes block by block through the exported module (``torch.jit.load`` of the
file ``export.py`` writes) and through the Python renderer ``test_comp.py`` uses
(:class:`dsp.models.ff5_streaming.StreamingCompressor`, :class:`neural.inference.NeuralRenderer`); printed per
block size: the real-time factor (seconds of audio / seconds of wall time) of both, the
CPU-time RTF beside it (the CPU time of the calling thread: what the model costs when the
process has to wait for a shared core, and without the CPU that library thread pools spin
on), and the largest difference between the two outputs over the whole signal.
``benchmarks/host.py`` measures the exported files as a host runs them (each alone in a
fresh process, per-buffer percentiles, memory, silence, latency, reset).
One thread, best of ``--repeats`` runs. The Python renderers run in the same process, and
on a busy machine the numbers of both sides come out lower than those of the exported file
timed alone in a fresh ``python -I`` process (what a host sees): measured 2026-11 at a load
of about 8 on 2 cores, the default S6 hybrid with its audio path at 256 / 2048 samples had a
CPU-time RTF of 0.9 / 4.4 here but 6 / 18 alone.

Models: a one-pair fit, a knob map (two modes, three levels), a gray-box knob map (the same
with the blocks around the compressor), an opto knob map (an LA-2A-like cell in those blocks),
a knob table, and untrained S6, LSTM and FF hybrids on the first map, and an S6 hybrid on the
opto map (the default model's form), with the sizes of ``cfg/model/<backbone>.yaml`` (control
rate included) and its hybrid audio-rate path (``cfg/model/base.yaml``, the weights moved
off the identity); or the exportable sources given with ``--source`` (ckpt.yaml, chain
folder, neural .pt). For a neural model whose block processor has the frozen path
(:mod:`neural.frozen_stream`), the last column times the same processor through its modules
(the path it takes without it; ``DIFFERS`` if the two outputs were not equal bit for bit).

``--check-blocks`` adds an accuracy pass: the exported module streamed in blocks of each
size (0: the whole signal in one call) against the Python renderer in 4096-sample blocks.

    python benchmarks/export_rtf.py [--seconds 10] [--blocks 256 2048] [--repeats 3] [--source PATH ...]
                                    [--only graybox s6] [--check-blocks 1 257 2048 0]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from deploy.build import build, resolve_source  # noqa: E402
from deploy.verify import check_signal  # noqa: E402
from dsp.storage.records import save_checkpoint
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable
from jobs.export import export_model  # noqa: E402

SR = 44100
PARAMS = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
TABLE = {"compress": {100: PARAMS, 70: {**PARAMS, "threshold_db": -18.0, "release_ms": 300.0},
                      40: {**PARAMS, "threshold_db": -12.0, "ratio": 3.0}},
         "limit": {100: {**PARAMS, "ratio": 8.0}, 70: {**PARAMS, "ratio": 10.0, "attack_ms": 0.5},
                   40: {**PARAMS, "threshold_db": -14.0}}}
BLOCKS = {"input_highpass_hz": 20.0, "input_shelf_hz": 12000.0, "input_shelf_db": -4.0, "tube_drive": 2.0,
          "tube_asymmetry": 0.2, "output_highpass_hz": 10.0}
GRAYBOX_TABLE = {m: {pr: {**p, **BLOCKS, "tube_drive": 1.0 + pr / 50.0} for pr, p in lv.items()}
                 for m, lv in TABLE.items()}
# an LA-2A-like optical cell in the same blocks (values of the order the default corpus's opto chain fits)
CELL = {"ratio": 3.5, "attack_ms": 20.0, "release_ms": 40.0, "make_up_db": 3.0, "release_slow_ms": 3000.0,
        "slow_fraction": 0.3, "memory_ms": 1000.0, "memory_depth": 3.0, "sidechain_shelf_hz": 2000.0,
        "sidechain_shelf_db": 6.0}
OPTO_TABLE = {m: {pr: {**CELL, **BLOCKS, "threshold_db": -16.0 - 0.35 * (pr - 40),
                       "input_mix": 0.0 if m == "compress" else 0.05, "tube_drive": 1.0 + pr / 50.0}
                  for pr in (40, 70, 100)} for m in ("compress", "limit")}
SETTING = {"mode": "limit", "peak_reduction": 65.0}
KNOB_SETTING = {"threshold": -15.0, "ratio": 3.0}
KNOB_TABLE = KnobTable(["threshold", "ratio"], [({"threshold": -20.0, "ratio": 4.0}, PARAMS),
                                                 ({"threshold": -10.0, "ratio": 2.0}, {**PARAMS, "ratio": 2.5})])


def synthetic_sources(folder: Path) -> list[Path]:
    """A fit, knob maps (ff5, graybox), a knob table and untrained S6 / LSTM / FF hybrids at their configured sizes."""
    from neural.checkpoint import build_model, model_spec, save_checkpoint as save_neural
    (folder / "fit").mkdir()
    save_checkpoint(folder / "fit" / "ckpt.yaml", {"compressor": "ff5", "params": PARAMS, "esr": 0.0, "loss": 0.0,
                                                   "iterations": 0, "converged": True, "seconds": 0.0,
                                                   "sample_rate": SR})
    (folder / "chain").mkdir()
    KnobMap(TABLE, "ff5").save(folder / "chain" / "knobmap.yaml")
    (folder / "graybox_chain").mkdir()
    KnobMap(GRAYBOX_TABLE, "graybox").save(folder / "graybox_chain" / "knobmap.yaml")
    (folder / "opto_chain").mkdir()
    KnobMap(OPTO_TABLE, "opto").save(folder / "opto_chain" / "knobmap.yaml")
    KNOB_TABLE.save(folder / "knobtable.yaml")
    sources = [folder / "fit", folder / "chain", folder / "graybox_chain", folder / "opto_chain",
               folder / "knobtable.yaml"]
    base = yaml.safe_load((ROOT / "cfg" / "model" / "base.yaml").read_text())
    path_options = (base.get("audio_path") or {}).get("hybrid")
    # the hybrids on the ff5 map, and the default model's (an LRU hybrid on an opto map) and an S6 one
    for backbone, dsp in (("s6", "ff5"), ("lstm", "ff5"), ("ff", "ff5"), ("lru", "opto"), ("s6", "opto")):
        cfg = yaml.safe_load((ROOT / "cfg" / "model" / f"{backbone}.yaml").read_text())
        hp = dict(cfg["hyperparameters"])
        torch.manual_seed(0)
        spec = model_spec(backbone, "hybrid_gain", "fitted", hp, audio_path=path_options)
        model = build_model(spec)
        with torch.no_grad():
            model.backbone.out_proj.weight.normal_(0.0, 0.05)
            if model.audio_path is not None:   # off the identity, as after training
                model.audio_path.fir.add_(torch.randn(model.audio_path.fir.shape) * 0.05)
                model.audio_path.branch.normal_(0.0, 0.3)
        path = folder / (f"{backbone}_hybrid.pt" if dsp == "ff5" else f"{backbone}_{dsp}_hybrid.pt")
        kmap = KnobMap(TABLE, "ff5") if dsp == "ff5" else KnobMap(OPTO_TABLE, "opto")
        save_neural(path, {"model": spec, "variant": "hybrid", "sample_rate": SR, "param_map": kmap.to_record(),
                           "state_dict": model.state_dict(), "config": {}})
        sources.append(path)
    return sources


def timed(run, audio_s: float, repeats: int) -> tuple[float, float, np.ndarray]:
    """Best wall and CPU real-time factors of ``run()`` over ``repeats``, and its output."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.thread_time()
        out = run()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.thread_time() - c)
    return audio_s / best_wall, audio_s / max(best_cpu, 1e-9), out


def _blocks_through(call, x: np.ndarray, block: int):
    for i in range(0, x.shape[1], block):
        yield call(np.ascontiguousarray(x[:, i:i + block]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--blocks", type=int, nargs="+", default=[256, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--source", nargs="*", default=None, help="exportable sources (default: synthetic ones)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="synthetic sources whose name holds one of these words (fit, chain, graybox, knobtable, s6, ...)")
    ap.add_argument("--check-blocks", type=int, nargs="*", default=[],
                    help="block sizes of the accuracy pass (0: the whole signal in one call)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    x = check_signal(args.seconds, SR, channels=1, seed=7)
    tmp = Path(tempfile.mkdtemp(prefix="export-rtf-"))
    sources = [Path(s) for s in args.source] if args.source else synthetic_sources(tmp)
    if args.only:
        sources = [s for s in sources if any(w in s.name for w in args.only)]
    print(f"{args.seconds:g} s mono at {SR} Hz, one thread, best of {args.repeats}; RTF = audio s / wall s "
          f"(CPU-time RTF in brackets)")
    print(f"{'model':34s} {'block':>6s} {'TorchScript RTF':>22s} {'Python RTF':>22s} {'max |diff|':>11s} "
          f"{'Python, modules only':>22s}")
    worst = 0.0
    for src in sources:
        kind, path, fit = resolve_source(src)
        res = export_model(src, tmp / f"{src.stem}.ts")
        module = torch.jit.load(str(res.out))
        ex = build(kind, path, fit, SR if kind != "neural" else None)
        desc, make_reference = ex.description, ex.reference
        setting = {"fit": None, "knobtable": KNOB_SETTING}.get(kind, SETTING)
        knobs = ex.knob_args(setting)
        for block in args.blocks:
            blocks = [np.ascontiguousarray(x[:, i:i + block]) for i in range(0, x.shape[1], block)]
            tensors = [torch.from_numpy(b) for b in blocks]

            def run_script():
                module.reset()
                with torch.inference_mode():
                    return torch.cat([module(t, *knobs) for t in tensors], 1).numpy()

            def run_python(frozen=True):
                proc = make_reference(setting)
                if hasattr(proc, "frozen_ok"):   # a neural block processor: its frozen path on or off
                    proc.frozen_ok = proc.frozen_ok and frozen
                return np.concatenate([proc(b) for b in blocks], 1)

            module(tensors[0], *knobs)  # the first calls of a scripted module optimise its graph
            module(tensors[0], *knobs)
            ws, cs, ys = timed(run_script, args.seconds, args.repeats)
            wp, cp, yp = timed(run_python, args.seconds, args.repeats)
            diff = float(np.max(np.abs(ys - yp)))
            worst = max(worst, diff)
            name = src.stem if kind == "neural" else desc   # a neural file's name says its backbone and map
            name = name if len(name) <= 34 else name[:31] + "..."
            modules = ""
            if kind == "neural" and make_reference(setting).frozen_ok:   # the same renderer through its modules
                wm, cm, ym = timed(lambda: run_python(False), args.seconds, args.repeats)
                modules = f" {wm:10.1f} ({cm:8.1f})" + ("" if np.array_equal(ym, yp) else " DIFFERS")
            print(f"{name:34s} {block:6d} {ws:10.1f} ({cs:8.1f}) {wp:10.1f} ({cp:8.1f}) {diff:11.2e}{modules}")
        if args.check_blocks:
            ref = np.concatenate([p for p in _blocks_through(make_reference(setting), x, 4096)], 1)
            for block in args.check_blocks:
                module.reset()
                with torch.inference_mode():
                    y = np.concatenate(list(_blocks_through(lambda b: module(torch.from_numpy(b), *knobs).numpy(), x,
                                                            block or x.shape[1])), 1)
                diff = float(np.max(np.abs(y - ref)))
                worst = max(worst, diff)
                print(f"{'  accuracy, block ' + str(block or 'whole file'):34s} max |TorchScript - Python(4096)| "
                      f"{diff:.2e}")
    print(f"largest difference from the Python renderer: {worst:.2e} (tolerance 1e-4)")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
