"""Excerpt choice on a take whose passages are known."""
from __future__ import annotations

import numpy as np

from report.excerpts import choose_excerpts, fit_excerpt

SR = 8000


def _take() -> np.ndarray:
    """0-6 s: quiet pad; 6-11 s: hits every 0.2 s; 11-16 s: loud steady noise; 16-17 s: quiet
    pad; 17-19 s: loud; 19-23 s: a quiet tone (-35 dBFS); 23-26 s: quiet pad."""
    rng = np.random.default_rng(0)
    t = np.arange(26 * SR) / SR
    x = 0.003 * np.sin(2 * np.pi * 200 * t)
    hits = (t >= 6) & (t < 11)
    phase = (t - 6) % 0.2
    x[hits] += 0.5 * rng.standard_normal(hits.sum()) * np.exp(-phase[hits] / 0.02)
    loud = (t >= 11) & (t < 16)
    x[loud] += 0.3 * rng.standard_normal(loud.sum())
    burst = (t >= 17) & (t < 19)
    x[burst] += 0.3 * rng.standard_normal(burst.sum())
    tail = (t >= 19) & (t < 23)
    x[tail] += 0.025 * np.sin(2 * np.pi * 440 * t[tail])
    return x


def test_each_kind_finds_its_passage():
    chosen = {e.kind: e for e in choose_excerpts(_take(), SR, seconds=4.0, count=3, skip_s=1.0)}
    assert set(chosen) == {"transient", "sustained", "release"}
    tr, su, re = (chosen[k] for k in ("transient", "sustained", "release"))
    assert 6 * SR <= tr.start and tr.stop <= 11 * SR
    assert 11 * SR <= su.start and su.stop <= 16.25 * SR
    # loud first, then the quiet tone: the window starts in the burst and ends in the tail
    assert 17 * SR <= re.start < 19 * SR and 19 * SR < re.stop <= 23.25 * SR
    for e in chosen.values():
        assert e.stop - e.start == 4 * SR


def test_excerpts_do_not_overlap_and_are_in_time_order():
    chosen = choose_excerpts(_take(), SR, seconds=6.0, count=3, skip_s=1.0)
    assert [e.start for e in chosen] == sorted(e.start for e in chosen)
    for a, b in zip(chosen, chosen[1:]):
        assert a.stop <= b.start
    assert all(e.start >= SR for e in chosen)   # never in the warm-up


def test_a_short_take_is_one_excerpt():
    x = _take()[: int(3.5 * SR)]
    (only,) = choose_excerpts(x, SR, seconds=5.0, count=3, skip_s=1.0)
    assert (only.kind, only.start, only.stop) == ("whole", SR, len(x))
    tiny = _take()[: int(1.2 * SR)]
    (whole,) = choose_excerpts(tiny, SR, seconds=5.0, skip_s=1.0)
    assert (whole.start, whole.stop) == (0, len(tiny))   # under half a second after the warm-up: all of it


def test_fit_excerpt_is_the_transient_passage():
    e = fit_excerpt(_take(), SR, seconds=4.0)
    assert e.kind == "transient" and 6 * SR <= e.start
