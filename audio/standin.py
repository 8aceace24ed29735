"""Stand-in optical leveller: a virtual-analog model that behaves like an LA-2A.

**This is a stand-in, not a measured model of the hardware.** Its structure follows
the published description of the Teletronix LA-2A (feedback sidechain driving an
electroluminescent panel that lights a CdS photocell shunting the audio; a tube
gain stage), and its constants are chosen so that its timing, static curve and
knob range land where the manufacturer's figures and published fits of the real
unit put them. It exists so the rest of the tool has a realistic paired corpus to
fit when no recordings of a real device are on disk.

Around the leveller core sit the parts of a recorded unit that are not the
compressor (each can be switched off for tests: ``transformers=False``, ``noise=False``)::

    x -> input transformer -> core (below) -> output transformer -> + noise floor -> output

Core, per sample ``n`` (state from sample ``n-1`` closes the feedback loop)::

    u[n]  = g[n-1] * x[n]                          photocell attenuator
    y[n]  = dcblock(tube(u[n]))                    gain stage (output)
    s[n]  = y[n]                  (compress)       sidechain tap
          = y[n] + K_LIM * x[n]   (limit)
    d[n]  = k_pr * shelf(s[n])                     EL-panel drive
    E[n]  = E + a_panel * (d^2 - E)                panel light (persistence TAU_PANEL)
    c*[n] = E^(P_EXP / 2) / (1 + E^(P_EXP / 2) / C_MAX)   cell conductance asked for
    G*[n] = 20 log10(1 + c*)                       target gain reduction, dB (soft knee)
    G_f  -> (1 - w) G*,  G_s -> w G*               two cell stages (one-pole, in dB)
    G    = G_f + G_s;   g[n] = 10^(-G / 20)

* **Attenuator / soft knee.** The cell (conductance ``c``, relative to the series
  resistor) and a series resistor form a divider: gain ``1 / (1 + c)``. The light
  grows as drive ``|d|^3`` and the cell conductance as light^0.8 (CdS gamma), so
  ``c = |d|^P_EXP`` with ``P_EXP = 2.4``. In the feedback loop this gives an
  asymptotic ratio of ``1 + P_EXP = 3.4 : 1`` in compress mode, with a soft knee
  about 10 dB wide (6 dB of reduction at threshold). The cell has a minimum
  resistance: the conductance saturates at C_MAX = 100 (at most about 40 dB of
  reduction).
* **Knob.** ``k_pr`` puts the threshold (the level of a sine at the detector
  where ``c* = 1``) at ``T(PR) = -13 - (PR - 40) * 22 / 60`` dBFS peak: -13 dB at
  PR 40, -35 dB at PR 100, linear in dB. Below PR 40 the sidechain gain is further
  multiplied by ``(PR / 40)^3`` (the pot's taper), so PR 0 switches it off.
* **Sidechain.** ``shelf`` is a first-order high shelf, 0 dB at low frequency,
  zero at SHELF_F_ZERO = 1.5 kHz, pole at 3.77 kHz (+8 dB above): the panel gets
  brighter with frequency, so highs are reduced more than lows (+1.3 dB at
  1 kHz, +6.4 dB at 5 kHz). Limit mode adds ``K_LIM = 0.05`` (-26 dB) of the input to
  the sidechain; it matters once the output is reduced by about 15 dB or more,
  where it makes the curve much steeper (part feed-forward: about 3:1 becomes
  7:1 and more; at PR 100 a 1 kHz tone at -20 -> 0 dBFS comes out at
  -33.4 -> -30.9 dBFS in limit against -32.2 -> -25.3 dBFS in compress).
* **Cell dynamics.** Each stage follows its target with an attack time constant
  TAU_ATTACK = 10 ms when the target is above it, and its own release when below:
  the fast stage with TAU_FAST = 40 ms (about 40-70 ms to 50 % recovery), the slow
  stage with ``TAU_SLOW0 * (1 + MEM_GAIN * M)`` = 0.4 s .. 4 s. The slow stage holds
  the fraction ``w = W0 + W_MEM * M`` = 0.2 .. 0.4 of the reduction.
* **Memory.** ``M`` in [0, 1] charges towards ``min(1, G* / MEM_REF_DB)`` with
  TAU_MEM_CHARGE = 1.5 s while the panel is lit, and discharges with
  TAU_MEM_DECAY = 8 s: after a long or strong reduction the second release stage
  is slower and larger (the cell "remembers").
* **Tube stage.** A single-ended triode-like curve ``tube(u) = (1 - exp(-a u)) / a``
  with a = TUBE_CURVE = 0.16: unity small-signal gain, asymmetric, so mostly second
  harmonic (second about ``a A / 4`` of the fundamental at peak ``A``, third about
  ``a^2 A^2 / 24``): THD of a 1 kHz tone about 1 % at -12 dBFS and 2 % at -6 dBFS,
  within the 0.9-4.2 % measured on LA-2As at 6 dB of reduction (assumption: where a
  real unit sits in that range depends on its tubes and operating level).
  ``dcblock`` is a first-order high-pass at DC_BLOCK_HZ = 3 Hz (the output coupling)
  that removes the offset the asymmetry creates.
* **Transformers** (assumptions; a real unit's specifics vary with its transformers and
  the load of the interface that recorded it). Input: first-order high-pass at
  INPUT_HP_HZ = 20 Hz (-3 dB; about -1.6 dB and 34 degrees of phase lead at 30 Hz) and
  a one-pole top-end low-pass with its analog corner at INPUT_LP_HZ = 16 kHz. Output:
  high-pass at OUTPUT_HP_HZ = 12 Hz and low-pass at OUTPUT_LP_HZ = 24 kHz. See
  :func:`transformer_sections` for the discretisation.
* **Noise floor.** White hiss at HISS_DBFS = -84 dBFS RMS plus mains hum, HUM_HZ = 60 Hz
  at HUM_DBFS = -100 dBFS RMS with its third harmonic 6 dB lower, added at the output.
  Seeded: by default from a hash of the input audio, the knob and the mode, so
  corpus generation stays deterministic while every take gets its own noise.
* **What the extra stages cost a gain-only model**: ``docs/experiments.md`` ("The
  stand-in's floor for gain-only models").

All time constants are in seconds, so any sample rate works; one-pole coefficients
are ``1 - exp(-1 / (tau * sample_rate))``. Multichannel input is processed with
linked detection (the panel is driven by the mean of the channels' squared
drives). The model is deterministic (the noise is seeded).
"""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

import numpy as np
import scipy.signal
from numba import njit

from common.errors import UserError, run_main

__all__ = ["MODES", "render", "render_with_gain", "threshold_db", "noise_floor",
           "transformer_sections",
           "probe_tone_burst", "tone", "main"]

MODES = ("compress", "limit")

P_EXP = 2.4
K_LIM = 0.05
C_MAX = 100.0
TAU_PANEL = 0.002
TAU_ATTACK = 0.010
TAU_FAST = 0.040
TAU_SLOW0 = 0.4
MEM_GAIN = 9.0
W0 = 0.2
W_MEM = 0.2
MEM_REF_DB = 10.0
TAU_MEM_CHARGE = 1.5
TAU_MEM_DECAY = 8.0
SHELF_F_ZERO = 1500.0
SHELF_GAIN_DB = 8.0
TUBE_CURVE = 0.16
INPUT_HP_HZ = 20.0
INPUT_LP_HZ = 16000.0
OUTPUT_HP_HZ = 12.0
OUTPUT_LP_HZ = 24000.0
HISS_DBFS = -84.0
HUM_DBFS = -100.0
HUM_HZ = 60.0
DC_BLOCK_HZ = 3.0
THRESHOLD_PR40_DB = -13.0
THRESHOLD_PR100_DB = -35.0


def threshold_db(peak_reduction: float) -> float:
    """Threshold (peak dBFS of a low-frequency sine at the detector) for PR >= 40.

    Below PR 40 the same line is continued and the pot taper is applied on top.
    """
    slope = (THRESHOLD_PR100_DB - THRESHOLD_PR40_DB) / 60.0
    return THRESHOLD_PR40_DB + (peak_reduction - 40.0) * slope


def _sidechain_gain(peak_reduction: float) -> float:
    # c* = 1 when the smoothed d^2 (= k^2 A^2 / 2 for a sine of peak A) reaches 1.
    gain = math.sqrt(2.0) / 10.0 ** (threshold_db(peak_reduction) / 20.0)
    if peak_reduction < 40.0:
        gain *= (peak_reduction / 40.0) ** 3
    return gain


def _shelf_coefficients(sample_rate: float) -> tuple[float, float, float]:
    """First-order high shelf (bilinear, pre-warped): returns ``(b0, b1, a1)``."""
    fz = min(SHELF_F_ZERO, 0.2 * sample_rate)
    fp = min(fz * 10.0 ** (SHELF_GAIN_DB / 20.0), 0.45 * sample_rate)
    wz = math.tan(math.pi * fz / sample_rate)
    wp = math.tan(math.pi * fp / sample_rate)
    # H(s) = (1 + s/wz) / (1 + s/wp), s = (1 - z^-1) / (1 + z^-1)
    b0, b1 = 1.0 + 1.0 / wz, 1.0 - 1.0 / wz
    a0, a1 = 1.0 + 1.0 / wp, 1.0 - 1.0 / wp
    return b0 / a0, b1 / a0, a1 / a0


def _one_pole(tau: float, sample_rate: float) -> float:
    return 1.0 - math.exp(-1.0 / (tau * sample_rate))


@njit(cache=True, fastmath=False)
def _kernel(x, k_pr, k_lim, shelf_b0, shelf_b1, shelf_a1, a_panel, a_att, a_fast,
            slow_rel_min, mem_gain, a_mem_up, a_mem_down, w0, w_mem, mem_ref_db,
            half_p, inv_c_max, tube_a, dc_r, y, gain_db):  # pragma: no cover - numba
    n_ch, n = x.shape
    sh_x = np.zeros(n_ch)
    sh_y = np.zeros(n_ch)
    dc_x = np.zeros(n_ch)
    dc_y = np.zeros(n_ch)
    light = 0.0
    g_fast = 0.0
    g_slow = 0.0
    mem = 0.0
    gain = 1.0
    db_per_ln = 20.0 / math.log(10.0)
    for i in range(n):
        drive = 0.0
        for c in range(n_ch):
            xi = x[c, i]
            u = gain * xi
            t = -math.expm1(-tube_a * u) / tube_a  # triode-like: unity slope at 0
            out = t - dc_x[c] + dc_r * dc_y[c]
            dc_x[c] = t
            dc_y[c] = out
            y[c, i] = out
            s = out + k_lim * xi
            e = shelf_b0 * s + shelf_b1 * sh_x[c] - shelf_a1 * sh_y[c]
            sh_x[c] = s
            sh_y[c] = e
            d = k_pr * e
            drive += d * d
        drive /= n_ch
        light += a_panel * (drive - light)
        cond = light ** half_p if light > 0.0 else 0.0
        cond = cond / (1.0 + cond * inv_c_max)
        target = db_per_ln * math.log1p(cond)
        # memory of the cell: charges while lit, fades slowly
        m_target = target / mem_ref_db
        if m_target > 1.0:
            m_target = 1.0
        if m_target > mem:
            mem += a_mem_up * (m_target - mem)
        else:
            mem += a_mem_down * (m_target - mem)
        w = w0 + w_mem * mem
        t_fast = (1.0 - w) * target
        t_slow = w * target
        if t_fast > g_fast:
            g_fast += a_att * (t_fast - g_fast)
        else:
            g_fast += a_fast * (t_fast - g_fast)
        if t_slow > g_slow:
            g_slow += a_att * (t_slow - g_slow)
        else:
            a_slow = 1.0 - math.exp(-slow_rel_min / (1.0 + mem_gain * mem))
            g_slow += a_slow * (t_slow - g_slow)
        red = g_fast + g_slow
        gain_db[i] = -red
        gain = math.exp(-red / db_per_ln)


def _validate(x: np.ndarray, sample_rate: float, peak_reduction: float,
              mode: str) -> np.ndarray:
    if mode not in MODES:
        raise ValueError(f"mode must be 'compress' or 'limit', got {mode!r}")
    try:
        pr = float(peak_reduction)
    except (TypeError, ValueError):
        raise ValueError(f"peak reduction must be a number, got {peak_reduction!r}") from None
    if not 0.0 <= pr <= 100.0:
        raise ValueError(f"peak reduction must be between 0 and 100, got {peak_reduction}")
    try:
        sr = float(sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"sample rate must be a number, got {sample_rate!r}") from None
    if not (math.isfinite(sr) and sr > 0):
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    arr = np.asarray(x)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise ValueError(f"audio must be 1-D (samples,) or 2-D (channels, samples) and "
                         f"non-empty, got shape {arr.shape}")
    if arr.ndim == 2 and arr.shape[0] == 0:
        raise ValueError("audio has no channels")
    if not np.all(np.isfinite(arr)):
        raise ValueError("audio contains NaN or infinite samples")
    return arr


def render_with_gain(x: np.ndarray, sample_rate: int, peak_reduction: float, mode: str, *,
                     transformers: bool = True, noise: bool = True,
                     seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Process ``x`` through the stand-in and also return the gain it applied.

    Args:
        x: audio, float. **Shape:** ``(samples,)`` or ``(channels, samples)``
            (channels share one detector).
        sample_rate: Hz, > 0.
        peak_reduction: the knob, 0..100.
        mode: ``"compress"`` or ``"limit"``.
        transformers: apply the input and output transformer responses.
        noise: add the noise floor (hiss and hum).
        seed: seed of the noise; None derives one from the audio, the knob and the
            mode (same call, same bytes; different files get different noise).

    Returns:
        ``(y, gain_db)``: ``y`` float32 with the shape of ``x``; ``gain_db`` float32
        **shape** ``(samples,)``, the photocell gain in dB (<= 0) applied to each
        sample (after the input transformer, before the tube stage).
    """
    arr = _validate(x, sample_rate, peak_reduction, mode)
    sr = float(sample_rate)
    x2 = np.ascontiguousarray(np.atleast_2d(arr), dtype=np.float64)
    if transformers:
        x2 = np.ascontiguousarray(_transformer(x2, sr, INPUT_HP_HZ, INPUT_LP_HZ))
    y = np.empty_like(x2)
    gain_db = np.empty(x2.shape[1])
    b0, b1, a1 = _shelf_coefficients(sr)
    _kernel(x2, _sidechain_gain(float(peak_reduction)), K_LIM if mode == "limit" else 0.0,
            b0, b1, a1, _one_pole(TAU_PANEL, sr), _one_pole(TAU_ATTACK, sr),
            _one_pole(TAU_FAST, sr), 1.0 / (TAU_SLOW0 * sr), MEM_GAIN,
            _one_pole(TAU_MEM_CHARGE, sr), _one_pole(TAU_MEM_DECAY, sr), W0, W_MEM,
            MEM_REF_DB, P_EXP / 2.0, 1.0 / C_MAX, TUBE_CURVE,
            math.exp(-2.0 * math.pi * DC_BLOCK_HZ / sr), y, gain_db)
    if transformers:
        y = _transformer(y, sr, OUTPUT_HP_HZ, OUTPUT_LP_HZ)
    if noise:
        if seed is None:
            seed = _noise_seed(arr, peak_reduction, mode)
        y = y + noise_floor(y.shape, sr, seed)
    y = y.astype(np.float32)
    return (y[0] if arr.ndim == 1 else y), gain_db.astype(np.float32)


def render(x: np.ndarray, sample_rate: int, peak_reduction: float, mode: str, *,
           transformers: bool = True, noise: bool = True, seed: int | None = None) -> np.ndarray:
    """Process ``x`` through the stand-in optical leveller.

    Args:
        x: audio. **Shape:** ``(samples,)`` or ``(channels, samples)``.
        sample_rate: Hz, > 0.
        peak_reduction: the knob, 0..100.
        mode: ``"compress"`` or ``"limit"``.
        transformers, noise, seed: see :func:`render_with_gain`.

    Returns:
        float32, same shape as ``x``.
    """
    return render_with_gain(x, sample_rate, peak_reduction, mode, transformers=transformers,
                            noise=noise, seed=seed)[0]


def transformer_sections(sample_rate: float, highpass_hz: float,
                         lowpass_hz: float | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(b, a)`` of a transformer's first-order high-pass and top-end low-pass.

    The high-pass is bilinear, pre-warped at its corner (kept below 0.45 x the
    sample rate). The low-pass is a one-pole from the analog corner by the matched-z
    transform, ``(1 - p) / (1 - p z^-1)`` with ``p = exp(-2 pi fc / sr)``: no forced
    zero at Nyquist, so a corner near or above the band still rolls off gently.
    """
    cap = 0.45 * sample_rate
    sections = [scipy.signal.butter(1, min(highpass_hz, cap), "highpass", fs=sample_rate)]
    if lowpass_hz is not None:
        pole = math.exp(-2.0 * math.pi * lowpass_hz / sample_rate)
        sections.append((np.array([1.0 - pole]), np.array([1.0, -pole])))
    return sections


def _transformer(x: np.ndarray, sample_rate: float, highpass_hz: float, lowpass_hz: float) -> np.ndarray:
    for b, a in transformer_sections(sample_rate, highpass_hz, lowpass_hz):
        x = scipy.signal.lfilter(b, a, x, axis=-1)
    return x


def _noise_seed(x: np.ndarray, peak_reduction: float, mode: str) -> int:
    digest = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    digest.update(f"{float(peak_reduction)!r}/{mode}".encode())
    return int.from_bytes(digest.digest()[:8], "little")


def noise_floor(shape: tuple[int, ...], sample_rate: float, seed: int,
                hiss_dbfs: float = HISS_DBFS, hum_dbfs: float = HUM_DBFS) -> np.ndarray:
    """The output's noise floor: white hiss plus mains hum (fundamental and 3rd harmonic).

    Args:
        shape: ``(channels, samples)``.
        hiss_dbfs: RMS of the hiss, dB re full scale.
        hum_dbfs: RMS of the hum fundamental (the 3rd harmonic is 6 dB below it).

    Returns:
        float64 array of ``shape``, seeded (same seed, same noise).
    """
    rng = np.random.default_rng(seed)
    hiss = rng.standard_normal(shape) * 10.0 ** (hiss_dbfs / 20.0)
    t = np.arange(shape[-1]) / sample_rate
    phase = rng.uniform(0.0, 2.0 * np.pi, 2)
    amp = math.sqrt(2.0) * 10.0 ** (hum_dbfs / 20.0)
    hum = amp * (np.sin(2 * np.pi * HUM_HZ * t + phase[0]) + 0.5 * np.sin(2 * np.pi * 3 * HUM_HZ * t + phase[1]))
    return hiss + hum


# ----------------------------------------------------------------------------
# probes (used by tests and plots; everything is measured from the rendered gain)
# ----------------------------------------------------------------------------
def tone(freq: float, level_db: float, duration_s: float, sample_rate: int = 44100,
         phase: float = 0.0) -> np.ndarray:
    """A sine of peak ``level_db`` dBFS. **Shape:** ``(round(duration_s * sr),)``."""
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    return (10.0 ** (level_db / 20.0) * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def _first_crossing(frac: np.ndarray, level: float, dt: float) -> float:
    idx = np.flatnonzero(frac >= level)
    return float(idx[0] * dt) if idx.size else math.inf


def probe_tone_burst(peak_reduction: float, mode: str = "compress", *,
                     burst_s: float = 1.0, burst_db: float = -6.0, quiet_db: float = -40.0,
                     freq: float = 1000.0, pre_s: float = 0.5, post_s: float = 15.0,
                     sample_rate: int = 44100) -> dict:
    """Time a tone burst: a quiet tone, a loud burst, then the quiet tone again.

    Gain reduction (dB) is read from :func:`render_with_gain`. Attack: time from
    the burst onset until the reduction first reaches 90 % of its value at the end
    of the burst. Recovery: time from the end of the burst until the reduction has
    fallen by 50 % / 90 % of the way from its end-of-burst value to the quiet
    tone's own steady reduction (measured by rendering the quiet tone alone).

    Returns:
        dict with ``reduction_db`` (at the end of the burst), ``attack_ms``,
        ``release50_ms``, ``release90_ms`` (``inf`` if not reached).
    """
    sr = sample_rate
    n_pre, n_burst, n_post = (int(round(v * sr)) for v in (pre_s, burst_s, post_s))
    n = n_pre + n_burst + n_post
    quiet = tone(freq, quiet_db, n / sr, sr)
    loud = tone(freq, burst_db, n / sr, sr)
    x = quiet.copy()
    x[n_pre:n_pre + n_burst] = loud[n_pre:n_pre + n_burst]
    _, gain = render_with_gain(x, sr, peak_reduction, mode)
    _, gain_quiet = render_with_gain(quiet, sr, peak_reduction, mode)
    red = -gain.astype(np.float64)
    floor = float(-gain_quiet[-1])
    end = n_pre + n_burst
    peak = float(red[end - 1])
    dt = 1000.0 / sr
    attack = _first_crossing((red[n_pre:end] - floor) / max(peak - floor, 1e-9), 0.9, dt)
    recovered = (peak - red[end:]) / max(peak - floor, 1e-9)
    return {"reduction_db": peak, "attack_ms": attack,
            "release50_ms": _first_crossing(recovered, 0.5, dt),
            "release90_ms": _first_crossing(recovered, 0.9, dt)}


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a UserError (one line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m audio.standin",
                     description="Process a wav file through the stand-in optical "
                                 "leveller (an LA-2A-like virtual-analog model).")
    parser.add_argument("input", help="input audio file")
    parser.add_argument("output", help="output audio file (.wav, .flac, .aiff, .ogg, .mp3; "
                                           "keeps the input's sample format where it can)")
    parser.add_argument("--peak-reduction", type=float, required=True,
                        help="peak reduction knob, 0..100")
    parser.add_argument("--mode", default="compress",
                        help="compress or limit (default: compress)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from audio.io import audio_info, read_audio, write_audio

    args = _parse(argv)
    if args.mode not in MODES:
        raise UserError(f"--mode must be 'compress' or 'limit', got {args.mode!r}")
    if not (math.isfinite(args.peak_reduction) and 0.0 <= args.peak_reduction <= 100.0):
        raise UserError(f"--peak-reduction must be between 0 and 100, "
                        f"got {args.peak_reduction:g}")
    out_dir = Path(args.output).parent
    if not out_dir.is_dir():
        raise UserError(f"{args.output}: output folder {out_dir} does not exist")
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise UserError(f"{args.output}: output would overwrite the input file")
    info = audio_info(args.input)
    audio, sr = read_audio(args.input, allow_silence=True)
    y = render(audio, sr, args.peak_reduction, args.mode)
    write_audio(args.output, y, sr, subtype=info.subtype)   # the input's format, as test_comp.py
    print(f"wrote {args.output}: {audio.shape[1] / sr:.2f} s, {audio.shape[0]} channel(s), "
          f"peak reduction {args.peak_reduction:g}, {args.mode}")
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))
