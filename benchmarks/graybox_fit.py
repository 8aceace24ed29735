"""Gray-box fit against the five-parameter fit: wall time, and accuracy on the stand-in.

    python benchmarks/graybox_fit.py [--seconds 60] [--mode compress] [--pr 70]
    python benchmarks/graybox_fit.py --derivatives [--repeats 2]
    python benchmarks/graybox_fit.py --corpus /tmp/graybox-cache [--train-seconds 60]
        [--eval-seconds 20] [--settings compress:40,compress:70,compress:100,limit:70]

Timing (default): one pair of ``--seconds`` of seeded program material through the
stand-in (``audio.standin``, transformers, tube stage and noise floor on), cut into
12 s frames with a 1 s overlap, fitted from the published cold start by
``dsp.fitting.ff5.fit_frames`` (fused kernel) and by ``dsp.fitting.graybox.fit_graybox_frames``
(the same five-parameter fit, then Newton on the make-up and the six block parameters
with the gain held, exact derivatives from first-order signals and adjoints;
``--joint-autograd`` adds the old Newton on all eleven through the compressor).
``--derivatives``: one stage-2 gradient + Hessian on a 12 s frame, against autograd.
Both are warmed up (numba cache, torch) on a few seconds first. Printed side by side:
wall time, iterations, seconds per iteration, ESR on the fitted audio, and the ratio.

Accuracy (``--corpus``): the embedded stand-in corpus (``audio.corpus.ensure_corpus``,
levels and modes reduced to the requested settings, generated into the given folder,
which should be outside the repository). For each setting: both models fitted on the
Train take from a cold start, scored (pre-emphasised ESR after the first second) on the
Test take of that setting (Test material) and on the fitted Train audio (labelled).
``--chain``: each setting after the first is also fitted from the previous setting's
gray-box parameters, the blocks free (warm start) and held (``blocks_fixed``): stage-2
iterations, wall time and Test ESR.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from audio.framing import Frames, make_frames  # noqa: E402
from audio.material import synthesize  # noqa: E402
from dsp.fitting.ff5 import FitOptions, fit_frames
from dsp.fitting.graybox import GrayboxFitOptions, fit_graybox_frames
from dsp.models.graybox_streaming import render as render_graybox
from dsp.models.parameters import PARAM_NAMES
from audio.metrics import preemphasis_np
from dsp.models.ff5_streaming import render as render_ff5

SR = 44100
JOINT = False  # --joint-autograd


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # convergence is in the table
        return fn(*args)


def fit_both(frames: Frames):
    t0 = time.perf_counter()
    ff5 = _quiet(fit_frames, frames, None, FitOptions())
    t1 = time.perf_counter()
    gb = _quiet(fit_graybox_frames, frames, None, GrayboxFitOptions(joint_autograd=JOINT))
    t2 = time.perf_counter()
    return (ff5, t1 - t0), (gb, t2 - t1)


def warm_up(frames: Frames) -> None:
    n = 3 * SR
    short = Frames(frames.x[:1, :n].copy(), frames.y[:1, :n].copy(), np.minimum(frames.lengths[:1], n),
                   frames.warmup, frames.sample_rate)
    options = GrayboxFitOptions()
    options.newton.max_iterations = 2
    _quiet(fit_frames, short, None, FitOptions())
    _quiet(fit_graybox_frames, short, None, options)


def timing(args) -> None:
    from audio import standin
    x = synthesize(args.seconds, SR, seed=args.seed).astype(np.float64)
    y = standin.render(x, SR, args.pr, args.mode).astype(np.float64)
    frames = make_frames(x, y, SR)
    warm_up(frames)
    (ff5, t_ff5), (gb, t_gb) = fit_both(frames)
    gb_own = gb.iterations - ff5.iterations
    print(f"{args.seconds:g} s of material through the stand-in ({args.mode} PR {args.pr:g}), "
          f"{frames.x.shape[0]} frames, torch threads {torch.get_num_threads()}")
    print(f"{'model':8s} {'wall s':>8s} {'iters':>6s} {'ESR (fitted audio)':>19s}  converged")
    print(f"{'ff5':8s} {t_ff5:8.2f} {ff5.iterations:6d} {ff5.esr:19.5f}  {ff5.converged}")
    print(f"{'graybox':8s} {t_gb:8.2f} {gb.iterations:6d} {gb.esr:19.5f}  {gb.converged} ({gb.reason})")
    print(f"graybox / ff5 wall time = {t_gb / t_ff5:.1f}x; graybox stage: {gb_own} Newton iterations, "
          f"{(t_gb - t_ff5) / max(gb_own, 1):.2f} s each (exact gradient + "
          f"{'11' if JOINT else '7'}-row Hessian)")
    print("graybox params: " + ", ".join(f"{k}={v:.4g}" for k, v in gb.params.items()))


def derivatives(args) -> None:
    """One exact gradient + Hessian of stage 2 on a 12 s frame: first-order signals and
    adjoints (``BlockObjective.loss_grad_hess``) against autograd (the reference)."""
    from audio import standin
    from dsp.derivatives.graybox_objectives import BlockObjective
    from dsp.models.graybox import TRANSPARENT, GrayboxParameterisation
    x = synthesize(12.0, SR, seed=args.seed).astype(np.float64)
    y = standin.render(x, SR, args.pr, args.mode).astype(np.float64)
    frames = make_frames(x, y, SR)
    five = _quiet(fit_frames, frames, None, FitOptions()).params
    obj = BlockObjective(frames, GrayboxParameterisation(SR), five)
    z = obj.stage_vector({**five, **TRANSPARENT, "tube_drive": 0.5, "tube_asymmetry": 0.1})
    obj.loss_grad_hess(z)  # numba cache, first calls
    times = {"signals+adjoints": [], "autograd": []}
    for _ in range(args.repeats):  # interleaved: a loaded machine slows both alike
        t = time.perf_counter()
        f, g, h = obj.loss_grad_hess(z)
        times["signals+adjoints"].append(time.perf_counter() - t)
        t = time.perf_counter()
        fa, ga, ha = obj.loss_grad_hess_autograd(z)
        times["autograd"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(f"one 12 s frame at {SR} Hz, FFT length {obj.n_fft}, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats}")
    for k, v in best.items():
        print(f"  {k:17s} {v:7.2f} s per gradient + Hessian")
    print(f"  speedup {best['autograd'] / best['signals+adjoints']:.1f}x; max relative difference: gradient "
          f"{float((g - ga).abs().max() / ga.abs().max()):.1e}, Hessian {float((h - ha).abs().max() / ha.abs().max()):.1e}")


def _esr(out: np.ndarray, target: np.ndarray) -> float:
    skip = SR  # the first second is not scored
    e = preemphasis_np(out - target)[..., skip:]
    t = preemphasis_np(target)[..., skip:]
    return float(np.sum(e ** 2) / np.sum(t ** 2))


def accuracy(args) -> None:
    from audio.corpus import CorpusSpec, ensure_corpus
    from audio.io import read_audio
    from audio.signaltrain import find_level, scan_corpus
    settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings.split(",")]
    spec = CorpusSpec(train_seconds=args.train_seconds, eval_seconds=args.eval_seconds,
                      levels=tuple(sorted({pr for _, pr in settings}, reverse=True)),
                      modes=tuple(dict.fromkeys(m for m, _ in settings)))
    t0 = time.perf_counter()
    root = ensure_corpus(args.corpus, spec, quiet=True)
    print(f"corpus {root} (train {args.train_seconds:g} s, eval {args.eval_seconds:g} s per take), "
          f"ready in {time.perf_counter() - t0:.1f} s")
    pairs = scan_corpus(root)
    rows = []
    previous = None
    for mode, pr in settings:
        train = find_level(pairs, mode, pr, splits=("Train",), tag=None)
        test = find_level(pairs, mode, pr, splits=("Test",), tag=None)
        x, _ = read_audio(train.input)
        y, _ = read_audio(train.target)
        frames = make_frames(x[0].astype(np.float64), y[0].astype(np.float64), SR)
        (ff5, t_ff5), (gb, t_gb) = fit_both(frames)
        row = {"setting": f"{mode} {pr}", "ff5_fit": ff5.esr, "gb_fit": gb.esr, "t_ff5": t_ff5, "t_gb": t_gb}
        if test is not None:
            xt, _ = read_audio(test.input)
            yt, _ = read_audio(test.target)
            xt, yt = xt[0].astype(np.float64), yt[0].astype(np.float64)
            row["ff5_test"] = _esr(render_ff5(xt, SR, ff5.params), yt)
            row["gb_test"] = _esr(render_graybox(xt, SR, gb.params), yt)
        if args.chain and previous is not None:
            for name, fixed in (("warm", False), ("fixed", True)):
                t = time.perf_counter()
                res = _quiet(fit_graybox_frames, frames, previous, GrayboxFitOptions(blocks_fixed=fixed))
                row[f"t_{name}"] = time.perf_counter() - t
                row[f"it_{name}"] = res.iterations
                row[f"it2_{name}"] = res.iterations - _quiet(fit_frames, frames, {k: previous[k] for k in PARAM_NAMES},
                                                              FitOptions()).iterations
                if test is not None:
                    row[f"{name}_test"] = _esr(render_graybox(xt, SR, res.params), yt)
        row["it2_cold"] = gb.iterations - ff5.iterations
        previous = gb.params
        rows.append(row)
        print(f"  {mode} {pr}: ff5 {ff5.esr:.4f} ({t_ff5:.1f} s), graybox {gb.esr:.4f} ({t_gb:.1f} s, "
              f"{gb.reason}); " + ", ".join(f"{k}={v:.4g}" for k, v in gb.params.items()), flush=True)
    print()
    print(f"{'setting':14s} {'ff5 Test':>9s} {'gb Test':>9s} {'ratio':>6s} | {'ff5 fit*':>9s} {'gb fit*':>9s} "
          f"{'ratio':>6s} | {'ff5 s':>6s} {'gb s':>7s}")
    for r in rows:
        test_part = (f"{r['ff5_test']:9.4f} {r['gb_test']:9.4f} {r['gb_test'] / r['ff5_test']:6.2f}"
                     if "ff5_test" in r else f"{'-':>9s} {'-':>9s} {'-':>6s}")
        print(f"{r['setting']:14s} {test_part} | {r['ff5_fit']:9.4f} {r['gb_fit']:9.4f} "
              f"{r['gb_fit'] / r['ff5_fit']:6.2f} | {r['t_ff5']:6.1f} {r['t_gb']:7.1f}")
    tested = [r for r in rows if "ff5_test" in r]
    if tested:
        m_ff5 = np.mean([r["ff5_test"] for r in tested])
        m_gb = np.mean([r["gb_test"] for r in tested])
        print(f"mean Test ESR: ff5 {m_ff5:.4f}, graybox {m_gb:.4f}, ratio {m_gb / m_ff5:.2f} (target <= 0.5)")
    print("* fit = ESR on the fitted Train audio (not Test material)")
    if args.chain:
        print()
        print("chain: each setting started from the previous setting's cold gray-box fit "
              "(stage-2 iterations; Test ESR)")
        print(f"{'setting':14s} {'cold it':>8s} {'warm it':>8s} {'fixed it':>8s} | {'cold Test':>9s} "
              f"{'warm Test':>9s} {'fixed Test':>10s} | {'cold s':>6s} {'warm s':>6s} {'fixed s':>7s}")
        for r in rows[1:]:
            print(f"{r['setting']:14s} {r['it2_cold']:8d} {r['it2_warm']:8d} {r['it2_fixed']:8d} | "
                  f"{r.get('gb_test', float('nan')):9.4f} {r.get('warm_test', float('nan')):9.4f} "
                  f"{r.get('fixed_test', float('nan')):10.4f} | {r['t_gb']:6.1f} {r['t_warm']:6.1f} {r['t_fixed']:7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="timing: length of the pair (default 60)")
    ap.add_argument("--mode", default="compress", help="timing: stand-in mode (default compress)")
    ap.add_argument("--pr", type=float, default=70.0, help="timing: stand-in peak reduction (default 70)")
    ap.add_argument("--seed", type=int, default=0, help="timing: material seed (default 0)")
    ap.add_argument("--corpus", help="accuracy: corpus cache folder (outside the repository)")
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--eval-seconds", type=float, default=20.0)
    ap.add_argument("--settings", default="compress:40,compress:70,compress:100,limit:70")
    ap.add_argument("--joint-autograd", action="store_true", help="also the 11-parameter autograd stage")
    ap.add_argument("--chain", action="store_true",
                    help="accuracy: also fit each setting from the previous one's gray-box, blocks free "
                         "(warm) and held (blocks_fixed)")
    ap.add_argument("--derivatives", action="store_true",
                    help="time one stage-2 gradient + Hessian on a 12 s frame against autograd")
    ap.add_argument("--repeats", type=int, default=2, help="derivatives: timed repeats (default 2)")
    args = ap.parse_args()
    global JOINT
    JOINT = args.joint_autograd
    if args.derivatives:
        derivatives(args)
    elif args.corpus:
        accuracy(args)
    else:
        timing(args)


if __name__ == "__main__":
    main()
