"""The embedded stand-in corpus: SignalTrain layout, reproducible byte for byte, cached,
and never half-built."""
from __future__ import annotations

import json

import pytest
import soundfile as sf

from audio import corpus as corpus_mod
from audio.corpus import DATASET_DIR, CorpusSpec, ensure_corpus
from audio.signaltrain import SPLITS, scan_corpus

SPEC = CorpusSpec(seed=3, train_seconds=2.0, eval_seconds=1.0, levels=(100, 90), modes=("compress", "limit"))


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    a = ensure_corpus(tmp_path_factory.mktemp("cache-a"), SPEC, quiet=True)
    b = ensure_corpus(tmp_path_factory.mktemp("cache-b"), SPEC, quiet=True)
    return a, b


def test_layout_has_every_setting(two_corpora):
    root, _ = two_corpora
    assert root.name == DATASET_DIR
    pairs = scan_corpus(root)
    assert sorted((p.split, p.mode, p.peak_reduction) for p in pairs) == sorted(
        (s, m, pr) for s in SPLITS for m in SPEC.modes for pr in SPEC.levels)
    assert len({p.id for p in pairs}) == len(pairs)
    for p in pairs:
        seconds = SPEC.train_seconds if p.split == "Train" else SPEC.eval_seconds
        for path in (p.input, p.target):
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.frames) == (SPEC.sample_rate, 1,
                                                                     round(seconds * SPEC.sample_rate))
    meta = json.loads((root.parent / "corpus.json").read_text())
    assert meta["seed"] == 3 and meta["levels"] == [100, 90]


def test_reproducible_byte_for_byte(two_corpora):
    a, b = two_corpora
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    assert files_a == files_b and len(files_a) == 2 * 3 * 2 * 2
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert a.parent.name == b.parent.name  # the folder is named by the settings' hash


def test_second_call_reuses_the_cache(two_corpora, monkeypatch):
    root, _ = two_corpora
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.wav")}

    def boom(*a, **k):
        raise AssertionError("regenerated a cached corpus")

    monkeypatch.setattr(corpus_mod.material, "synthesize", boom)
    assert ensure_corpus(root.parent.parent, SPEC, quiet=True) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.wav")} == stamps


def test_other_settings_get_another_folder():
    assert CorpusSpec(seed=4).key() != CorpusSpec(seed=3).key()
    assert CorpusSpec(levels=(100,)).key() != CorpusSpec(levels=(90,)).key()
    assert CorpusSpec().key() == CorpusSpec().key()


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = corpus_mod.standin.render

    def fail_on_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(corpus_mod.standin, "render", fail_on_third)
    spec = CorpusSpec(seed=5, train_seconds=0.5, eval_seconds=0.5, levels=(100, 90), modes=("compress",))
    with pytest.raises(KeyboardInterrupt):
        ensure_corpus(tmp_path, spec, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_killed_generation_is_cleaned_up_next_time(tmp_path):
    """A SIGKILLed generation cannot remove its temporary folder; the next generation
    removes abandoned ones (no lock held, over a minute old) and keeps a live one's."""
    import os
    import time

    from common.atomic import owned, temporary_name

    spec = CorpusSpec(seed=6, train_seconds=0.5, eval_seconds=0.5, levels=(100,), modes=("compress",))
    stale = tmp_path / temporary_name(f"standin-{spec.key()}")
    stale_other = tmp_path / temporary_name("standin-0123456789ab")
    live = tmp_path / temporary_name("standin-0123456789ab")
    old = time.time() - 300
    for folder in (stale, stale_other, live):
        (folder / DATASET_DIR / "Train").mkdir(parents=True)
        (folder / DATASET_DIR / "Train" / "input_1_.wav").write_bytes(b"\0" * 4096)
        os.utime(folder, (old, old))
    with owned(live):
        root = ensure_corpus(tmp_path, spec, quiet=True)
    assert not stale.exists() and not stale_other.exists()
    assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, root.parent.name])


def test_signaltrain_layout_reproduces_the_real_file_table(tmp_path):
    """The real v1.1 table at reduced lengths, read by the SignalTrain reader unchanged."""
    spec = CorpusSpec(seed=1, train_seconds=0.3, eval_seconds=0.2, levels=(100, 80, 70, 65, 50),
                      layout="signaltrain")
    pairs = scan_corpus(ensure_corpus(tmp_path, spec, quiet=True))
    table = {(p.split, p.id, p.mode, p.peak_reduction, p.tag) for p in pairs}
    assert {(s, i) for s, i, *_ in table if s == "Test"} == {("Test", 235), ("Test", 256), ("Test", 259)}
    assert ("Train", 158, "compress", 100, "3c") in table and ("Train", 179, "limit", 100, "3c") in table
    assert ("Train", 221, "limit", 100, "3c") in table and ("Train", 263, "limit", 100, "2c") in table
    assert {(s, t) for s, _, m, pr, t in table if (m, pr) == ("compress", 50)} == {("Val", "3c"), ("Val", "2c")}
    assert {(s, t) for s, _, m, pr, t in table if (m, pr) == ("limit", 70)} == {("Val", "3c"), ("Val", "2c")}
    assert {t for _, _, m, pr, t in table if (m, pr) == ("compress", 70)} == {"3c"}     # no 2c take (ID 236)
    for p in pairs:
        seconds = spec.train_seconds if p.tag == "3c" else spec.eval_seconds
        assert sf.info(str(p.target)).frames == round(seconds * spec.sample_rate)
    assert CorpusSpec().key() != CorpusSpec(layout="signaltrain").key()
