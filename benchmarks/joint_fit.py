"""Joint knob fit against the per-level chain with interpolation, under the protocol.

On the embedded stand-in corpus (generated into ``--cache``, outside the repository),
with ``train_comp.py``'s settings (``cfg/config.yaml``; ``--compressor ff5|graybox|opto``,
further ``--set KEY=VALUE`` overrides such as ``joint.priors=[0]``):

- both methods fit **Train** material only (the 3c takes), with the unseen levels
  (``--unseen``, default 45 65 85) left out of every fit;
- the per-level chain (:func:`jobs.chain.run_chain`, 100 -> 40, each level from the
  previous one; with ``graybox`` the blocks fitted at PR 100 and held, as
  ``train_comp.py`` does) gives a knob map (:class:`dsp.knobs.knobmap.KnobMap`) that reaches the
  unseen levels by interpolation;
- the joint fit (:func:`dsp.fitting.joint.fit_joint`, with the config's ``joint.monotone`` and
  ``joint.priors``) chooses its basis size, roughness and ridge on **Val** material at the fitted
  settings (:func:`dsp.fitting.joint.select_smoothness`), then the chosen candidate is fitted
  again from the cold start and timed (with ``graybox``, its shared blocks too:
  :func:`dsp.fitting.joint.fit_shared_blocks`; with ``opto``, the blocks first, fitted on each
  mode's top Train take, then the cell's curves through them, :mod:`dsp.fitting.joint_opto`);
- both are scored on **Test** material at every level (pre-emphasised ESR of the
  model class fitted).

Printed: per-setting Test ESR of both, the mean ESR and its ratio (target joint <=
0.85x chain), the settings where a joint parameter sits within 1% (of the range's log
width) of a range bound (target: at most one), whether threshold falls and gain
reduction (level drop before make-up on one fixed Test input) grows with PR on a
1-PR grid, and the fit times of both modes (wall and process CPU time, from the Train
files to the fitted parameters) with their ratio (target <= 2x). The CPU times are the
steadier figure on a shared machine.

Usage: ``python benchmarks/joint_fit.py [--compressor graybox] [--cache /tmp/joint-cache]
[--unseen 45 65 85] [--candidates 4:1e-3 5:1e-4 ...] [--set joint.priors=[0] ...]
[--train-seconds 60] [--json OUT.json]``
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from audio.corpus import CorpusSpec, ensure_corpus  # noqa: E402
from audio.io import read_pair  # noqa: E402
from audio.signaltrain import find_level, scan_corpus  # noqa: E402
from common.config import load_config  # noqa: E402
from audio.framing import frame_pair
from jobs.chain import ChainSpec, run_chain
from dsp.fitting.ff5 import FitOptions
from dsp.fitting.joint import (JointOptions, JointSetting, bound_hits, fit_joint, GrayboxValScore, fit_shared_blocks,
                               select_smoothness)
from dsp.fitting.bounds import at_bounds
from dsp.fitting.joint_opto import fit_group_blocks, group_options
from dsp.knobs.joint_curves import JointKnobModel
from dsp.fitting.by_class import evaluate_any, options_class
from dsp.knobs.knobmap import KnobMap
from dsp.models.parameters import PARAM_NAMES
from dsp.models.ff5_streaming import StreamingCompressor
from dsp.models.opto_streaming import StreamingOpto
from jobs.fit_options import fit_options, initial_params
from jobs.joint_fit import candidates_from_config, joint_options_from_config  # noqa: E402

KNOB = ("peak_reduction",)
FRAME_S, OVERLAP_S = 12.0, 1.0
ESR_RATIO_TARGET, TIME_RATIO_TARGET, MAX_BOUND_SETTINGS = 0.85, 2.0, 1


def _settings(pairs, mode, levels, split):
    out = []
    for pr in levels:
        p = find_level(pairs, mode, pr, splits=(split,))
        if p is None:
            continue
        x, y, sr = read_pair(p.input, p.target)
        out.append(JointSetting((float(pr),), frame_pair(x, y, sr, FRAME_S, OVERLAP_S, p.target),
                                f"{split}:{mode}/pr_{pr}"))
    return out


def _gain_reduction_db(params: dict, x: np.ndarray, sr: int, opto: bool) -> float:
    """Level drop (dB) before make-up on ``x``: the optical cell's (``opto``), else the
    five-parameter compressor's (a gray-box's core)."""
    g = StreamingOpto(params, sr).gain(np.atleast_2d(x)) if opto else \
        StreamingCompressor({k: params[k] for k in PARAM_NAMES}, sr).gain(x)
    xm = np.max(np.abs(np.atleast_2d(x)), axis=0)
    return 10.0 * math.log10(np.sum(xm ** 2) / np.sum((g * xm) ** 2))


def _monotone(values, increasing: bool, tol: float) -> bool:
    d = np.diff(np.asarray(values))
    return bool(np.all(d >= -tol)) if increasing else bool(np.all(d <= tol))


def _warm_up(setting: JointSetting):
    """Compile the numba kernels outside the timings."""
    short = JointSetting(setting.knobs, setting.frames, "warm-up")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit_joint([short], KNOB, JointOptions(size=1, fit=FitOptions(newton=_few())))


def _few():
    from dsp.fitting.newton import NewtonOptions
    return NewtonOptions(max_iterations=1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="/tmp/joint-cache")
    ap.add_argument("--unseen", type=int, nargs="*", default=[45, 65, 85])
    ap.add_argument("--compressor", choices=("ff5", "graybox", "opto"), default="ff5")
    ap.add_argument("--candidates", nargs="*", default=None,
                    help="SIZE:SMOOTHNESS pairs (default: joint.candidates of cfg/config.yaml)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="further train_comp.py settings, e.g. joint.priors=[0] joint.decreasing=[]")
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cfg = load_config("config", [f"compressor={args.compressor}", *args.set])
    options = fit_options(cfg)
    init = initial_params(cfg, options.ranges)
    shape, priors = joint_options_from_config(cfg, options, init)
    candidates = candidates_from_config(cfg) if args.candidates is None else \
        [(int(c.split(":")[0]), float(c.split(":")[1])) for c in args.candidates]
    graybox = options_class(options) == "graybox"
    opto = options_class(options) == "opto"

    def opto_shape(m, settings):
        """``opto``: the mode's blocks fitted on its top Train take, the cell's curves through them."""
        top = max(settings, key=lambda s: tuple(s.knobs))
        fitted = fit_group_blocks({m: (top.frames, top.knobs)}, init, options)[m]
        return group_options(shape, options, m, fitted)

    spec = CorpusSpec(train_seconds=args.train_seconds)
    root = ensure_corpus(args.cache, spec)
    pairs = scan_corpus(root)
    all_levels = sorted(spec.levels)
    fit_levels = [pr for pr in all_levels if pr not in args.unseen]
    modes = list(spec.modes)

    train = {m: _settings(pairs, m, fit_levels, "Train") for m in modes}
    val = {m: _settings(pairs, m, fit_levels, "Val") for m in modes}
    test = {m: _settings(pairs, m, all_levels, "Test") for m in modes}
    for m in modes:  # the protocol: no held-out setting in any fit or validation
        assert not {int(s.knobs[0]) for s in train[m] + val[m]} & set(args.unseen)
    _warm_up(train[modes[0]][0])
    print(f"compressor={args.compressor}; joint: candidates {candidates}, monotone {shape.monotone or 'none'}, "
          f"priors {priors} (the first while choosing the basis)", flush=True)

    # --- per-level chain on the same Train material ------------------------------------
    def find_train(mode, pr):
        p = find_level(pairs, mode, pr, splits=("Train",))
        return None if p is None else (p.input, p.target)

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        rows = run_chain(find_train, Path(tmp) / "chain", ChainSpec(modes, fit_levels, default_init=init), options)
        chain_seconds, chain_cpu = time.perf_counter() - t0, time.process_time() - c0
    chain_map = KnobMap.from_rows(rows, options_class(options))
    print(f"chain: {chain_seconds:.1f} s", flush=True)

    # --- joint: choose smoothness on Val, then the timed cold fit -------------------------
    chosen, tables = {}, {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for m in modes:
            score = GrayboxValScore(train[m], val[m], options) if graybox else None
            mode_shape = opto_shape(m, train[m]) if opto else shape
            sel = select_smoothness(train[m], val[m], KNOB, candidates, mode_shape, priors=priors, val_score=score)
            row = next(r for r in sel.table if r["chosen"])
            chosen[m] = (row["size"], row["smoothness"], row["prior"])
            tables[m] = sel.table
    selection_seconds = time.perf_counter() - t0
    print(f"selection on Val: {selection_seconds:.1f} s", flush=True)
    # timed like the chain: from the Train files to the fitted curves (and the shared blocks)
    fits, shared = {}, {}
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for m in modes:
            size, lam, prior = chosen[m]
            settings = _settings(pairs, m, fit_levels, "Train")
            mode_shape = opto_shape(m, settings) if opto else shape
            fits[m] = fit_joint(settings, KNOB, replace(mode_shape, size=size, smoothness=lam, prior=prior))
            if graybox:
                shared[m] = fit_shared_blocks(fits[m], settings, options)
    joint_seconds, joint_cpu = time.perf_counter() - t0, time.process_time() - c0
    model = JointKnobModel(fits)

    def joint_at(m, pr):
        five = model.at(m, pr)
        return shared[m].apply(five) if graybox else five

    def bounds(params):
        if opto:   # the cell's and the blocks' ranges (compress mode's held input tap, 0, is skipped)
            return list(at_bounds(params, options))
        return bound_hits(params, options.ranges)

    # --- Test scoring at every level ----------------------------------------------------
    per_setting = []
    for m in modes:
        for s in test[m]:
            pr = int(s.knobs[0])
            jp, cp = joint_at(m, pr), chain_map.at({"mode": m, "peak_reduction": pr})
            per_setting.append({"mode": m, "peak_reduction": pr, "unseen": pr in args.unseen,
                                "esr_chain": evaluate_any(s.frames, cp, options),
                                "esr_joint": evaluate_any(s.frames, jp, options),
                                "joint_bounds": bounds(jp),
                                "chain_bounds": bounds(cp) if pr in fit_levels else []})
    mean_chain = float(np.mean([r["esr_chain"] for r in per_setting]))
    mean_joint = float(np.mean([r["esr_joint"] for r in per_setting]))
    bound_settings = [f"{r['mode']}/{r['peak_reduction']}:{','.join(r['joint_bounds'])}"
                      for r in per_setting if r["joint_bounds"]]
    chain_bound_settings = [f"{r['mode']}/{r['peak_reduction']}:{','.join(r['chain_bounds'])}"
                            for r in per_setting if r["chain_bounds"]]

    # --- shape: threshold falls, gain reduction grows with PR -----------------------------
    ref = test[modes[0]][-1]
    ref_x, ref_sr = ref.frames.x[0, : ref.frames.lengths[0]], ref.frames.sample_rate
    grid = np.arange(min(fit_levels), max(fit_levels) + 1, 1.0)
    shape = {}
    for m in modes:
        thr = [model.at(m, pr)["threshold_db"] for pr in grid]
        gr = [_gain_reduction_db(model.at(m, pr), ref_x, ref_sr, opto) for pr in grid]
        shape[m] = {"threshold_falls": _monotone(thr, increasing=False, tol=1e-9),
                    "gain_reduction_grows": _monotone(gr, increasing=True, tol=1e-9),
                    "threshold_db_40_100": [thr[0], thr[-1]], "gain_reduction_db_40_100": [gr[0], gr[-1]]}

    # --- report --------------------------------------------------------------------------
    print(f"\nTest ESR per setting (fits on Train without PR {args.unseen}; * = unseen)")
    print(f"{'mode':9s} {'PR':>4s} {'chain+interp':>13s} {'joint':>10s} {'joint/chain':>12s}")
    for r in per_setting:
        star = "*" if r["unseen"] else " "
        print(f"{r['mode']:9s} {r['peak_reduction']:>3d}{star} {r['esr_chain']:13.5f} {r['esr_joint']:10.5f} "
              f"{r['esr_joint'] / r['esr_chain']:12.3f}")
    print(f"\nbasis, smoothness and prior chosen on Val (pooled ESR of the {args.compressor} model):")
    for m in modes:
        for row in tables[m]:
            print(f"  {m:9s} size {row['size']} lam {row['smoothness']:<8g} prior {row['prior']:<8g} val {row['val_esr']:.5f} "
                  f"train(mean) {row['train_esr']:.5f} it {row['iterations']:3d} {row['seconds']:6.1f} s"
                  f"{'  <- chosen' if row['chosen'] else ''}")
    print("\njoint curves:")
    for m in modes:
        print(f"  {m}: threshold {shape[m]['threshold_db_40_100'][0]:.1f} -> {shape[m]['threshold_db_40_100'][1]:.1f} dB "
              f"(falls: {shape[m]['threshold_falls']}), gain reduction {shape[m]['gain_reduction_db_40_100'][0]:.2f} -> "
              f"{shape[m]['gain_reduction_db_40_100'][1]:.2f} dB (grows: {shape[m]['gain_reduction_grows']}), "
              f"{fits[m].iterations} iterations, converged {fits[m].converged}")
    print(f"\n{'':34s} {'chain+interp':>13s} {'joint':>10s} {'ratio':>7s} {'target':>8s}")
    print(f"{'mean Test ESR (all settings)':34s} {mean_chain:13.5f} {mean_joint:10.5f} {mean_joint / mean_chain:7.3f} "
          f"{'<= ' + str(ESR_RATIO_TARGET):>8s}")
    un = [r for r in per_setting if r["unseen"]]
    if un:
        mc, mj = np.mean([r["esr_chain"] for r in un]), np.mean([r["esr_joint"] for r in un])
        print(f"{'mean Test ESR (unseen settings)':34s} {mc:13.5f} {mj:10.5f} {mj / mc:7.3f}")
    print(f"{'fit wall time, both modes (s)':34s} {chain_seconds:13.1f} {joint_seconds:10.1f} "
          f"{joint_seconds / chain_seconds:7.3f} {'<= ' + str(TIME_RATIO_TARGET):>8s}")
    print(f"{'fit CPU time, both modes (s)':34s} {chain_cpu:13.1f} {joint_cpu:10.1f} "
          f"{joint_cpu / chain_cpu:7.3f} {'<= ' + str(TIME_RATIO_TARGET):>8s}")
    print(f"iterations: chain {sum(r['iterations'] for r in rows)} over {len(rows)} levels "
          f"(one kernel Hessian each); joint {' + '.join(str(fits[m].iterations) for m in modes)} "
          f"({', '.join(str(len(train[m])) for m in modes)} kernel Hessians each)")
    print(f"{'settings at a range bound':34s} {len(chain_bound_settings):13d} {len(bound_settings):10d} "
          f"{'':7s} {'<= ' + str(MAX_BOUND_SETTINGS):>8s}")
    print(f"joint at a bound: {bound_settings or 'none'}; chain (fitted levels): {chain_bound_settings or 'none'}")
    print(f"smoothness selection on Val took {selection_seconds:.1f} s (not in the fit time)")
    summary = {"mean_test_esr_chain": mean_chain, "mean_test_esr_joint": mean_joint,
               "esr_ratio": mean_joint / mean_chain, "chain_seconds": chain_seconds,
               "joint_seconds": joint_seconds, "time_ratio": joint_seconds / chain_seconds,
               "chain_cpu_seconds": chain_cpu, "joint_cpu_seconds": joint_cpu,
               "selection_seconds": selection_seconds, "joint_bound_settings": bound_settings,
               "chain_bound_settings": chain_bound_settings, "shape": shape, "chosen": chosen,
               "selection": tables, "per_setting": per_setting, "joint": model.to_record()}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=float))
    return summary


if __name__ == "__main__":
    main()
