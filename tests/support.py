"""Plain helpers shared by the tests (imported as ``from support import ...``; the
fixtures stay in conftest.py): the paths, the short program material and pairs, the
tiny chain's overrides and a hand-written checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from audio.material import synthesize
from dsp.models.ff5_streaming import render

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
# the digital compressor the short pairs are rendered with (FF-A of the DAFx-24 paper)
TRUE_PARAMS = {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "release_ms": 100.0, "make_up_db": 0.0}

# The tiny chain every chain test shares: two modes, three levels, 3 s of Train audio.
CHAIN_MODES = ("compress", "limit")
CHAIN_LEVELS = (100, 90, 80)
CHAIN_TRAIN_S = 3.0
CHAIN_EVAL_S = 1.0
# The tests' fits on 3 s takes stop after 20 Newton iterations a level: they test plumbing
# (resume, refits, records, the protocol), and one such level otherwise runs all 100
# iterations without converging, a third of a tiny chain's time.
CAPPED_ITERATIONS = "optimiser.max_iterations=20"


# The class the plumbing tests fit: the 5-parameter compressor, 4x faster than the default
# gray-box; the tests of the gray-box (and the regression baseline) name it.
PLUMBING_CLASS = "compressor=ff5"


def chain_overrides(cache_dir: Path, ckpt_dir: Path) -> list[str]:
    """``train_comp.py`` overrides for the tiny chain (corpus in ``cache_dir``; fits capped
    by :data:`CAPPED_ITERATIONS`; :data:`PLUMBING_CLASS`)."""
    levels = ",".join(str(v) for v in CHAIN_LEVELS)
    modes = ",".join(CHAIN_MODES)
    return [f"data.corpus.train_seconds={CHAIN_TRAIN_S}", f"data.corpus.eval_seconds={CHAIN_EVAL_S}",
            f"data.corpus.levels=[{levels}]", f"data.corpus.modes=[{modes}]",
            f"levels=[{levels}]", f"modes=[{modes}]", f"data.cache_dir={cache_dir}",
            f"ckpt_dir={ckpt_dir}", CAPPED_ITERATIONS, PLUMBING_CLASS, "quiet=true"]


# --------------------------------------------------------------------------------------
# audio files
# --------------------------------------------------------------------------------------
def program(seconds: float = 3.0, sr: int = SR, seed: int = 1, channels: int = 1) -> np.ndarray:
    """Synthesised program material, ``(channels, samples)`` float64."""
    chans = [synthesize(seconds, sr, seed=seed + 101 * c).astype(np.float64) for c in range(channels)]
    return np.stack(chans)


def write_wav(path: Path, audio: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> Path:
    audio = np.atleast_2d(audio)
    sf.write(str(path), audio.T, sr, subtype=subtype)
    return Path(path)


def write_pair(folder: Path, name: str = "pair", seconds: float = 3.0, sr: int = SR, seed: int = 1,
               params: dict | None = None, channels: int = 1, subtype: str = "FLOAT") -> tuple[Path, Path]:
    """``folder/<name>_in.wav`` (program material) and ``<name>_target.wav`` (rendered)."""
    x = program(seconds, sr, seed, channels)
    y = render(x, sr, params or TRUE_PARAMS)
    folder.mkdir(parents=True, exist_ok=True)
    return (write_wav(folder / f"{name}_in.wav", x, sr, subtype),
            write_wav(folder / f"{name}_target.wav", y, sr, subtype))



def _ckpt_text(params: dict, **over) -> str:
    import yaml
    rec = {"kind": "dsp-compressor", "compressor": "ff5", "params": dict(params), "esr": 0.01, "loss": 1.0, "iterations": 3,
           "converged": True, "seconds": 0.1, "sample_rate": SR, **over}
    return yaml.safe_dump(rec, sort_keys=False)
