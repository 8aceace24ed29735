"""The embedded default corpus: synthesised material through the stand-in leveller,
written in the SignalTrain LA-2A v1.1 layout.

Two layouts (``CorpusSpec.layout``):

- ``grid`` (the default): Train holds one long pair per (mode, PR); Val and Test hold
  other, shorter material at every one of those settings, so evaluation can cover every
  setting on audio never fitted;
- ``signaltrain``: the real dataset's file table (:data:`SIGNALTRAIN_V11`, from
  ``../shared/REFERENCE.md``): its IDs and splits, a long "3c" take and a shorter "2c"
  take per setting (compress PR 70: 3c only; limit PR 100: two 3c and a 2c), settings
  whose takes are all in Val (compress 10 and 50, limit 10 and 70), other Val takes, and
  a Test split of three 2c pairs (235: compress 65; 256: limit 65; 259: limit 80). The 3c
  takes are ``train_seconds`` long, the 2c takes ``eval_seconds`` (the real ones are
  about 20 minutes and a few minutes), so material is sparse and uneven per setting as on
  the real dataset, at lengths a CPU fits in minutes.

The corpus is generated once into a cache folder named by a hash of its settings (same settings, same bytes), built in a temporary folder and
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

__all__ = ["CorpusSpec", "ensure_corpus", "DATASET_DIR", "LAYOUTS", "SIGNALTRAIN_V11", "signaltrain_table"]

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


LAYOUTS = ("grid", "signaltrain")


def signaltrain_table() -> list[tuple[str, int, str, int, str]]:
    """The SignalTrain LA-2A v1.1 file table: ``(split, id, mode, pr, tag)`` for every pair.

    3c takes: compress PR p is ID 138 + p/5, limit 159 + p/5, and ID 221 a second limit
    PR 100; 2c takes: compress 222 + p/5 (no 236: compress 70 has no 2c take), limit
    243 + p/5. Test: 235, 256, 259; Val: the settings compress 10 and 50, limit 10 and 70
    (both their takes) and the 2c takes 223, 227, 231, 239, 248, 252, 260; Train: the rest.
    """
    test = {235, 256, 259}
    val = {140, 224, 148, 232, 161, 245, 173, 257, 223, 227, 231, 239, 248, 252, 260}
    rows = []
    for first, mode in ((138, "compress"), (159, "limit")):
        rows += [(first + pr // 5, mode, pr, "3c") for pr in range(0, 101, 5)]
    rows.append((221, "limit", 100, "3c"))
    for first, mode in ((222, "compress"), (243, "limit")):
        rows += [(first + pr // 5, mode, pr, "2c") for pr in range(0, 101, 5) if (mode, pr) != ("compress", 70)]
    return [("Test" if fid in test else "Val" if fid in val else "Train", fid, mode, pr, tag)
            for fid, mode, pr, tag in sorted(rows)]


SIGNALTRAIN_V11 = tuple(signaltrain_table())


@dataclass(frozen=True)
class CorpusSpec:
    seed: int = 0
    sample_rate: int = 44100
    train_seconds: float = 60.0      # grid: every Train take; signaltrain: the 3c takes
    eval_seconds: float = 20.0       # grid: every Val and Test take; signaltrain: the 2c takes
    levels: tuple[int, ...] = tuple(range(100, 35, -5))
    modes: tuple[str, ...] = MODES
    layout: str = "grid"             # grid | signaltrain (the module docstring)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"corpus layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    def key(self) -> str:
        # the generators' code is part of the key: a changed device never reuses a stale cache
        code = hashlib.sha256((_code(material.__file__) + _code(standin.__file__)).encode())
        fields = asdict(self)
        if self.layout == "grid":   # the grid layout's key is the one it had before layouts existed
            del fields["layout"]
        text = json.dumps({"version": _VERSION, "code": code.hexdigest(), **fields}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def entries(self):
        """(split, id, mode, pr, seconds, tag) for every pair: grid IDs numbered from 1; the
        signaltrain layout's table, only at the spec's levels and modes."""
        if self.layout == "signaltrain":
            for split, fid, mode, pr, tag in SIGNALTRAIN_V11:
                if mode in self.modes and pr in self.levels:
                    yield split, fid, mode, pr, self.train_seconds if tag == "3c" else self.eval_seconds, tag
            return
        fid = 0
        for split, seconds in (("Train", self.train_seconds), ("Val", self.eval_seconds),
                               ("Test", self.eval_seconds)):
            for mode in self.modes:
                for pr in self.levels:
                    fid += 1
                    yield split, fid, mode, int(pr), seconds, "3c"


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
        for split, fid, mode, pr, seconds, tag in bar:
            bar.set_postfix_str(f"{split} {mode} PR {pr}")
            seed = int.from_bytes(hashlib.sha256(f"{spec.seed}/{fid}".encode()).digest()[:4], "little")
            x = material.synthesize(seconds, spec.sample_rate, seed=seed)
            y = standin.render(x, spec.sample_rate, pr, mode)
            folder = tmp / DATASET_DIR / split
            write_audio(folder / input_name(fid), x, spec.sample_rate)
            write_audio(folder / target_name(fid, mode, pr, tag), np.asarray(y, dtype=np.float32), spec.sample_rate)
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
