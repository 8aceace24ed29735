"""The embedded default corpus: synthesised material through the stand-in leveller,
written in the SignalTrain LA-2A v1.1 layout.

Train holds one long pair per (mode, PR); Val and Test hold other, shorter
material at every one of those settings, so evaluation can cover every setting on
audio never fitted. The corpus is generated once into a cache folder named by a
hash of its settings (same settings, same bytes), built in a temporary folder and
renamed into place when complete, so an interrupted generation is never used. The
temporary folder of a generation that was killed outright (SIGKILL, power cut) is
removed by the next generation in the same cache folder once its process is gone.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audio import material, standin
from audio.devices import MODES
from audio.io import write_audio
from audio.signaltrain import input_name, target_name
from common.atomic import fsync_folder, temporary_folder

__all__ = ["CorpusSpec", "ensure_corpus", "DATASET_DIR"]

DATASET_DIR = "SignalTrain_LA2A_Dataset_1.1"
_VERSION = 1  # bump when material or the stand-in change, so caches regenerate


def _code(path: str) -> str:
    """A module's code without its docstrings and comments (its syntax tree): editing the
    documentation of the generators does not regenerate the corpus, changing what they do does."""
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


@dataclass(frozen=True)
class CorpusSpec:
    seed: int = 0
    sample_rate: int = 44100
    train_seconds: float = 60.0
    eval_seconds: float = 20.0
    levels: tuple[int, ...] = tuple(range(100, 35, -5))
    modes: tuple[str, ...] = MODES

    def key(self) -> str:
        # the generators' code is part of the key: a changed device never reuses a stale cache
        code = hashlib.sha256((_code(material.__file__) + _code(standin.__file__)).encode())
        text = json.dumps({"version": _VERSION, "code": code.hexdigest(), **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def entries(self):
        """(split, id, mode, pr, seconds) for every pair, IDs numbered from 1."""
        fid = 0
        for split, seconds in (("Train", self.train_seconds), ("Val", self.eval_seconds),
                               ("Test", self.eval_seconds)):
            for mode in self.modes:
                for pr in self.levels:
                    fid += 1
                    yield split, fid, mode, int(pr), seconds


def ensure_corpus(cache_dir: str | Path, spec: CorpusSpec = CorpusSpec(), quiet: bool = False) -> Path:
    """Return the dataset root for ``spec``, generating it first if needed."""
    cache_dir = Path(cache_dir)
    final = cache_dir / f"standin-{spec.key()}"
    root = final / DATASET_DIR
    if (final / "corpus.json").is_file():
        return root
    cache_dir.mkdir(parents=True, exist_ok=True)
    with temporary_folder(final) as tmp:   # stale ones of killed generations go first
        entries = list(spec.entries())
        for split in ("Train", "Val", "Test"):
            (tmp / DATASET_DIR / split).mkdir(parents=True, exist_ok=True)
        bar = tqdm(entries, desc="stand-in corpus", unit="pair", disable=quiet, leave=False)
        for split, fid, mode, pr, seconds in bar:
            bar.set_postfix_str(f"{split} {mode} PR {pr}")
            seed = int.from_bytes(hashlib.sha256(f"{spec.seed}/{fid}".encode()).digest()[:4], "little")
            x = material.synthesize(seconds, spec.sample_rate, seed=seed)
            y = standin.render(x, spec.sample_rate, pr, mode)
            folder = tmp / DATASET_DIR / split
            write_audio(folder / input_name(fid), x, spec.sample_rate)
            write_audio(folder / target_name(fid, mode, pr), np.asarray(y, dtype=np.float32), spec.sample_rate)
        (tmp / "corpus.json").write_text(json.dumps({"version": _VERSION, **asdict(spec)}, indent=1))
        if final.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        os.replace(tmp, final)
        fsync_folder(cache_dir)
    if not quiet:
        size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
        print(f"generated the stand-in corpus ({len(entries)} pairs, {size / 1e6:.0f} MB) in {final}; "
              "every run reuses it (data.cache_dir or $LA2A_CACHE_DIR move it)")
    return root
