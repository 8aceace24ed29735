"""Latency and polarity of a target against its input: estimate, correct, refuse."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import yaml

from audio import standin
from audio.align import EDGE_GUARD, align_pair, estimate_alignment
from audio.material import synthesize
from common.errors import UserError
from audio.framing import frame_pair
from dsp.fitting.collapse import check_fit_collapse
from dsp.fitting.ff5 import fit_frames
from dsp.models.ff5_streaming import render

SR = 44100
DIGITAL = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0, "make_up_db": 3.0}


def _delayed(s: np.ndarray, delay: float, pad: int = 8192) -> np.ndarray:
    """``s`` late by ``delay`` (fractional) samples, same length: an exact band-limited
    delay by a phase ramp on the zero-padded signal (independent of the code under test)."""
    s = np.asarray(s, dtype=np.float64)
    padded = np.concatenate([s, np.zeros(s.shape[:-1] + (pad,))], axis=-1)
    f = np.fft.rfftfreq(padded.shape[-1])
    return np.fft.irfft(np.fft.rfft(padded) * np.exp(-2j * np.pi * f * delay), padded.shape[-1])[..., :s.shape[-1]]


@pytest.fixture(scope="module")
def digital_pair():
    x = synthesize(3.0, SR, seed=21).astype(np.float64)
    return x, render(x, SR, DIGITAL).astype(np.float64)


@pytest.mark.parametrize("delay,polarity", [(0.25, 1), (0.5, -1), (10.5, 1), (64.3, -1), (-7.25, 1),
                                            (0.0, -1), (3000.6, 1)])
def test_fractional_latency_and_polarity_found_on_digital_compressor(digital_pair, delay, polarity):
    x, y = digital_pair
    latency, pol, strength, ratio = estimate_alignment(x, polarity * _delayed(y, delay), SR)
    assert abs(latency - delay) < 0.05
    assert pol == polarity
    assert strength > 0.9 and ratio > 5.0


@pytest.mark.parametrize("seed", range(1, 9))
def test_aligned_compressed_pair_estimates_no_latency(seed):
    """A perfectly aligned pair through a fast compressor (ratio 3, 1 ms attack): the
    gain modulation must not read as a latency (seed 2, bass-heavy, used to give -0.07)."""
    x = synthesize(2.0, SR, seed=seed).astype(np.float64)
    y = render(x, SR, {**DIGITAL, "threshold_db": -20.0, "ratio": 3.0, "attack_ms": 1.0, "make_up_db": 0.0})
    latency, polarity, *_ = estimate_alignment(x, y.astype(np.float64), SR)
    assert abs(latency) < 0.02 and polarity == 1, latency


def test_identical_pair_estimates_no_latency(digital_pair):
    x, _ = digital_pair
    assert abs(estimate_alignment(x, x.copy(), SR)[0]) < 0.02


@pytest.fixture(scope="module")
def standin_pair():
    x = synthesize(3.0, SR, seed=11).astype(np.float64)
    return x, standin.render(x, SR, 60, "compress", transformers=False).astype(np.float64)


@pytest.mark.parametrize("delay", [0.0, 0.25, 0.5, 10.5, 64.3])
def test_fractional_latency_found_on_the_nonlinear_standin(standin_pair, delay):
    """The stand-in's optical cell, tube stage and noise (its transformers off: their
    filters have a real, frequency-dependent group delay) leave the estimate within 0.05."""
    x, y = standin_pair
    latency, polarity, *_ = estimate_alignment(x, _delayed(y, delay) if delay else y, SR)
    assert abs(latency - delay) < 0.05 and polarity == 1, latency


def test_standin_transformers_read_as_their_group_delay():
    """With the transformers on, the aligned pair reads as their top-end delay (the one-pole
    low-passes delay mids by about 0.15 samples, less higher up), and a delay adds to it."""
    x = synthesize(3.0, SR, seed=21).astype(np.float64)
    y = standin.render(x, SR, 75, "limit").astype(np.float64)
    base = estimate_alignment(x, y, SR)[0]
    assert 0.0 < base < 0.15, base
    for delay in (0.5, 10.5, 64.3):
        assert abs(estimate_alignment(x, _delayed(y, delay), SR)[0] - base - delay) < 0.05


def test_correction_restores_the_target(digital_pair):
    x, y = digital_pair
    xa, ya, info = align_pair(x, -0.5 * _delayed(y, 64.3), SR, target="t.wav")
    assert info.polarity == -1 and info.latency_samples == pytest.approx(64.3, abs=0.1)
    assert info.trimmed_start == 0 and info.trimmed_end == 64 + EDGE_GUARD  # the target's late end
    assert xa.shape == ya.shape == (x.size - info.trimmed_end,)
    np.testing.assert_array_equal(xa, x[:xa.size])  # the input's samples are never changed
    truth = -0.5 * y[:xa.size] * -1                 # polarity undone, level kept
    err = np.sum((ya - truth)[SR // 10:] ** 2) / np.sum(truth[SR // 10:] ** 2)
    assert err < 1e-5, err


def test_stereo_and_unequal_lengths(digital_pair):
    x, y = digital_pair
    xs = np.stack([x, 0.7 * x[::-1]])
    ys = np.stack([y, 0.7 * y[::-1]])
    late = np.concatenate([np.zeros((2, 100)), ys], axis=1)     # a recording that starts 100 samples late
    xa, ya, info = align_pair(xs.astype(np.float32), late.astype(np.float32), SR)
    assert info.latency_samples == pytest.approx(100.0, abs=0.05) and info.polarity == 1
    assert xa.dtype == ya.dtype == np.float32 and xa.shape == ya.shape == xs.shape  # whole-sample: no trim
    np.testing.assert_allclose(ya, ys.astype(np.float32), atol=1e-6)


def test_aligned_pair_is_left_untouched(digital_pair):
    x, y = digital_pair
    xa, ya, info = align_pair(x, y, SR)
    assert not info.corrected and abs(info.latency_samples) < 0.02
    assert xa is not None and np.array_equal(xa, x) and np.array_equal(ya, y)


def test_off_does_nothing(digital_pair):
    x, y = digital_pair
    xa, ya, info = align_pair(x, -y, SR, mode="off")
    assert xa is x and ya is not None and np.array_equal(ya, -y)
    assert info.mode == "off" and not info.corrected and math.isnan(info.strength)
    assert "off" in info.describe()


def test_unknown_mode_is_a_user_error(digital_pair):
    x, y = digital_pair
    with pytest.raises(UserError, match="align must be one of auto, off"):
        align_pair(x, y, SR, mode="on")


def test_unrelated_target_is_refused_naming_the_file(digital_pair):
    x, _ = digital_pair
    other = standin.render(synthesize(3.0, SR, seed=22), SR, 60, "compress")
    with pytest.raises(UserError, match=r"^take7\.wav: cannot align with the input: no clear correlation peak"):
        align_pair(x, other, SR, target="take7.wav")


def test_latency_beyond_the_window_is_refused(digital_pair):
    x, y = digital_pair
    with pytest.raises(UserError, match="t.wav: cannot align"):
        align_pair(x, _delayed(y, 0.2 * SR), SR, max_latency_s=0.1, target="t.wav")


def test_silent_target_is_refused(digital_pair):
    x, _ = digital_pair
    with pytest.raises(UserError, match="t.wav: cannot check latency and polarity: input or target is silent"):
        align_pair(x, np.zeros_like(x), SR, target="t.wav")


def test_info_is_a_plain_record(digital_pair):
    x, y = digital_pair
    *_, info = align_pair(x, -_delayed(y, 64.0), SR)
    record = yaml.safe_load(yaml.safe_dump(info.to_dict()))
    assert record["polarity"] == -1 and record["corrected"] is True and record["mode"] == "auto"
    assert record["latency_samples"] == pytest.approx(64.0, abs=0.05)
    assert record["latency_ms"] == pytest.approx(64.0 / SR * 1000, abs=0.01)
    assert "+64.00 samples" in info.describe() and "inverted" in info.describe()


def _fit(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fit_frames(frame_pair(x, y, SR, 12.0, 1.0, "t.wav"))


@pytest.mark.slow
def test_held_out_pair_late_and_inverted_fits_like_the_aligned_one():
    """A stand-in pair the fit never saw, 64 samples late and inverted: aligned, it fits
    within 1.2x of the aligned pair's ESR; unaligned, the fit collapses and is refused."""
    x = synthesize(3.0, SR, seed=11)
    y = standin.render(x, SR, 60, "compress")
    late = np.zeros_like(y)
    late[64:] = -y[:-64]
    reference = _fit(x, y)
    xa, ya, info = align_pair(x, late, SR, target="late.wav")
    assert info.latency_samples == pytest.approx(64.0, abs=0.1) and info.polarity == -1
    corrected = _fit(xa, ya)
    assert reference.esr < 0.5   # a real fit (the stand-in's transformers keep ff5 well above 0)
    assert corrected.esr <= 1.2 * reference.esr, (corrected.esr, reference.esr)
    check_fit_collapse(corrected.params, corrected.esr, "late.wav")   # passes
    collapsed = _fit(x, late)
    with pytest.raises(UserError, match="late.wav: the fit collapsed"):
        check_fit_collapse(collapsed.params, collapsed.esr, "late.wav")


def test_held_out_pair_with_a_fractional_latency_fits_like_the_aligned_one():
    """10.5 samples late: the fractional correction costs the fit under 1.2x in ESR
    (the reference is scored on the span the alignment keeps). The latency found is
    10.5 plus what the aligned pair reads: the stand-in's transformers delay it a little."""
    x = synthesize(3.0, SR, seed=12)
    y = standin.render(x, SR, 75, "limit").astype(np.float64)
    own = estimate_alignment(x, y, SR)[0]   # the transformers' own group delay (about 0.1 samples)
    xa, ya, info = align_pair(x, _delayed(y, 10.5), SR, target="late.wav")
    assert 0.0 < own < 0.15 and info.polarity == 1
    assert info.latency_samples == pytest.approx(10.5 + own, abs=0.05)
    reference = _fit(x[:xa.size], y[:xa.size])
    corrected = _fit(xa, ya)
    assert corrected.esr <= 1.2 * reference.esr, (corrected.esr, reference.esr)
