"""The report pages' parts on small made-up data: files written once and swapped in whole,
the comparison page's settings, excerpts and size budget."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.devices import LA2A, la2a_setting
from report import html
from report.compare_page import ExcerptCollector, choose_settings, write_compare_report

SR = 8000


def test_identical_audio_is_written_once_and_links_are_relative(tmp_path):
    files = html.ReportFiles(tmp_path)
    x = 0.1 * np.sin(np.arange(SR) / 10)
    a = files.audio("a", x, SR)
    b = files.audio("b", x.copy(), SR)
    c = files.audio("c", 0.5 * x, SR)
    assert a == b == "report_files/a.flac" and c == "report_files/c.flac"
    files.publish(html.page("t", "<p>x</p>"))
    y, sr = sf.read(str(tmp_path / a))
    assert sr == SR and np.max(np.abs(y - x)) < 1 / 32767   # 16-bit, at its true level
    assert sorted(p.name for p in (tmp_path / "report_files").iterdir()) == ["a.flac", "c.flac"]


def test_publishing_replaces_the_previous_report_whole(tmp_path):
    first = html.ReportFiles(tmp_path)
    first.audio("old", np.zeros(100) + 0.1, SR)
    first.publish(html.page("one", ""))
    second = html.ReportFiles(tmp_path)
    second.audio("new", np.zeros(100) + 0.2, SR)
    second.discard()                                    # a run that failed: nothing changes
    assert (tmp_path / "report_files" / "old.flac").is_file()
    third = html.ReportFiles(tmp_path)
    third.audio("new", np.zeros(100) + 0.2, SR)
    third.publish(html.page("three", ""))
    assert [p.name for p in (tmp_path / "report_files").iterdir()] == ["new.flac"]
    assert "<title>three</title>" in (tmp_path / "report.html").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no staging left


def test_tables_escape_text_and_scroll_in_their_box():
    out = html.table([{"a": "<b>", "x": 1.23456}], [("a", "name", ""), ("x", "value", ".2f")], name="t",
                     row_class=lambda r: "held-out")
    assert "&lt;b&gt;" in out and "1.23" in out and 'data-table="t"' in out
    assert out.startswith('<div class="scroll">') and 'class="held-out"' in out


@dataclass
class _Take:
    setting: dict
    target: Path


def _collected(levels=(90, 80), seconds=3.0):
    """A collector fed as the evaluation feeds it: two models at each setting."""
    rng = np.random.default_rng(0)
    settings = [la2a_setting(m, pr) for m in ("compress", "limit") for pr in levels]
    shown = choose_settings(LA2A, [_Take(s, Path("t.wav")) for s in settings], lambda s: s["peak_reduction"] != 90,
                            "all")
    col = ExcerptCollector(LA2A, shown, seconds=1.0, count=2, skip_s=0.5)
    rows = []
    for s in settings:
        x = 0.2 * rng.standard_normal(int(seconds * SR))
        y = 0.5 * x
        assert col.begin_take(_Take(s, Path(f"target_{s['mode']}_{s['peak_reduction']}.wav")), x, y, SR)
        for model, kind, out in (("ff5", "dsp", 0.45 * x), ("s6", "hybrid", 0.5 * x + 0.001 * rng.standard_normal(len(x)))):
            col.add(model, kind, out)
            rows.append({"model": model, "kind": kind, "mode": s["mode"], "peak_reduction": s["peak_reduction"],
                         "setting": s, "split": "unseen" if s["peak_reduction"] == 90 else "seen", "params": 5,
                         "esr": 0.1, "mae": 0.01, "stft": 0.5, "lufs_diff": 1.0, "loudness_dynamics": 0.1,
                         "gr_trajectory": 0.2, "rtf_256": 100.0, "steps": None, "best_step": None})
    return col, rows


def test_settings_shown_held_out_all_or_listed():
    takes = [_Take(la2a_setting(m, pr), Path("t.wav")) for m in ("compress", "limit") for pr in (100, 90, 80)]
    seen = lambda s: s["peak_reduction"] != 90  # noqa: E731
    held = choose_settings(LA2A, takes, seen, "held_out")
    assert held == [la2a_setting("compress", 90), la2a_setting("limit", 90)]
    assert len(choose_settings(LA2A, takes, seen, "all")) == 6
    assert choose_settings(LA2A, takes, seen, [100]) == [la2a_setting("compress", 100), la2a_setting("limit", 100)]
    assert len(choose_settings(LA2A, takes, lambda s: True, "held_out")) == 6   # nothing held out: all


def test_comparison_page_has_a_section_per_setting_with_every_track(tmp_path):
    col, rows = _collected()
    rep = write_compare_report(tmp_path, title="t", intro="`x`", device=LA2A, rows=rows, summary=[], tables=[],
                               pictures=[], collector=col, max_mb=50, skip_s=0.5)
    text = rep.path.read_text()
    assert rep.shown == ["compress PR 90", "compress PR 80", "limit PR 90", "limit PR 80"] and not rep.dropped
    assert text.count('data-table="setting"') == 4 and text.count("<h3>Excerpt ") == 8
    # per excerpt: input, target, 2 outputs, 2 errors; every src a file that exists
    assert text.count("<audio ") == 8 * 6
    for src in set(part.split('"')[0] for part in text.split('src="')[1:]):
        assert (tmp_path / src).is_file(), src
    assert text.count(html.badge("held out")) >= 2
    assert rep.bytes == pytest.approx(sum(p.stat().st_size for p in (tmp_path / "report_files").iterdir())
                                      + (tmp_path / "report.html").stat().st_size, rel=0.01)


def test_comparison_page_keeps_to_its_size_budget(tmp_path):
    col, rows = _collected()
    rep = write_compare_report(tmp_path, title="t", intro="", device=LA2A, rows=rows, summary=[], tables=[],
                               pictures=[], collector=col, max_mb=0.6, skip_s=0.5)
    assert rep.shown == ["compress PR 90"]               # the first setting is always shown
    assert rep.dropped == ["compress PR 80", "limit PR 90", "limit PR 80"]
    text = rep.path.read_text()
    assert "Left out to keep the report under 0.6 MB" in text and text.count('data-table="setting"') == 1
    names = {p.name.split("_")[0] for p in (tmp_path / "report_files").iterdir()}
    assert names == {"compress-pr-90"}                   # the dropped settings' files are gone
