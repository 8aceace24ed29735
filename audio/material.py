"""Deterministic, seeded program material for probing and fitting a compressor.

:func:`synthesize` strings together random segments, each at its own level, so a
compressor sees quiet and loud passages, sharp transients and long sustains, the
way the SignalTrain and CL 1B study inputs do. Mono, float32, peaks within
``[-1, 1]``; the same seed gives bit-identical output (a local
``np.random.default_rng(seed)``, no global state).

Segment kinds (``SEGMENT_KINDS``):

``drums``
    A drum loop (kick, snare, closed and open hi-hats with sharp attacks) on a
    16-step pattern at 80-160 BPM, with random velocities.
``bass``
    A bass line: band-limited sawtooth/square notes (E1-A2 roots) through a
    low-pass, with a plucked envelope.
``pluck``
    Plucked strings (Karplus-Strong: a noise burst through a damped delay loop),
    single notes and strums.
``chords``
    Chords and pads: detuned band-limited saws, low-passed, slow attack/release.
``speech``
    Speech-like bursts: a glottal pulse train with a pitch contour through
    vowel formant resonators, in syllables of 80-300 ms with fricative noise.
``noise``
    White-noise bursts with a linear or a logarithmic (linear in dB) amplitude
    ramp, rising or falling.
``sweep``
    Exponential sine sweeps 20 Hz-20 kHz lasting 0.2, 0.4, 0.8 or 1.6 s.
``silence``
    Digital silence, 0.1-1.5 s.

Every non-silent segment is scaled to a peak level between -40 and 0 dBFS; the
levels of each run of three such segments are drawn from three bands (-40..-27,
-27..-13, -13..0 dBFS) in random order, so any stretch of a few segments holds
both quiet and loud passages.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

__all__ = ["SEGMENT_KINDS", "synthesize", "drum_hit", "sine_sweep"]

SEGMENT_KINDS = ("drums", "bass", "pluck", "chords", "speech", "noise", "sweep", "silence")
_KIND_WEIGHTS = np.array([0.20, 0.12, 0.12, 0.12, 0.14, 0.10, 0.08, 0.12])
_LEVEL_BANDS = ((-40.0, -27.0), (-27.0, -13.0), (-13.0, 0.0))
_SWEEP_LENGTHS = (0.2, 0.4, 0.8, 1.6)
_EDGE_FADE_S = 0.002


# ----------------------------------------------------------------------------
# small building blocks
# ----------------------------------------------------------------------------
def _db(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def _normalise(x: np.ndarray, level_db: float) -> np.ndarray:
    """Scale ``x`` so that its peak is ``level_db`` dBFS (silence stays silent)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0.0:
        return x.astype(np.float64)
    return x * (_db(level_db) / peak)


def _fade_edges(x: np.ndarray, n_fade: int) -> np.ndarray:
    n = min(n_fade, x.size // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _adsr(n: int, sr: int, attack: float, decay: float, sustain: float,
          release: float) -> np.ndarray:
    """Piecewise envelope of ``n`` samples (times in seconds, release at the end)."""
    t = np.arange(n) / sr
    env = np.empty(n)
    a = max(attack, 1e-4)
    rel_start = max(n / sr - release, a)
    env[:] = sustain + (1.0 - sustain) * np.exp(-(t - a) / max(decay, 1e-4))
    env[t < a] = t[t < a] / a
    late = t >= rel_start
    env[late] *= np.clip(1.0 - (t[late] - rel_start) / max(release, 1e-4), 0.0, 1.0)
    return env


def _poly_blep(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Polynomial band-limited step correction for a phase in [0, 1)."""
    out = np.zeros_like(phase)
    lo = phase < dt
    t = phase[lo] / dt[lo]
    out[lo] = t + t - t * t - 1.0
    hi = phase > 1.0 - dt
    t = (phase[hi] - 1.0) / dt[hi]
    out[hi] = t * t + t + t + 1.0
    return out


def _saw(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Band-limited (polyBLEP) sawtooth in [-1, 1] with a per-sample frequency."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    dt = np.minimum(f / sr, 0.49)
    phase = np.mod(phase0 + np.concatenate(([0.0], np.cumsum(dt[:-1]))), 1.0)
    return 2.0 * phase - 1.0 - _poly_blep(phase, dt)


def _square(freq: float, n: int, sr: int) -> np.ndarray:
    """Band-limited square: the difference of two saws half a period apart."""
    return 0.5 * (_saw(freq, n, sr) - _saw(freq, n, sr, 0.5))


def _lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff, 0.45 * sr), "low", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _highpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff, 0.45 * sr), "high", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _bandpass(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, [lo, min(hi, 0.45 * sr)], "band", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


# ----------------------------------------------------------------------------
# drums
# ----------------------------------------------------------------------------
def _kick(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.45 * sr)
    t = np.arange(n) / sr
    f_hi, f_lo = rng.uniform(110, 180), rng.uniform(42, 60)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.02, 0.05))
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.12, 0.3))
    click = _highpass(rng.standard_normal(n), 1500.0, sr) * np.exp(-t / 0.003)
    return body + 0.5 * click


def _snare(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    f0 = rng.uniform(170, 240)
    tone = np.sin(2 * np.pi * f0 * t) * np.exp(-t / 0.04)
    rattle = _bandpass(rng.standard_normal(n), 1200.0, 9000.0, sr)
    rattle *= np.exp(-t / rng.uniform(0.06, 0.15))
    return 0.6 * tone + rattle / max(np.max(np.abs(rattle)), 1e-9)


def _hat(rng: np.random.Generator, sr: int, open_hat: bool) -> np.ndarray:
    n = int((0.4 if open_hat else 0.1) * sr)
    t = np.arange(n) / sr
    noise = _highpass(rng.standard_normal(n), 7000.0, sr, order=4)
    decay = rng.uniform(0.12, 0.3) if open_hat else rng.uniform(0.015, 0.04)
    return noise * np.exp(-t / decay)


def _mix_at(out: np.ndarray, hit: np.ndarray, start: int, gain: float) -> None:
    if start >= out.size:
        return
    m = min(hit.size, out.size - start)
    out[start:start + m] += gain * hit[:m]


def _seg_drums(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    step = int(round(60.0 / rng.uniform(80, 160) / 4.0 * sr))  # 16th note
    kick_pat = np.zeros(16, bool)
    kick_pat[[0, 8]] = True
    kick_pat[rng.choice([3, 6, 10, 11, 14], size=rng.integers(0, 3), replace=False)] = True
    snare_pat = np.zeros(16, bool)
    snare_pat[[4, 12]] = True
    if rng.random() < 0.4:
        snare_pat[rng.choice([7, 9, 15])] = True
    hat_every = int(rng.choice([1, 2]))
    kits = [_kick(rng, sr), _snare(rng, sr), _hat(rng, sr, False), _hat(rng, sr, True)]
    for i, start in enumerate(range(0, n, step)):
        s = i % 16
        if kick_pat[s]:
            _mix_at(out, kits[0], start, rng.uniform(0.7, 1.0))
        if snare_pat[s]:
            _mix_at(out, kits[1], start, rng.uniform(0.6, 1.0))
        if s % hat_every == 0:
            open_hat = s % 8 == 6 and rng.random() < 0.5
            _mix_at(out, kits[3 if open_hat else 2], start, rng.uniform(0.15, 0.45))
    return out


# ----------------------------------------------------------------------------
# tonal material
# ----------------------------------------------------------------------------
def _seg_bass(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    root = int(rng.integers(28, 46))  # E1 .. A2
    scale = np.array([0, 3, 5, 7, 10, 12])
    note_len = int(round(60.0 / rng.uniform(80, 150) / rng.choice([1, 2]) * sr))
    square = rng.random() < 0.35
    cutoff = rng.uniform(300, 1500)
    for start in range(0, n, note_len):
        if rng.random() < 0.15:
            continue
        length = min(int(note_len * rng.uniform(0.5, 1.0)), n - start)
        if length < 8:
            break
        f = _midi_hz(root + scale[rng.integers(scale.size)])
        wave = _square(f, length, sr) if square else _saw(f, length, sr)
        env = _adsr(length, sr, 0.004, rng.uniform(0.08, 0.3), rng.uniform(0.3, 0.7), 0.02)
        out[start:start + length] += wave * env * rng.uniform(0.6, 1.0)
    return _lowpass(out, cutoff, sr)


def _karplus_strong(rng: np.random.Generator, freq: float, n: int, sr: int,
                    decay: float, brightness: float) -> np.ndarray:
    """Karplus-Strong string as one IIR filter: y[k] = x[k] + g (y[k-L] + y[k-L-1]) / 2."""
    period = max(int(round(sr / freq)), 2)
    burst = rng.uniform(-1.0, 1.0, period)
    burst = _lowpass(burst, brightness, sr, order=1)
    excite = np.zeros(n)
    excite[:min(period, n)] = burst[:n]
    a = np.zeros(period + 2)
    a[0] = 1.0
    a[period] = a[period + 1] = -0.5 * decay
    return signal.lfilter([1.0], a, excite)


def _seg_pluck(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    root = int(rng.integers(40, 60))
    chord = root + np.array([0, 7, 12, 16, 19, 24])[: int(rng.integers(1, 7))]
    spacing = int(rng.uniform(0.15, 0.6) * sr)
    strum = int(rng.uniform(0.005, 0.03) * sr)
    for start in range(0, n, spacing):
        notes = chord if rng.random() < 0.4 else [chord[rng.integers(len(chord))]]
        for j, note in enumerate(notes):
            s = start + j * strum
            if s >= n:
                break
            length = min(int(1.5 * sr), n - s)
            string = _karplus_strong(rng, _midi_hz(note + rng.choice([0, 12])), length, sr,
                                     rng.uniform(0.990, 0.998), rng.uniform(2000, 9000))
            out[s:s + length] += string * rng.uniform(0.5, 1.0)
    return out


def _seg_chords(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    chord_len = int(rng.uniform(0.6, 2.0) * sr)
    attack, release = rng.uniform(0.01, 0.5), rng.uniform(0.05, 0.4)
    cutoff = rng.uniform(800, 4000)
    qualities = (np.array([0, 4, 7, 12]), np.array([0, 3, 7, 10]), np.array([0, 4, 7, 11]))
    for start in range(0, n, chord_len):
        length = min(chord_len, n - start)
        root = int(rng.integers(45, 62))
        notes = root + qualities[rng.integers(len(qualities))]
        tone = np.zeros(length)
        for note in notes:
            for detune in (-0.08, 0.0, 0.07):
                tone += _saw(_midi_hz(note + detune), length, sr, rng.random())
        env = _adsr(length, sr, attack, 0.3, 0.8, min(release, length / sr / 2))
        out[start:start + length] += tone * env
    return _lowpass(out, cutoff, sr)


_VOWELS = (  # (F1, F2, F3) Hz
    (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
    (570, 840, 2410), (660, 1720, 2410), (490, 1350, 1690), (440, 1020, 2240),
)


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / sr)
    a = [1.0, -2.0 * r * np.cos(2 * np.pi * freq / sr), r * r]
    return signal.lfilter([1.0 - r], a, x)


def _seg_speech(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    f0 = rng.uniform(90, 230)
    pos = 0
    while pos < n:
        length = min(int(rng.uniform(0.08, 0.3) * sr), n - pos)
        if length < 16:
            break
        if rng.random() < 0.25:  # fricative
            hiss = _bandpass(rng.standard_normal(length), 2500.0, 9000.0, sr)
            out[pos:pos + length] += 0.3 * hiss * np.hanning(length)
        else:
            t = np.arange(length) / sr
            pitch = f0 * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t
                                             + rng.uniform(0, 6.28)))
            pulses = _lowpass(_saw(pitch, length, sr), 3500.0, sr, order=1)
            formants = _VOWELS[rng.integers(len(_VOWELS))]
            voiced = sum(_resonator(pulses, f, 60.0 + 0.05 * f, sr) / (k + 1)
                         for k, f in enumerate(formants))
            out[pos:pos + length] += voiced * np.hanning(length) * rng.uniform(0.4, 1.0)
        pos += length
        if rng.random() < 0.3:  # pause between words
            pos += int(rng.uniform(0.03, 0.2) * sr)
    return out


def _seg_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    noise = rng.uniform(-1.0, 1.0, n)
    rising = rng.random() < 0.5
    if rng.random() < 0.5:  # linear amplitude ramp
        ramp = np.linspace(rng.uniform(0.0, 0.2), 1.0, n)
    else:  # logarithmic: linear in dB
        ramp = 10.0 ** (np.linspace(-rng.uniform(20, 40), 0.0, n) / 20.0)
    return noise * (ramp if rising else ramp[::-1])


def _sweep_samples(n: int, sr: int, f0: float, f1: float) -> np.ndarray:
    t = np.arange(n) / sr
    duration = n / sr
    k = np.log(f1 / f0)
    return np.sin(2 * np.pi * f0 * duration / k * (np.exp(t / duration * k) - 1.0))


def _seg_sweep(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    return _sweep_samples(n, sr, 20.0, min(20000.0, 0.45 * sr))


_SEGMENTS = {
    "drums": _seg_drums, "bass": _seg_bass, "pluck": _seg_pluck, "chords": _seg_chords,
    "speech": _seg_speech, "noise": _seg_noise, "sweep": _seg_sweep,
}


def _segment_length(rng: np.random.Generator, kind: str, sr: int) -> int:
    if kind == "sweep":
        return int(round(_SWEEP_LENGTHS[rng.integers(len(_SWEEP_LENGTHS))] * sr))
    if kind == "silence":
        return int(rng.uniform(0.1, 1.5) * sr)
    if kind == "noise":
        return int(rng.uniform(0.3, 3.0) * sr)
    return int(rng.uniform(1.0, 4.0) * sr)


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------
def synthesize(duration_s: float, sample_rate: int = 44100, seed: int = 0) -> np.ndarray:
    """Random program material of ``duration_s`` seconds.

    Args:
        duration_s: length in seconds (> 0).
        sample_rate: Hz (>= 8000).
        seed: the same seed gives bit-identical output.

    Returns:
        float32 array. **Shape:** ``(round(duration_s * sample_rate),)``; peaks within
        ``[-1, 1]``.
    """
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    sample_rate = _check_rate(sample_rate)
    n_total = int(round(duration_s * sample_rate))
    if n_total < 1:
        raise ValueError(f"duration_s={duration_s} is shorter than one sample")
    rng = np.random.default_rng(seed)
    out = np.zeros(n_total)
    fade = int(_EDGE_FADE_S * sample_rate)
    bands: list[tuple[float, float]] = []
    pos = 0
    while pos < n_total:
        kind = SEGMENT_KINDS[rng.choice(len(SEGMENT_KINDS), p=_KIND_WEIGHTS)]
        length = min(_segment_length(rng, kind, sample_rate), n_total - pos)
        if kind != "silence" and length > 0:
            if not bands:
                bands = [_LEVEL_BANDS[i] for i in rng.permutation(len(_LEVEL_BANDS))]
            lo, hi = bands.pop()
            seg = _SEGMENTS[kind](rng, length, sample_rate)
            seg = _normalise(_fade_edges(seg, fade), rng.uniform(lo, hi))
            out[pos:pos + length] = seg
        pos += length
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def drum_hit(sample_rate: int = 44100, level_db: float = -6.0, seed: int = 0) -> np.ndarray:
    """One layered kick + snare hit (0.5 s) with a sharp attack, peak at ``level_db``.

    Returns:
        float32. **Shape:** ``(round(0.5 * sample_rate),)``.
    """
    sample_rate = _check_rate(sample_rate)
    _check_level(level_db)
    rng = np.random.default_rng(seed)
    n = int(round(0.5 * sample_rate))
    hit = np.zeros(n)
    _mix_at(hit, _kick(rng, sample_rate), 0, 1.0)
    _mix_at(hit, _snare(rng, sample_rate), 0, 0.8)
    return _normalise(hit, level_db).astype(np.float32)


def sine_sweep(duration_s: float, sample_rate: int = 44100, level_db: float = -12.0,
               f0: float = 20.0, f1: float = 20000.0) -> np.ndarray:
    """Exponential sine sweep from ``f0`` to ``f1`` Hz with peak ``level_db`` dBFS.

    Returns:
        float32. **Shape:** ``(round(duration_s * sample_rate),)``.
    """
    sample_rate = _check_rate(sample_rate)
    _check_level(level_db)
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if not 0 < f0 < f1 < sample_rate / 2:
        raise ValueError(f"need 0 < f0 < f1 < sample_rate/2, got f0={f0}, f1={f1}, "
                         f"sample_rate={sample_rate}")
    n = int(round(duration_s * sample_rate))
    return (_db(level_db) * _sweep_samples(n, sample_rate, f0, f1)).astype(np.float32)


def _check_rate(sample_rate: int) -> int:
    if int(sample_rate) != sample_rate or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an integer >= 8000 Hz, got {sample_rate}")
    return int(sample_rate)


def _check_level(level_db: float) -> None:
    if not np.isfinite(level_db) or level_db > 0:
        raise ValueError(f"level_db must be finite and <= 0 dBFS, got {level_db}")
