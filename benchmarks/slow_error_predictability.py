"""Can the opto model's slow error be predicted from what a hybrid could be given? A diagnostic.

    python benchmarks/slow_error_predictability.py [--fit-on Train|Val] [train_neural.py overrides ...]
    e.g. python benchmarks/slow_error_predictability.py dsp_dir=checkpoints/standin-heldout

The opto model's slow error on a take is the gain a second-scale oracle would apply to its
output (``benchmarks/hybrid_headroom.py``'s oracle over 1001 frames of 32 samples, in dB per
frame; it reads the target). A regression from per-frame inputs to that gain is fitted on the
Train takes (``--fit-on Val``: on the Val takes, material the DSP fit never read; a diagnostic,
as Val is for choosing checkpoints), weighted by each frame's pre-emphasised DSP power (what
the ESR weighs; each take's weights sum to one, as each take's ESR is its own), and its prediction is applied to the DSP output of every **Test** take
(first second unscored). Inputs:

- ``history``: the setting (PR / 100, mode), the frame's input level (log10 RMS) and DSP gain
  (dB / 20), and each of those two smoothed over 0.3, 1, 3, 10 and 30 s;
- ``states``: the same and the opto cell's own state at the frame's end (log light, slow
  conductance, memory, log gain), what the model itself carries between samples.

Two regressions each: ridge (linear) and a small MLP (two layers of 64). Printed per mode,
seen and held-out settings: the Test ESR after the predicted gain as a ratio to the DSP's,
beside the oracle's own ratio (what a perfect prediction would reach). The DSP fit must be an
opto chain (``compressor=opto``, the default).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.signal import lfilter  # noqa: E402

from audio.metrics import TEST_SKIP_S  # noqa: E402
from hybrid_headroom import FRAME, esr, oracle_gain  # noqa: E402

WINDOW = 1001                       # frames: the slow oracle (about 0.73 s at 44.1 kHz)
SMOOTHING_S = (0.3, 1.0, 3.0, 10.0, 30.0)
# the regressions' inputs: printed label -> the take_frames entry that holds them
INPUTS = {"history": "history", "states": "history_and_states"}


def cell_states(x: np.ndarray, params, sample_rate: int) -> np.ndarray:
    """The opto cell's state ``(g, light, slow conductance, memory)`` at the end of every frame of ``x``."""
    from dsp.derivatives.opto_kernel import STATE_SIZE, stream_gain
    from dsp.models.opto_streaming import StreamingOpto
    prm = StreamingOpto(params, sample_rate).prm   # the streaming model's kernel constants
    state, shelf, gain = np.zeros(STATE_SIZE), np.zeros(1), np.empty(FRAME)
    state[0] = 1.0
    xx = np.ascontiguousarray(x[None, :], dtype=np.float64)
    out = np.empty((len(x) // FRAME, STATE_SIZE))
    for f in range(len(out)):   # the streaming kernel, a frame at a time: its state at each frame's end
        stream_gain(xx[:, f * FRAME:(f + 1) * FRAME], state, shelf, prm, gain)
        out[f] = state
    return out


def _smoothed(v: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    a = 1.0 - np.exp(-FRAME / (seconds * sample_rate))
    return lfilter([a], [1.0, a - 1.0], v)


def take_frames(t) -> dict:
    """One take's inputs per frame, its slow oracle gain (dB) and each frame's weight."""
    sr, n = t.sample_rate, len(t.x) // FRAME
    level = np.log10(np.sqrt((t.x[:n * FRAME].astype(np.float64).reshape(n, FRAME) ** 2).mean(1)) + 1e-5)
    gain = t.g_db[FRAME - 1:n * FRAME:FRAME].astype(np.float64) * 0.05
    history = [np.full(n, t.setting["peak_reduction"] / 100.0), np.full(n, float(t.setting["mode"] == "limit")),
               level, gain] + [_smoothed(v, s, sr) for v in (level, gain) for s in SMOOTHING_S]
    st = cell_states(t.x, t.params, sr)
    states = [np.log10(st[:, 1] + 1e-12), st[:, 2], st[:, 3], np.log(st[:, 0])]
    oracle, power = oracle_gain(t.y_dsp().astype(np.float64), t.y.astype(np.float64), WINDOW)
    weight = power.copy()
    weight[:int(round(TEST_SKIP_S * sr)) // FRAME] = 0.0
    return {"history": np.stack(history, 1), "history_and_states": np.stack(history + states, 1),
            "target": 20.0 * np.log10(oracle), "weight": weight / max(weight.sum(), 1e-30), "track": t}


def fit(frames: list[dict], inputs: str, kind: str):
    """A weighted regression from the ``inputs`` entry of each take to the slow gain; returns a
    predictor of a take's frames."""
    x = np.concatenate([f[inputs] for f in frames])
    y = np.concatenate([f["target"] for f in frames])
    w = np.concatenate([f["weight"] for f in frames])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    design = lambda v: np.concatenate([(v - mu) / sd, np.ones((len(v), 1))], 1)  # noqa: E731
    if kind == "ridge":
        a = design(x)
        coef = np.linalg.solve((a * w[:, None]).T @ a + 1e-3 * np.eye(a.shape[1]), (a * w[:, None]).T @ y)
        return lambda f: design(f[inputs]) @ coef
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.SiLU(), torch.nn.Linear(64, 64),
                              torch.nn.SiLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    z, yt, p = (torch.tensor((x - mu) / sd, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                torch.tensor(w / w.sum()))
    for _ in range(3000):   # frames drawn in proportion to their weight: the weighted squared error
        idx = torch.multinomial(p, 4096, replacement=True)
        loss = (net(z[idx]).squeeze(-1) - yt[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def predict(f: dict) -> np.ndarray:
        with torch.no_grad():
            return net(torch.tensor((f[inputs] - mu) / sd, dtype=torch.float32)).squeeze(-1).double().numpy()
    return predict


def _esr_with(t, gain_db: np.ndarray) -> float:
    d = t.y_dsp().astype(np.float64)
    out = d.copy()
    out[:len(gain_db) * FRAME] *= np.repeat(10.0 ** (gain_db / 20.0), FRAME)
    return esr(out, t.y.astype(np.float64), int(round(TEST_SKIP_S * t.sample_rate)))


def main(argv: list[str]) -> int:
    from common.cli import compose_cli
    from jobs.train import la2a_corpus
    source = "Train"
    if argv[:1] == ["--fit-on"] and len(argv) > 1:
        source, argv = argv[1], argv[2:]
    if source not in ("Train", "Val"):
        print(f"error: --fit-on takes Train or Val, got {source!r}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    cfg = compose_cli("train_neural", argv + ["quiet=true"], "", "slow_error_predictability.py")
    corpus = la2a_corpus(cfg, Path(str(cfg.dsp_dir)), None)
    if corpus.param_map.model_class.name != "opto":
        print(f"error: {cfg.dsp_dir}: an opto chain is needed, this is {corpus.param_map.model_class.name}",
              file=sys.stderr)
        return 2
    fitted = [take_frames(t) for t in (corpus.train if source == "Train" else corpus.val)]
    test = [take_frames(t) for t in corpus.test_tracks()]
    base = [_esr_with(f["track"], np.zeros(len(f["target"]))) for f in test]
    oracle = [_esr_with(f["track"], f["target"]) for f in test]
    groups = [(m, s) for m in ("compress", "limit") for s in (True, False)]

    def ratios(values: list[float]) -> list[str]:
        cells = []
        for mode, seen in groups:
            sel = [i for i, f in enumerate(test) if f["track"].setting["mode"] == mode
                   and corpus.seen(f["track"].setting) == seen]
            cells.append(f"{np.mean([values[i] for i in sel]) / np.mean([base[i] for i in sel]):.3f}x"
                         if sel else "-")
        return cells

    print(f"fitted on the {source} takes ({len(fitted)}), scored on the Test takes ({len(test)}); "
          "Test ESR as a ratio to the opto model's")
    print(f"{'prediction':24s} " + " ".join(f"{m + (' seen' if s else ' unseen'):>16s}" for m, s in groups))
    print(f"{'oracle (reads target)':24s} " + " ".join(f"{c:>16s}" for c in ratios(oracle)))
    for kind in ("ridge", "mlp"):
        for label, inputs in INPUTS.items():
            predict = fit(fitted, inputs, kind)
            values = [_esr_with(f["track"], predict(f)) for f in test]
            print(f"{kind + ', ' + label:24s} " + " ".join(f"{c:>16s}" for c in ratios(values)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
