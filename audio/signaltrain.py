"""The SignalTrain LA-2A v1.1 layout: names, pairing and validation.

``ROOT/{Train,Val,Test}/input_NNN_.wav`` pairs with
``target_NNN_LA2A_{3c|2c}__S__PR.wav`` of the same ID; S is the switch
(0 compress, 1 limit) and PR the peak reduction (0..100). A folder that breaks
the layout (unpaired file, duplicate ID, unknown name) is rejected with an error
naming the file, so a mislabelled corpus never trains silently.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from audio.devices import MODES, SWITCH
from common.errors import UserError

__all__ = ["SPLITS", "Pair", "input_name", "target_name", "scan_corpus", "find_level"]

SPLITS = ("Train", "Val", "Test")

_INPUT = re.compile(r"^input_(\d+)_\.wav$", re.IGNORECASE)
_TARGET = re.compile(r"^target_(\d+)_LA2A_(\w+?)__([01])__(\d+)\.wav$", re.IGNORECASE)


@dataclass(frozen=True)
class Pair:
    split: str
    id: int
    input: Path
    target: Path
    tag: str            # "3c" (the long per-level files) or "2c"
    mode: str           # compress | limit
    peak_reduction: int

    @property
    def setting(self) -> dict:
        """The LA-2A setting of the target: ``{"mode", "peak_reduction"}``."""
        return {"mode": self.mode, "peak_reduction": self.peak_reduction}


def input_name(file_id: int) -> str:
    return f"input_{file_id:03d}_.wav"


def target_name(file_id: int, mode: str, peak_reduction: int, tag: str = "3c") -> str:
    return f"target_{file_id:03d}_LA2A_{tag}__{SWITCH[mode]}__{int(peak_reduction)}.wav"


def scan_corpus(root: str | Path) -> list[Pair]:
    """All pairs under ``root``, sorted by split then ID.

    Raises:
        UserError: missing root, no split folders, unknown wav names, duplicate IDs,
            unpaired inputs or targets, PR outside 0..100.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: SignalTrain folder not found")
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits:
        raise UserError(f"{root}: no Train, Val or Test folder (expected the SignalTrain LA-2A layout)")
    pairs: list[Pair] = []
    seen_ids: dict[int, Path] = {}
    for split in splits:
        inputs: dict[int, Path] = {}
        targets: dict[int, tuple[Path, re.Match]] = {}
        for path in sorted((root / split).iterdir()):
            if path.suffix.lower() != ".wav" or path.name.startswith("."):
                continue
            m_in, m_tg = _INPUT.match(path.name), _TARGET.match(path.name)
            if m_in:
                fid, table, item = int(m_in.group(1)), inputs, path
            elif m_tg:
                fid, table, item = int(m_tg.group(1)), targets, (path, m_tg)
            else:
                raise UserError(f"{path}: unknown file name in a SignalTrain folder "
                                "(expected input_NNN_.wav or target_NNN_LA2A_3c__S__PR.wav)")
            if fid in table:
                other = table[fid][0] if isinstance(table[fid], tuple) else table[fid]
                raise UserError(f"{path}: duplicate ID {fid} (also {other.name})")
            table[fid] = item
        for fid, path in inputs.items():
            if fid not in targets:
                raise UserError(f"{path}: unpaired input (no target with ID {fid})")
        for fid, (path, m) in sorted(targets.items()):
            if fid not in inputs:
                raise UserError(f"{path}: unpaired target (no input_{fid:03d}_.wav)")
            if fid in seen_ids:
                raise UserError(f"{path}: duplicate ID {fid} (also in {seen_ids[fid].parent.name})")
            seen_ids[fid] = path
            pr = int(m.group(4))
            if not 0 <= pr <= 100:
                raise UserError(f"{path}: peak reduction {pr} is outside 0..100")
            pairs.append(Pair(split, fid, inputs[fid], path, m.group(2), MODES[int(m.group(3))], pr))
    if not pairs:
        raise UserError(f"{root}: no input/target pairs found")
    return pairs


def find_level(pairs: list[Pair], mode: str, peak_reduction: int, splits=("Train", "Val", "Test"),
               tag: str | None = "3c") -> Pair | None:
    """The pair used to fit one setting: first match in ``splits`` order, lowest ID."""
    for split in splits:
        for p in pairs:
            if p.split == split and p.mode == mode and p.peak_reduction == peak_reduction \
                    and (tag is None or p.tag == tag):
                return p
    return None


def levels_by_mode(pairs: list[Pair]) -> dict[str, list[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    for p in pairs:
        out[p.mode].add(p.peak_reduction)
    return {m: sorted(v, reverse=True) for m, v in out.items()}
