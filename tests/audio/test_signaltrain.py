"""The SignalTrain LA-2A layout: names, pairing, which pair fits a level, and the errors
for a folder that breaks the layout (each names the offending file)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.signaltrain import find_level, input_name, levels_by_mode, scan_corpus, target_name
from common.errors import UserError


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.full(32, 0.1, dtype=np.float32), 44100)


def _layout(root: Path, entries) -> Path:
    """``entries``: (split, id, mode, pr[, tag]) tuples; writes an input and a target each."""
    for split, fid, mode, pr, *tag in entries:
        _wav(root / split / input_name(fid))
        _wav(root / split / target_name(fid, mode, pr, *tag))
    return root


def test_names():
    assert input_name(7) == "input_007_.wav"
    assert target_name(7, "compress", 65) == "target_007_LA2A_3c__0__65.wav"
    assert target_name(148, "limit", 100, tag="2c") == "target_148_LA2A_2c__1__100.wav"


def test_scan_pairs_every_file(tmp_path):
    root = _layout(tmp_path, [("Train", 1, "compress", 100), ("Train", 2, "limit", 70),
                              ("Val", 148, "compress", 50), ("Test", 9, "limit", 0, "2c")])
    (root / "Train" / "notes.txt").write_text("ignored")
    (root / "Train" / ".hidden.wav").write_bytes(b"")
    pairs = scan_corpus(root)
    got = [(p.split, p.id, p.mode, p.peak_reduction, p.tag, p.input.name, p.target.name) for p in pairs]
    assert got == [
        ("Train", 1, "compress", 100, "3c", "input_001_.wav", "target_001_LA2A_3c__0__100.wav"),
        ("Train", 2, "limit", 70, "3c", "input_002_.wav", "target_002_LA2A_3c__1__70.wav"),
        ("Val", 148, "compress", 50, "3c", "input_148_.wav", "target_148_LA2A_3c__0__50.wav"),
        ("Test", 9, "limit", 0, "2c", "input_009_.wav", "target_009_LA2A_2c__1__0.wav"),
    ]
    assert levels_by_mode(pairs) == {"compress": [100, 50], "limit": [70, 0]}


def test_only_some_splits(tmp_path):
    root = _layout(tmp_path, [("Val", 3, "compress", 80)])
    assert [p.split for p in scan_corpus(root)] == ["Val"]


def test_find_level_prefers_train_then_val_then_lowest_id(tmp_path):
    root = _layout(tmp_path, [("Val", 1, "compress", 50), ("Train", 8, "compress", 50),
                              ("Train", 5, "compress", 50), ("Test", 2, "compress", 40),
                              ("Val", 3, "compress", 40), ("Train", 4, "compress", 30, "2c")])
    pairs = scan_corpus(root)
    assert (find_level(pairs, "compress", 50).split, find_level(pairs, "compress", 50).id) == ("Train", 5)
    assert (find_level(pairs, "compress", 40).split, find_level(pairs, "compress", 40).id) == ("Val", 3)
    assert find_level(pairs, "compress", 50, splits=("Val", "Train")).id == 1
    assert find_level(pairs, "compress", 50, splits=("Test",)) is None
    assert find_level(pairs, "limit", 50) is None
    assert find_level(pairs, "compress", 30) is None                 # only a 2c file
    assert find_level(pairs, "compress", 30, tag=None).id == 4


def _error(root: Path) -> str:
    with pytest.raises(UserError) as err:
        scan_corpus(root)
    return str(err.value)


@pytest.mark.parametrize("extra, words", [
    ("Train/input_002_.wav", ["input_002_.wav", "unpaired input"]),
    ("Val/target_005_LA2A_3c__1__60.wav", ["target_005_LA2A_3c__1__60.wav", "unpaired target"]),
    ("Train/target_001_LA2A_3c__0__90.wav", ["target_001_LA2A_3c__0__90.wav", "duplicate ID 1"]),   # within a split
    ("Train/input_1_.wav", ["duplicate ID 1", "input_"]),                                           # another spelling
])
def test_broken_layouts_name_the_file(tmp_path, extra, words):
    root = _layout(tmp_path, [("Train", 1, "compress", 100)])
    _wav(root / extra)
    msg = _error(root)
    assert all(w in msg for w in words)


def test_duplicate_id_across_splits(tmp_path):
    root = _layout(tmp_path, [("Train", 1, "compress", 100), ("Val", 1, "limit", 100)])
    msg = _error(root)
    assert str(root / "Val") in msg and "duplicate ID 1" in msg


@pytest.mark.parametrize("name", ["drums.wav", "target_001_LA2A_3c__2__50.wav", "input_001.wav",
                                  "target_x_LA2A_3c__0__50.wav"])
def test_unknown_name(tmp_path, name):
    root = _layout(tmp_path, [("Train", 1, "compress", 100)])
    _wav(root / "Train" / name)
    msg = _error(root)
    assert name in msg and "unknown file name" in msg


def test_peak_reduction_out_of_range(tmp_path):
    root = _layout(tmp_path, [("Train", 1, "compress", 150)])
    msg = _error(root)
    assert "target_001_LA2A_3c__0__150.wav" in msg and "outside 0..100" in msg


def test_missing_and_empty_folders(tmp_path):
    assert "not found" in _error(tmp_path / "nowhere") and "nowhere" in _error(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "no Train, Val or Test folder" in _error(tmp_path / "empty")
    (tmp_path / "bare" / "Train").mkdir(parents=True)
    assert "no input/target pairs" in _error(tmp_path / "bare")
