"""One scoring path for every device: rows per setting, the table, the CSV columns."""
from __future__ import annotations

import csv

import numpy as np

from audio.devices import LA2A, KnobDevice, la2a_setting
from neural.training.data import Track
from neural.evaluation import format_results, score_tracks, write_results_csv


def _track(setting, device, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(2000).astype(np.float32) * 0.1
    return Track("Test", setting, seed, x, x * 0.5, np.full(2000, -6.0, np.float32), {}, {}, device)


def test_la2a_rows_columns_and_words(tmp_path):
    tracks = [_track(la2a_setting(m, pr), LA2A, 1.0, i) for i, (m, pr) in
              enumerate([("compress", 60), ("limit", 100), ("compress", 100), ("compress", 60)])]
    rows = score_tracks(tracks, lambda t: t.y, lambda s: s["peak_reduction"] != 60, quiet=True,
                        skip_s=0.0)
    assert [(r["setting"]["mode"], r["setting"]["peak_reduction"]) for r in rows] == \
        [("compress", 100), ("compress", 60), ("limit", 100)]      # by mode, PR descending; files pooled
    assert all(r["esr_model"] == 0.0 and r["esr_dsp"] > 0 for r in rows)
    text = format_results(rows, "s6 hybrid")
    assert "UNSEEN" in text and "PR" in text and "all" in text
    write_results_csv(tmp_path / "t.csv", rows)
    header = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert header == "mode,peak_reduction,seen,esr_dsp,esr_model"


def test_knob_device_rows_columns_and_words(tmp_path):
    device = KnobDevice(["threshold", "seen"])        # a knob named like a result column
    tracks = [_track({"threshold": t, "seen": 1.0}, device, 1.0, i) for i, t in enumerate([-10.0, -30.0])]
    rows = score_tracks(tracks, lambda t: t.y_dsp(), lambda s: s["threshold"] == -30.0, quiet=True,
                        skip_s=0.0)
    assert [r["setting"]["threshold"] for r in rows] == [-30.0, -10.0]
    assert all(r["esr_model"] == r["esr_dsp"] for r in rows)
    text = format_results(rows, "s6 hybrid", device)
    assert "NEW" in text and "trained" in text and "all" not in text
    write_results_csv(tmp_path / "t.csv", rows, device)
    got = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert list(got[0]) == ["threshold", "knob_seen", "seen", "esr_dsp", "esr_model"]
    assert got[0]["threshold"] == "-30" and got[0]["seen"] == "True"
