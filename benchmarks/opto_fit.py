"""The optical-cell model (``compressor=opto``) against the gray-box, per mode, under the protocol.

    python benchmarks/opto_fit.py [--data standin|standin_real] [--cache /work/cache]
        [--classes graybox opto] [--one-unit] [--unseen 45 65 85] [--json OUT.json]
        [--override KEY=VALUE ...]   (e.g. a reduced corpus: data.corpus.train_seconds=20)

On the stand-in corpus of ``--data`` (``cfg/data/<data>.yaml``: ``standin``, the default
grid corpus; ``standin_real``, the real SignalTrain v1.1 file table), generated into
``--cache`` if missing:

- each class's per-level chain (:func:`jobs.chain.run_chain`, PR 100 -> 40 on the **Train**
  3c takes, each level from the previous one, the blocks fitted at the first level and
  held; ``train_comp.py``'s settings), with the ``--unseen`` levels left out of every fit;
  ``--one-unit`` adds ``opto`` with one set of blocks for both modes;
- the knob map of each chain reaches every setting that has a **Test** take (any tag); every
  figure is on those takes: pre-emphasised ESR after the frames' 1 s warm-up (the fits'
  objective), and a gain-trajectory error: the RMS difference (dB) between the gain
  reduction traces of the target and of the model's output, both estimated identically
  from the input and the output (zero-phase one-pole smoothing of the squared signals,
  30 ms, the ratio in dB), on the samples after the first second where the smoothed
  input is above -50 dBFS;
- the fitted parameters within 1 % of a range end (of the log width for log-scaled ones),
  releases apart; whether the threshold falls as PR grows (over the fitted levels);
- fit time: wall and process CPU seconds of each chain, as a ratio to the gray-box's in
  the same run (the CPU time is the steadier figure on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402

from audio.datasets import load_pairs  # noqa: E402
from audio.framing import make_frames  # noqa: E402
from audio.io import read_pair  # noqa: E402
from audio.signaltrain import find_level  # noqa: E402
from common.config import load_config  # noqa: E402
from dsp.fitting.by_class import evaluate_any, options_class  # noqa: E402
from dsp.knobs.knobmap import KnobMap  # noqa: E402
from dsp.models.classes import render  # noqa: E402
from dsp.models.graybox import BLOCK_NAMES, BlockRanges  # noqa: E402
from dsp.models.opto import OptoParameterisation  # noqa: E402
from jobs.chain import ChainSpec, run_chain  # noqa: E402
from jobs.fit_options import fit_options, initial_params  # noqa: E402

FRAME_S, OVERLAP_S = 12.0, 1.0
RELEASES = ("release_ms", "release_slow_ms")
# the chain's threshold floor is a stiff quadratic wall, not a hard bound: a level may sit a
# few hundredths of a dB below the previous one
FALL_TOLERANCE_DB = 0.05
LOG_BLOCKS = ("input_highpass_hz", "input_shelf_hz", "tube_drive", "output_highpass_hz")


def _bounds(params: dict, options, mode: str, sample_rate: int) -> list[str]:
    """Parameters within 1 % of a range end (log width for log-scaled ones)."""
    hits = []
    kind = options_class(options)
    if kind == "opto":
        hits += OptoParameterisation(sample_rate, options.cell, mode in options.mix_modes).bound_hits(params)
    else:
        from dsp.fitting.joint import bound_hits
        hits += bound_hits(params, options.ranges)
    if kind in ("graybox", "opto"):
        blocks: BlockRanges = options.blocks
        for k in BLOCK_NAMES:
            lo, hi = getattr(blocks, k)
            if k in ("input_shelf_hz",):
                hi = min(hi, 0.45 * sample_rate)
            v, lo_, hi_ = (math.log(t) for t in (params[k], lo, hi)) if k in LOG_BLOCKS else (params[k], lo, hi)
            if min(v - lo_, hi_ - v) <= 0.01 * (hi_ - lo_):
                hits.append(k)
    return hits


def _smooth_db(x: np.ndarray, sr: int, tau: float = 0.03) -> np.ndarray:
    a = math.exp(-1.0 / (tau * sr))
    p = scipy.signal.filtfilt([1 - a], [1, -a], x.astype(np.float64) ** 2)
    return 10 * np.log10(np.maximum(p, 1e-20))


def gain_trajectory_error(x: np.ndarray, target: np.ndarray, output: np.ndarray, sr: int) -> float:
    """RMS dB difference of the gain-reduction traces of ``target`` and ``output`` (both from ``x``)."""
    level = _smooth_db(x, sr)
    live = (level > -50.0) & (np.arange(x.size) >= sr)
    diff = (_smooth_db(output, sr) - level) - (_smooth_db(target, sr) - level)
    return float(np.sqrt(np.mean(diff[live] ** 2)))


def _test_pairs(pairs) -> list:
    return sorted((p for p in pairs if p.split == "Test"), key=lambda p: (p.mode, p.peak_reduction, p.id))


def run(args) -> dict:
    base = [f"data={args.data}", f"data.cache_dir={args.cache}", *args.override]
    cfg = load_config("config", base)
    pairs = load_pairs(cfg.data, quiet=True)
    modes = [str(m) for m in cfg.modes]
    levels = [int(v) for v in cfg.levels if int(v) not in args.unseen]

    def find_train(mode, pr):
        p = find_level(pairs, mode, pr, splits=("Train",), tag=str(cfg.data.fit_tag))
        return None if p is None else (p.input, p.target)

    fitted = {m: [pr for pr in levels if find_train(m, pr) is not None] for m in modes}
    tests = _test_pairs(pairs)
    print(f"data={args.data}: fitted levels {fitted}; held out {args.unseen}; {len(tests)} Test takes", flush=True)
    variants = [(c, c, []) for c in args.classes]
    if args.one_unit:
        variants.append(("opto one unit", "opto", ["compressor.one_unit=true"]))
    results = {}
    for name, kind, extra in variants:
        vcfg = load_config("config", base + [f"compressor={kind}", *extra])
        options = fit_options(vcfg)
        init = initial_params(vcfg, options.ranges)
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            rows = run_chain(find_train, Path(tmp) / "chain", ChainSpec(modes, levels, default_init=init), options,
                             on_level=lambda m, pr, s: print(f"  {name}: {m} PR {pr} {s}", flush=True)
                             if s == "fit" else None)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        kmap = KnobMap.from_rows(rows, kind)
        sr = None
        per = []
        for p in tests:
            x, y, sr = read_pair(p.input, p.target)
            params = kmap.at(p.setting)
            frames = make_frames(x, y, sr, FRAME_S, OVERLAP_S)
            out = render(x[0].astype(np.float64), sr, params)
            per.append({"id": p.id, "tag": p.tag, "mode": p.mode, "peak_reduction": p.peak_reduction,
                        "unseen": p.peak_reduction in args.unseen,
                        "esr": evaluate_any(frames, params, options),
                        "gain_db_rms": gain_trajectory_error(x[0], y[0], out, sr)})
        bounds = {f"{r['mode']}/{r['peak_reduction']}": _bounds(r, options, r["mode"], sr or 44100) for r in rows}
        thresholds = {m: [r["threshold_db"] for r in sorted(rows, key=lambda r: r["peak_reduction"]) if r["mode"] == m]
                      for m in modes}
        results[name] = {"kind": kind, "wall_s": wall, "cpu_s": cpu, "rows": rows, "test": per,
                         "bounds": {k: v for k, v in bounds.items() if v},
                         "release_bounds": {k: [b for b in v if b in RELEASES] for k, v in bounds.items()
                                            if any(b in RELEASES for b in v)},
                         "threshold_falls": {m: bool(np.all(np.diff(t) <= FALL_TOLERANCE_DB)) for m, t in thresholds.items()},
                         "threshold_db": thresholds,
                         "iterations": int(sum(r["iterations"] for r in rows))}
        print(f"{name}: chain {wall:.0f} s wall, {cpu:.0f} s CPU, {results[name]['iterations']} iterations", flush=True)
    _report(results, modes, args)
    return results


def _mean(values) -> float:
    return float(np.mean(values)) if values else float("nan")


def _report(results: dict, modes: list[str], args) -> None:
    names = list(results)
    ref = "graybox" if "graybox" in results else names[0]
    print(f"\nTest takes (Train-only fits; * = held out of every fit: {args.unseen})")
    print(f"{'take':>5s} {'mode':9s} {'PR':>4s} " + " ".join(f"{n + ' ESR':>17s} {'dB':>5s}" for n in names))
    for i, t in enumerate(results[ref]["test"]):
        star = "*" if t["unseen"] else " "
        print(f"{t['id']:5d} {t['mode']:9s} {t['peak_reduction']:3d}{star} " +
              " ".join(f"{results[n]['test'][i]['esr']:17.5f} {results[n]['test'][i]['gain_db_rms']:5.2f}" for n in names))
    print(f"\n{'':34s}" + "".join(f"{n:>16s}" for n in names))
    groups = [(m, lambda t, m=m: m == "all" or t["mode"] == m) for m in modes + ["all"]]
    groups += [(f"{m}, held out", lambda t, m=m: t["unseen"] and (m == "all" or t["mode"] == m)) for m in modes]
    for mode, sel in groups:
        esr = {n: _mean([t["esr"] for t in results[n]["test"] if sel(t)]) for n in names}
        gdb = {n: _mean([t["gain_db_rms"] for t in results[n]["test"] if sel(t)]) for n in names}
        print(f"{'mean Test ESR, ' + mode:34s}" + "".join(f"{esr[n]:16.5f}" for n in names))
        print(f"{'  ratio to ' + ref:34s}" + "".join(f"{esr[n] / esr[ref]:16.3f}" for n in names))
        print(f"{'  gain trajectory, RMS dB':34s}" + "".join(f"{gdb[n]:16.2f}" for n in names))
    print(f"{'chain wall s (ratio)':34s}" + "".join(
        f"{results[n]['wall_s']:9.0f} ({results[n]['wall_s'] / results[ref]['wall_s']:4.2f})" for n in names))
    print(f"{'chain CPU s (ratio)':34s}" + "".join(
        f"{results[n]['cpu_s']:9.0f} ({results[n]['cpu_s'] / results[ref]['cpu_s']:4.2f})" for n in names))
    print(f"{'levels with a parameter at a bound':34s}" + "".join(f"{len(results[n]['bounds']):16d}" for n in names))
    print(f"{'levels with a release at a bound':34s}" + "".join(f"{len(results[n]['release_bounds']):16d}" for n in names))
    for n in names:
        print(f"{n}: threshold falls with PR: {results[n]['threshold_falls']}; at a bound: {results[n]['bounds'] or 'none'}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="standin", choices=("standin", "standin_real"))
    ap.add_argument("--cache", default="/work/cache")
    ap.add_argument("--classes", nargs="*", default=["graybox", "opto"])
    ap.add_argument("--one-unit", action="store_true", help="also opto with one set of blocks for both modes")
    ap.add_argument("--unseen", type=int, nargs="*", default=[45, 65, 85])
    ap.add_argument("--json", default=None)
    ap.add_argument("--override", nargs="*", default=[], help="further config overrides (KEY=VALUE)")
    args = ap.parse_args(argv)
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return results


if __name__ == "__main__":
    main()
