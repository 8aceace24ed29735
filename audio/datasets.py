"""From the ``data`` config to files on disk: the embedded stand-in corpus or a
SignalTrain folder, and which pair fits which setting."""
from __future__ import annotations

import os
from pathlib import Path

from audio.corpus import CorpusSpec, ensure_corpus
from audio.signaltrain import Pair, find_level, scan_corpus
from common.errors import UserError

__all__ = ["dataset_root", "cache_folder", "corpus_spec", "load_pairs", "fit_pair_finder"]


def corpus_spec(data) -> CorpusSpec:
    c = data.corpus
    return CorpusSpec(seed=int(c.seed), sample_rate=int(c.sample_rate), train_seconds=float(c.train_seconds),
                      eval_seconds=float(c.eval_seconds), levels=tuple(int(v) for v in c.levels),
                      modes=tuple(str(m) for m in c.modes), layout=str(c.get("layout", "grid")))


def dataset_root(data, quiet: bool = False) -> Path:
    """The SignalTrain-layout root named by ``data``; generates the stand-in corpus if asked."""
    if data.get("root"):
        root = Path(str(data.root))
        if not root.is_dir():
            raise UserError(f"{root}: dataset folder not found (data.root)")
        return root
    if not data.get("generate", False):
        raise UserError("data.root is not set: give data.root=DIR (the SignalTrain LA-2A folder)")
    return ensure_corpus(cache_folder(data.get("cache_dir")), corpus_spec(data), quiet=quiet)


def cache_folder(configured=None) -> Path:
    """Where generated material lives: ``configured`` (``data.cache_dir``), else
    ``$LA2A_CACHE_DIR``, else the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``)
    ``/optical-leveller-match``: one corpus for every working folder."""
    if configured:
        return Path(str(configured)).expanduser()
    if os.environ.get("LA2A_CACHE_DIR"):
        return Path(os.environ["LA2A_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "optical-leveller-match"


def load_pairs(data, quiet: bool = False) -> list[Pair]:
    return scan_corpus(dataset_root(data, quiet))


def fit_pair_finder(pairs: list[Pair], data):
    """``(mode, pr) -> (input, target)`` for the per-level fits, or None if absent."""
    splits = tuple(data.fit_splits)
    tag = data.get("fit_tag")

    def find(mode: str, pr: int):
        p = find_level(pairs, mode, pr, splits, tag)
        return None if p is None else (p.input, p.target)

    return find
