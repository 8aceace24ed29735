"""Stand-in optical leveller: the acceptance probes (timing, static curve, tone) and CLI.

Every number is measured from what the model renders (its per-sample gain or its
output), never taken from its constants.
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.material import synthesize
from audio.standin import (HISS_DBFS, MODES, noise_floor, probe_tone_burst, render,
                            render_with_gain, tone)
from audio.metrics import preemphasis_np

SR = 44100
REPO = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=None)
def _probe(pr: float, mode: str, burst_s: float = 1.0) -> dict:
    return probe_tone_burst(pr, mode, burst_s=burst_s, post_s=12.0)


def _steady_reduction_db(freq: float, level_db: float, pr: float, mode: str) -> float:
    """Mean gain reduction over the last 0.2 s of a 1.5 s tone."""
    _, gain = render_with_gain(tone(freq, level_db, 1.5, SR), SR, pr, mode)
    return float(-np.mean(gain[-int(0.2 * SR):]))


def _steady_out_db(level_db: float, pr: float, mode: str) -> float:
    """RMS level (dB re a full-scale sine) of the output for a 1 kHz tone, steady state."""
    y = render(tone(1000.0, level_db, 1.5, SR), SR, pr, mode)
    tail = y[-SR // 5:].astype(np.float64)
    return float(20 * np.log10(np.sqrt(2 * np.mean(tail ** 2))))


def _thd_percent(y: np.ndarray, freq: int = 1000) -> float:
    """THD (harmonics 2..10 over the fundamental) over the last second.

    One second holds a whole number of periods of ``freq``, so every harmonic sits
    exactly on an FFT bin and no window is needed.
    """
    seg = y[-SR:].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg))
    harmonics = spec[[freq * k for k in range(1, 11)]]
    return float(100.0 * np.sqrt(np.sum(harmonics[1:] ** 2)) / harmonics[0])


# --------------------------------------------------------------------------- timing
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pr", [40, 70, 100])
def test_attack_90_percent_within_1_to_60_ms(pr, mode):
    p = _probe(pr, mode)
    assert p["reduction_db"] > 3.0
    assert 1.0 <= p["attack_ms"] <= 60.0, p


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pr", [40, 70, 100])
def test_two_stage_release(pr, mode):
    p = _probe(pr, mode)
    assert 20.0 <= p["release50_ms"] <= 300.0, p
    assert np.isfinite(p["release90_ms"]), p
    assert p["release90_ms"] >= 3.0 * p["release50_ms"], p


@pytest.mark.parametrize("pr", [70, 100])
def test_release_is_program_dependent(pr):
    short = _probe(pr, "compress", burst_s=0.2)
    long = _probe(pr, "compress", burst_s=5.0)
    assert long["release90_ms"] >= 1.3 * short["release90_ms"], (short, long)
    assert long["release50_ms"] >= short["release50_ms"]


def test_gain_trace_matches_output_level():
    """The reported gain is what the output shows (quiet tone: the tube is linear)."""
    x = tone(1000.0, -40.0, 3.0, SR)
    x[: SR] *= 10 ** (34 / 20)  # 1 s at -6 dBFS, then -40 dBFS: gain recovering
    y, gain = render_with_gain(x, SR, 100, "compress")
    for start in (int(1.3 * SR), int(2.0 * SR), int(2.8 * SR)):
        sl = slice(start, start + 441)  # 10 ms: gain nearly constant
        measured = 20 * np.log10(np.sqrt(np.mean(y[sl].astype(float) ** 2)
                                         / np.mean(x[sl].astype(float) ** 2)))
        assert measured == pytest.approx(float(np.mean(gain[sl])), abs=0.3)


# --------------------------------------------------------------------- static curve
def test_steady_reduction_grows_with_peak_reduction():
    red = {pr: _steady_reduction_db(1000.0, -6.0, pr, "compress") for pr in (0, 40, 70, 100)}
    assert red[0] < 0.1
    assert red[40] < red[70] < red[100], red
    assert 6.0 <= red[100] <= 30.0, red


def test_threshold_moves_about_linearly_in_db():
    """Input level that gets 6 dB of reduction (the knee centre) vs PR."""
    levels = np.arange(-50.0, 0.01, 1.0)
    knee = {}
    for pr in (40, 70, 100):
        red = np.array([_steady_reduction_db(200.0, lv, pr, "compress") for lv in levels[::4]])
        knee[pr] = float(np.interp(6.0, red, levels[::4]))
    assert knee[100] < knee[70] < knee[40]
    step1, step2 = knee[40] - knee[70], knee[70] - knee[100]
    assert step1 == pytest.approx(step2, rel=0.25), knee


def test_limit_mode_is_steeper_at_heavy_reduction():
    slope = {}
    for mode in MODES:
        lo, hi = _steady_out_db(-20.0, 100, mode), _steady_out_db(0.0, 100, mode)
        slope[mode] = (hi - lo) / 20.0
    assert slope["limit"] < 0.75 * slope["compress"], slope
    assert slope["limit"] > -0.1, slope  # no strong over-compression
    assert (_steady_reduction_db(1000.0, 0.0, 100, "limit")
            > _steady_reduction_db(1000.0, 0.0, 100, "compress") + 2.0)


def test_highs_are_reduced_more_than_lows():
    low = _steady_reduction_db(100.0, -12.0, 70, "compress")
    high = _steady_reduction_db(5000.0, -12.0, 70, "compress")
    assert high > low + 1.0, (low, high)


@pytest.mark.parametrize("level_db, pr", [(-6.0, 40), (-12.0, 0), (-6.0, 0)])
def test_thd_of_moderate_tone(level_db, pr):
    y = render(tone(1000.0, level_db, 2.0, SR), SR, pr, "compress")
    assert 0.3 <= _thd_percent(y) <= 3.0


# ------------------------------------------------- recorded-unit stages (around the core)
def _harmonic_amplitudes(y: np.ndarray, freq: int = 1000) -> np.ndarray:
    spec = np.abs(np.fft.rfft(y[-SR:].astype(np.float64)))
    return spec[[freq * k for k in range(1, 4)]]


@pytest.mark.parametrize("level_db", [-12.0, -6.0])
def test_tube_stage_is_mostly_second_harmonic(level_db):
    y = render(tone(1000.0, level_db, 1.5, SR), SR, 0, "compress", noise=False)
    h1, h2, h3 = _harmonic_amplitudes(y)
    assert h2 > 5.0 * h3, (h2, h3)
    assert 0.005 < h2 / h1 < 0.04, h2 / h1  # 0.5-4 %: LA-2A-like


def _level_db(freq: float) -> float:
    """Steady output level re input of a quiet tone with the compressor off (PR 0)."""
    x = tone(freq, -30.0, 2.0, SR)
    y = render(x, SR, 0, "compress", noise=False)
    tail = slice(-SR // 2, None)
    return float(10 * np.log10(np.mean(y[tail].astype(float) ** 2) / np.mean(x[tail].astype(float) ** 2)))


def test_transformers_roll_off_both_ends():
    mid = _level_db(1000.0)
    assert abs(mid) < 0.1
    assert _level_db(15.0) < mid - 2.0        # low-frequency roll-off
    assert -1.0 < _level_db(100.0) < 0.0       # gentle at 100 Hz
    assert -3.0 < _level_db(15000.0) < mid - 0.4   # gentle top-end roll-off (about -0.65 dB)
    # the phase: a low tone leads (high-pass), it is not only a level change
    x = tone(40.0, -30.0, 2.0, SR)
    y = render(x, SR, 0, "compress", noise=False)
    tail = slice(-SR, None)
    corr = np.dot(x[tail], y[tail]) / np.sqrt(np.dot(x[tail], x[tail]) * np.dot(y[tail], y[tail]))
    assert corr < 0.97                         # about 30 degrees at 40 Hz


def test_noise_floor_level_and_seed():
    y = render(np.zeros(2 * SR, np.float32), SR, 50, "compress")
    rms_db = 10 * np.log10(np.mean(y.astype(float) ** 2))
    assert rms_db == pytest.approx(HISS_DBFS, abs=0.5)
    assert np.array_equal(y, render(np.zeros(2 * SR, np.float32), SR, 50, "compress"))  # seeded
    other = render(np.zeros(2 * SR, np.float32), SR, 50, "limit")
    assert not np.array_equal(y, other)        # another take, other noise
    a, b = noise_floor((1, 1000), SR, 3), noise_floor((1, 1000), SR, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, noise_floor((1, 1000), SR, 4))
    assert not np.any(render(np.zeros(1000, np.float32), SR, 50, "compress", noise=False))


def _gain_only_esr(x, y, gain_db) -> float:
    est = x.astype(np.float64) * 10 ** (gain_db.astype(np.float64) / 20)
    e = preemphasis_np(est - y)[SR:]
    t = preemphasis_np(y.astype(np.float64))[SR:]
    return float(np.sum(e ** 2) / np.sum(t ** 2))


def test_gain_alone_no_longer_explains_the_output():
    """The stand-in's own gain times its input vs its output: the non-gain part is significant."""
    x = synthesize(30.0, SR, seed=5)  # the excerpt of the module docstring (0.039)
    y, gain = render_with_gain(x, SR, 70, "compress")
    assert 0.02 < _gain_only_esr(x, y, gain) < 0.1
    y0, gain0 = render_with_gain(x, SR, 70, "compress", transformers=False, noise=False)
    assert _gain_only_esr(x, y0, gain0) < 0.002  # the core alone: a gain (and a little tube)


# ------------------------------------------------------------------------ behaviour
def test_deterministic_and_shapes():
    x = tone(440.0, -10.0, 0.5, SR)
    a = render(x, SR, 80, "compress")
    assert a.dtype == np.float32 and a.shape == x.shape
    assert np.array_equal(a, render(x, SR, 80, "compress"))
    b = render(x[None, :], SR, 80, "compress")
    assert b.shape == (1, x.size) and np.array_equal(b[0], a)


def test_stereo_is_linked():
    x = tone(440.0, -10.0, 0.5, SR)
    y, gain = render_with_gain(np.stack([x, 0.1 * x]), SR, 80, "compress")
    assert y.shape == (2, x.size) and gain.shape == (x.size,)
    tail = slice(-SR // 10, None)
    ratio0 = np.sqrt(np.mean(y[0, tail] ** 2) / np.mean(x[tail] ** 2))
    ratio1 = np.sqrt(np.mean(y[1, tail] ** 2) / np.mean((0.1 * x[tail]) ** 2))
    assert ratio0 == pytest.approx(ratio1, rel=0.05)


def test_time_constants_in_seconds():
    a = probe_tone_burst(70, "compress", post_s=1.0, sample_rate=44100)
    b = probe_tone_burst(70, "compress", post_s=1.0, sample_rate=96000)
    assert b["attack_ms"] == pytest.approx(a["attack_ms"], rel=0.2)
    assert b["release50_ms"] == pytest.approx(a["release50_ms"], rel=0.2)
    assert b["reduction_db"] == pytest.approx(a["reduction_db"], abs=1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"peak_reduction": 101}, "peak reduction"),
    ({"peak_reduction": -1}, "peak reduction"),
    ({"peak_reduction": float("nan")}, "peak reduction"),
    ({"mode": "expand"}, "mode"),
    ({"sample_rate": 0}, "sample rate"),
])
def test_bad_arguments(kwargs, match):
    args = {"x": np.zeros(100, np.float32), "sample_rate": SR, "peak_reduction": 50,
            "mode": "compress", **kwargs}
    with pytest.raises(ValueError, match=match):
        render(**args)


def test_bad_audio():
    with pytest.raises(ValueError, match="NaN"):
        render(np.array([0.0, np.nan], np.float32), SR, 50, "compress")
    with pytest.raises(ValueError, match="shape"):
        render(np.zeros((1, 2, 3), np.float32), SR, 50, "compress")


# ------------------------------------------------------------------------------ CLI
@pytest.fixture
def _cli(run_cli):
    """``python -m audio.standin ARGS`` (through the CLI fork server; ``fresh=True``: a new interpreter)."""
    def run(*args: str, fresh: bool = False) -> subprocess.CompletedProcess:
        return run_cli(["-m", "audio.standin", *args], cwd=REPO, fresh=fresh, timeout=120)
    return run


def test_cli_good_run(_cli, tmp_path):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    x = tone(1000.0, -6.0, 1.0, SR)
    sf.write(src, x, SR, subtype="FLOAT")
    res = _cli(str(src), str(dst), "--peak-reduction", "70", "--mode", "limit", fresh=True)
    assert res.returncode == 0, res.stderr
    y, sr = sf.read(dst, dtype="float32")
    assert sr == SR and y.shape == x.shape
    assert np.allclose(y, render(x, SR, 70, "limit"), atol=1e-6)


def test_cli_refuses_output_equal_to_input(_cli, tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, tone(1000.0, -6.0, 0.2, SR), SR, subtype="FLOAT")
    before = src.read_bytes()
    res = _cli(str(src), str(tmp_path / "." / "in.wav"), "--peak-reduction", "50")
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error:") and "in.wav" in lines[0], res.stderr
    assert src.read_bytes() == before


def test_cli_keeps_the_input_format(_cli, tmp_path):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, tone(1000.0, -6.0, 0.5, SR), SR, subtype="PCM_24")
    res = _cli(str(src), str(dst), "--peak-reduction", "50")
    assert res.returncode == 0, res.stderr
    assert sf.info(str(dst)).subtype == "PCM_24"


@pytest.fixture()
def wav(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(path, tone(1000.0, -6.0, 0.2, SR), SR)
    return path


@pytest.mark.parametrize("case", ["missing", "text", "pr150", "mode", "folder", "no_pr", "over_input"])
def test_cli_errors_are_one_line(_cli, case, wav, tmp_path):
    out = tmp_path / "out.wav"
    args = [str(wav), str(out), "--peak-reduction", "50", "--mode", "compress"]
    if case == "missing":
        args[0] = str(tmp_path / "nope.wav")
    elif case == "text":
        fake = tmp_path / "fake.wav"
        fake.write_text("not audio\n")
        args[0] = str(fake)
    elif case == "pr150":
        args[3] = "150"
    elif case == "mode":
        args[5] = "squash"
    elif case == "folder":
        args[1] = str(tmp_path / "no_such_dir" / "out.wav")
    elif case == "no_pr":
        args = args[:2]
    elif case == "over_input":
        args[1] = str(wav)
    before = wav.read_bytes()
    res = _cli(*args)
    assert wav.read_bytes() == before
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
