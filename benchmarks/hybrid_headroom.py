"""Where a trained hybrid's Test error lies, by time scale, beside its DSP model's: a diagnostic.

    python benchmarks/hybrid_headroom.py RUN_DIR [train_neural.py overrides ...]
    e.g. python benchmarks/hybrid_headroom.py runs/s6_hybrid model=s6 variant=hybrid dsp_dir=checkpoints/x

The Test takes of the training's corpus and protocol (the overrides it was trained with: its
``dsp_dir``, its unseen levels), the DSP output and the hybrid's (``RUN_DIR/best.pt``), each:

- the Test ESR (pre-emphasised, whole take, first second unscored: the Test estimator);
- the ESR left after an **oracle gain**: the output times, per 32-sample frame, the
  least-squares gain against the target pooled over a centred window of ``W`` frames, for
  ``W`` = 9, 101 and 1001 frames (about 6.5 ms, 73 ms and 0.73 s at 44.1 kHz), and one gain
  for the whole take (its level offset, printed per take in dB).

The oracle reads the target: these are bounds, not models. What an oracle over ``W`` frames
removes is the share of the error that a gain varying that slowly (or more slowly) could
correct; what the 1001-frame oracle removes is error on time scales of a second and more.
Printed per mode, seen and unseen settings: mean ESR and what is left after each oracle.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from audio.metrics import TEST_SKIP_S, preemphasis_np  # noqa: E402

FRAME = 32
WINDOWS = (9, 101, 1001)


def esr(y: np.ndarray, target: np.ndarray, skip: int) -> float:
    """Pre-emphasised ESR of ``y`` against ``target``, the first ``skip`` samples unscored."""
    a, b = preemphasis_np(y)[skip:], preemphasis_np(target)[skip:]
    return float(((a - b) ** 2).sum() / (b ** 2).sum())


def oracle_gain(y: np.ndarray, target: np.ndarray, window: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares gain of ``y`` against ``target`` per frame, pooled over ``window`` frames
    (None: the whole take), clipped to 0.25..4, and each frame's pre-emphasised power of ``y``."""
    n = len(y) // FRAME * FRAME
    a = preemphasis_np(y)[:n].reshape(-1, FRAME)
    b = preemphasis_np(target)[:n].reshape(-1, FRAME)
    cross, power = (a * b).sum(1), (a * a).sum(1)
    if window is None:
        gain = np.full(len(cross), cross.sum() / max(power.sum(), 1e-30))
    else:
        box = np.ones(window)
        gain = np.convolve(cross, box, "same") / np.maximum(np.convolve(power, box, "same"), 1e-30)
    return np.clip(gain, 0.25, 4.0), power


def oracle(y: np.ndarray, target: np.ndarray, window: int | None) -> tuple[np.ndarray, float]:
    """``y`` times the least-squares gain per frame over ``window`` frames (None: the whole take),
    and the mean gain in dB."""
    gain, _ = oracle_gain(y, target, window)
    n = len(gain) * FRAME
    out = y.copy()
    out[:n] = (y[:n].reshape(-1, FRAME) * gain[:, None]).reshape(-1)
    return out, float(20 * np.log10(gain).mean())


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    from common.cli import compose_cli
    from jobs.train import la2a_corpus
    from neural.inference import NeuralRenderer
    torch.set_num_threads(1)
    run = Path(argv[0])
    cfg = compose_cli("train_neural", argv[1:], "", "train_neural.py")
    corpus = la2a_corpus(cfg, Path(str(cfg.dsp_dir)), None)
    renderer = NeuralRenderer.load(run / "best.pt")
    rows = []
    for t in corpus.test_tracks():
        skip = int(round(TEST_SKIP_S * t.sample_rate))
        y = t.y.astype(np.float64)
        outputs = {"dsp": t.y_dsp().astype(np.float64),
                   "hybrid": renderer.render(t.x, t.sample_rate, t.setting).astype(np.float64)}
        row = {"mode": t.setting["mode"], "pr": t.setting["peak_reduction"], "seen": corpus.seen(t.setting)}
        for name, out in outputs.items():
            whole, row[name + "_offset_db"] = oracle(out, y, None)
            row[name] = [esr(out, y, skip)] + [esr(oracle(out, y, w)[0], y, skip) for w in WINDOWS] + \
                [esr(whole, y, skip)]
        rows.append(row)
        print(f"{row['mode']:8s} PR {row['pr']:5.0f} {'seen' if row['seen'] else 'UNSEEN':6s}  DSP {row['dsp'][0]:.5f} "
              f"(level {row['dsp_offset_db']:+.2f} dB)  hybrid {row['hybrid'][0]:.5f} "
              f"(level {row['hybrid_offset_db']:+.2f} dB)", flush=True)
    heads = ["ESR"] + [f"left, {w} frames" for w in WINDOWS] + ["left, one gain"]
    print(f"\n{'mode':8s} {'settings':8s} {'model':7s} " + " ".join(f"{h:>16s}" for h in heads))
    for mode in sorted({r["mode"] for r in rows}):
        for seen in (True, False):
            sel = [r for r in rows if r["mode"] == mode and r["seen"] == seen]
            if not sel:
                continue
            for name in ("dsp", "hybrid"):
                m = np.mean([r[name] for r in sel], 0)
                cells = [f"{m[0]:16.5f}"] + [f"{v:9.5f} ({v / m[0]:.2f})" for v in m[1:]]
                print(f"{mode:8s} {('seen' if seen else 'unseen') + f' ({len(sel)})':8s} {name:7s} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
