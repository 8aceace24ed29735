"""Training data for the neural models: tracks with their DSP features, random segments.

A :class:`Track` is one (input, target) pair of the corpus at one setting (mode, peak
reduction), held in memory with the fitted DSP compressor's gain at that setting,
computed once over the whole file (so a segment cut from the middle carries the
compressor's true history). The DSP output is not stored: it is ``x * 10^(g_db / 20)``.

Conditioning vectors (what FiLM sees), one function each, shared by training and
inference so a checkpoint renders exactly as it was trained:

- :func:`fitted_conditioning` (hybrid): the fitted DSP parameters, normalised to about
  unit range: ``threshold / 40, ln(ratio), log10(attack ms), log10(release ms) - 2,
  make-up / 10`` and the switch (0 compress, 1 limit).
- :func:`knob_conditioning` (black box): ``PR / 100`` and the switch.
- ``fitted+knobs`` (hybrid, the default): both, the fitted parameters, the switch,
  then ``PR / 100``. The knob tells the network where it is between trained settings
  even where the fit at that setting is off (a fit per setting on different material
  wanders from setting to setting; the knob does not), as a manifest hybrid sees its knobs.

A device with arbitrary knobs (a manifest corpus, :mod:`audio.manifest`) has its own
two, of a size set by its number of knobs K (:data:`MANIFEST_CONDITIONINGS`):

- ``manifest_fitted`` (hybrid): the 5 normalised DSP parameters above (no switch)
  followed by the K knob values, size ``5 + K``;
- ``manifest_knobs`` (black box): the K knob values.

The knob values go in raw: the standardisation over the trained settings
(``fit_cond_norm``, on by default) brings them to unit scale. A manifest track's
setting is its knob dict (``Track.knobs``); its ``mode`` is ``"manifest"``.

:class:`SegmentSampler` draws batches of random segments (an unscored warm-up followed
by the scored part) from the training tracks; the draw for step ``k`` depends only on
``(seed, k)``, so a resumed run sees the same batches as an uninterrupted one.
:func:`validation_batch` holds the start of every validation pair.

Shape: every signal is 1-D float32 ``(T,)`` per track; batches are ``(B, T)`` tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from audio.io import check_pair, read_audio
from audio.signaltrain import Pair
from common.errors import UserError
from dsp.knobmap import KnobMap
from dsp.render import BlockCompressor

__all__ = [
    "SAMPLE_RATE", "MODE_INDEX", "FITTED_FEATURES", "KNOB_FEATURES", "CONDITIONINGS",
    "fitted_conditioning", "knob_conditioning", "dsp_gain_db", "Track", "load_tracks",
    "Batch", "SegmentSampler", "validation_batch", "MANIFEST_MODE", "MANIFEST_CONDITIONINGS",
    "manifest_conditioning", "conditioning_size", "load_manifest_tracks",
]

SAMPLE_RATE = 44100
MODE_INDEX = {"compress": 0.0, "limit": 1.0}
FITTED_FEATURES = ("threshold_db/40", "ln ratio", "log10 attack_ms", "log10 release_ms - 2",
                   "make_up_db/10", "mode")
KNOB_FEATURES = ("peak_reduction/100", "mode")


def _mode_value(mode: str) -> float:
    if mode not in MODE_INDEX:
        raise UserError(f"unknown mode {mode!r} (use compress or limit)")
    return MODE_INDEX[mode]


def _parameter_features(params: dict) -> list[float]:
    """The five physical DSP parameters, each brought to about unit range."""
    return [float(params["threshold_db"]) / 40.0, math.log(float(params["ratio"])),
            math.log10(float(params["attack_ms"])), math.log10(float(params["release_ms"])) - 2.0,
            float(params["make_up_db"]) / 10.0]


def fitted_conditioning(params: dict, mode: str) -> np.ndarray:
    """The hybrid models' conditioning vector from physical DSP parameters. Shape ``(6,)``."""
    return np.asarray(_parameter_features(params) + [_mode_value(mode)], dtype=np.float32)


def knob_conditioning(peak_reduction: float, mode: str) -> np.ndarray:
    """The black-box models' conditioning vector from the knobs. Shape ``(2,)``."""
    return np.asarray([float(peak_reduction) / 100.0, _mode_value(mode)], dtype=np.float32)


# name -> (size, function of (params, mode, peak_reduction))
CONDITIONINGS: dict[str, tuple[int, Callable[[dict, str, float], np.ndarray]]] = {
    "fitted": (len(FITTED_FEATURES), lambda params, mode, pr: fitted_conditioning(params, mode)),
    "knobs": (len(KNOB_FEATURES), lambda params, mode, pr: knob_conditioning(pr, mode)),
    "fitted+knobs": (len(FITTED_FEATURES) + 1, lambda params, mode, pr: np.concatenate(
        [fitted_conditioning(params, mode), knob_conditioning(pr, mode)[:1]])),
}


MANIFEST_MODE = "manifest"


def _manifest_fitted(params: dict, knobs: dict) -> np.ndarray:
    return np.asarray(_parameter_features(params) + [float(v) for v in knobs.values()], dtype=np.float32)


def _manifest_knobs(params: dict, knobs: dict) -> np.ndarray:
    return np.asarray(list(knobs.values()), dtype=np.float32)


# name -> (size as a function of the number of knobs, function of (params, knobs))
MANIFEST_CONDITIONINGS: dict[str, tuple[Callable[[int], int], Callable[[dict, dict], np.ndarray]]] = {
    "manifest_fitted": (lambda k: 5 + k, _manifest_fitted),
    "manifest_knobs": (lambda k: k, _manifest_knobs),
}


def manifest_conditioning(name: str, params: dict, knobs: dict) -> np.ndarray:
    """A manifest model's conditioning vector (knobs in their manifest order). Shape ``(C,)``."""
    return MANIFEST_CONDITIONINGS[name][1](params, knobs)


def conditioning_size(name: str, knobs: int | None = None) -> int:
    """Size of conditioning ``name`` (a manifest's needs its number of knobs)."""
    if name in CONDITIONINGS:
        return CONDITIONINGS[name][0]
    if name in MANIFEST_CONDITIONINGS:
        if knobs is None:
            raise ValueError(f"conditioning {name!r} needs the number of knobs")
        return MANIFEST_CONDITIONINGS[name][0](int(knobs))
    raise ValueError(f"unknown conditioning {name!r}; choose from "
                     f"{sorted(CONDITIONINGS) + sorted(MANIFEST_CONDITIONINGS)}")


def dsp_gain_db(comp: BlockCompressor, block: np.ndarray, make_up_db: float) -> np.ndarray:
    """The DSP compressor's gain in dB, make-up included, for one block (advances ``comp``).

    Shape: block ``(channels, n)`` or ``(n,)`` -> ``(n,)`` float32 (linked detection).
    """
    g = comp.gain(block)
    return (20.0 * np.log10(np.maximum(g, 1e-12)) + make_up_db).astype(np.float32)


@dataclass
class Track:
    """One pair at one setting, with the fitted DSP gain over the whole file.

    LA-2A: ``(mode, peak_reduction)``; manifest: ``knobs`` (mode ``"manifest"``,
    peak_reduction None). ``level`` is the hashable setting either way.
    """
    split: str
    mode: str
    peak_reduction: int
    id: int
    x: np.ndarray          # input, (T,) float32
    y: np.ndarray          # target, (T,) float32
    g_db: np.ndarray       # DSP gain incl. make-up, dB, (T,) float32
    params: dict           # the DSP parameters used
    cond: dict = field(default_factory=dict)   # conditioning name -> (C,) float32
    knobs: dict | None = None                  # a manifest row's knob values

    @property
    def level(self) -> tuple:
        if self.knobs is not None:
            return self.mode, tuple(self.knobs.values())
        return self.mode, self.peak_reduction

    def y_dsp(self, sl: slice = slice(None)) -> np.ndarray:
        return self.x[sl] * np.power(10.0, self.g_db[sl] / 20.0, dtype=np.float32)


def load_tracks(pairs: Sequence[Pair], knobmap: KnobMap, splits: Iterable[str],
                keep: Callable[[str, int], bool] = lambda mode, pr: True,
                quiet: bool = False, desc: str = "tracks", max_samples: int | None = None) -> list[Track]:
    """Read the mono 44.1 kHz pairs of ``splits`` at settings where ``keep(mode, pr)``.

    ``max_samples`` reads only the start of every file (bounds the memory on long
    recordings such as SignalTrain's 20-minute files).

    Raises:
        UserError: a file that is not mono 44.1 kHz, or a mode the knob map lacks.
    """
    splits = tuple(splits)
    chosen = [p for p in pairs if p.split in splits and keep(p.mode, p.peak_reduction)]
    tracks = []
    for p in tqdm(chosen, desc=desc, unit="pair", disable=quiet, leave=False):
        x, y = _read_mono(p.input, p.target, max_samples)
        params = knobmap.at(p.mode, p.peak_reduction)
        g_db = dsp_gain_db(BlockCompressor(params, SAMPLE_RATE), x, params["make_up_db"])
        cond = {name: fn(params, p.mode, p.peak_reduction) for name, (_, fn) in CONDITIONINGS.items()}
        tracks.append(Track(p.split, p.mode, p.peak_reduction, p.id, x[0], y[0], g_db, params, cond))
    return tracks


def _read_mono(input_path, target_path, max_samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    x, sr_x = read_audio(input_path, stop=max_samples)
    y, sr_y = read_audio(target_path, stop=max_samples)
    check_pair(input_path, target_path, x, sr_x, y, sr_y)
    if sr_x != SAMPLE_RATE:
        raise UserError(f"{target_path}: sample rate {sr_x} Hz; the neural models run at {SAMPLE_RATE} Hz")
    if x.shape[0] != 1:
        raise UserError(f"{target_path}: {x.shape[0]} channels; training expects mono pairs")
    return x, y


def load_manifest_tracks(rows, table, splits: Iterable[str], quiet: bool = False, desc: str = "tracks",
                         max_samples: int | None = None) -> list[Track]:
    """Read the mono 44.1 kHz manifest rows of ``splits``, with the DSP gain of their setting.

    ``table``: a :class:`dsp.knobtable.KnobTable` (the row's fit, or the nearest fitted
    setting's). Every track carries both manifest conditionings.

    Raises:
        UserError: a file that is not mono 44.1 kHz, a setting far outside the table.
    """
    splits = tuple(splits)
    chosen = [r for r in rows if r.split in splits]
    tracks = []
    for r in tqdm(chosen, desc=desc, unit="pair", disable=quiet, leave=False):
        x, y = _read_mono(r.input, r.target, max_samples)
        params = table.at(r.knobs)
        g_db = dsp_gain_db(BlockCompressor(params, SAMPLE_RATE), x, params["make_up_db"])
        cond = {name: fn(params, r.knobs) for name, (_, fn) in MANIFEST_CONDITIONINGS.items()}
        tracks.append(Track(r.split, MANIFEST_MODE, None, r.index, x[0], y[0], g_db, params, cond, dict(r.knobs)))
    return tracks


@dataclass
class Batch:
    """Segments of equal length: the first ``warmup`` samples are not scored."""
    x: torch.Tensor        # (B, T)
    y: torch.Tensor        # (B, T) target
    y_dsp: torch.Tensor    # (B, T)
    g_db: torch.Tensor     # (B, T)
    cond: torch.Tensor     # (B, C)
    warmup: int
    levels: list           # (mode, peak_reduction) of every row
    fresh: bool = True     # the rows start here (model from silence), not where the last batch ended

    def to(self, device) -> "Batch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.x), move(self.y), move(self.y_dsp), move(self.g_db), move(self.cond),
                     self.warmup, self.levels, self.fresh)


def _stack(tracks: Sequence[Track], starts: Sequence[int], length: int, warmup: int, conditioning: str,
           fresh: bool = True) -> Batch:
    rows = [(t, slice(s, s + length)) for t, s in zip(tracks, starts)]
    as_t = lambda arrays: torch.from_numpy(np.stack(arrays))  # noqa: E731
    return Batch(
        x=as_t([t.x[sl] for t, sl in rows]), y=as_t([t.y[sl] for t, sl in rows]),
        y_dsp=as_t([t.y_dsp(sl) for t, sl in rows]), g_db=as_t([t.g_db[sl] for t, sl in rows]),
        cond=as_t([t.cond[conditioning] for t, _ in rows]), warmup=warmup,
        levels=[t.level for t, _ in rows], fresh=fresh,
    )


def _loud_enough(track: Track, start: int, warmup: int, length: int, floor: float) -> bool:
    seg = track.y[start + warmup:start + length]
    return float(np.mean(seg * seg)) > floor


class SegmentSampler:
    """Training batches: ``batch_size`` streams of consecutive segments (truncated BPTT).

    Each stream runs ``episode`` consecutive segments of one track from a random start,
    then every stream jumps to a new random place (a new episode). The first segment of
    an episode starts with ``warmup`` unscored samples and the model starts from
    silence (``Batch.fresh``); the following segments continue where the previous one
    ended, and the training loop carries the model state over (detached), so they are
    scored in full and the model sees seconds of context at the cost of one segment.
    ``episode=1`` gives independent segments, each with its warm-up.

    Args:
        tracks: the training tracks (every row of every batch comes from one of them).
        warmup, scored: samples.
        batch_size: streams.
        seed: the batch of step ``k`` depends on ``(seed, k)`` only.
        conditioning: key of :data:`CONDITIONINGS` put in ``Batch.cond``.
        episode: segments per stream before it jumps.
        floor: mean-square target level below which an episode's start is redrawn (near
            silence says nothing about a compressor and inflates an ESR).
    """

    def __init__(self, tracks: Sequence[Track], warmup: int, scored: int, batch_size: int, seed: int,
                 conditioning: str, episode: int = 1, floor: float = 1e-6):
        if not tracks:
            raise UserError("no training material: every level is held out or missing")
        self.tracks = list(tracks)
        self.warmup, self.scored, self.batch_size = int(warmup), int(scored), int(batch_size)
        self.episode = int(episode)
        self.span = self.warmup + self.scored * self.episode  # samples one stream covers
        short = [t for t in self.tracks if len(t.x) < self.span]
        if short:
            raise UserError(f"{len(short[0].x) / SAMPLE_RATE:.2f} s of training audio is shorter than one episode "
                            f"({self.span / SAMPLE_RATE:.2f} s: warm-up + episode x segment); shorten "
                            "train.warmup_s, train.segment_s or train.episode")
        self.seed, self.conditioning, self.floor = int(seed), conditioning, float(floor)

    @property
    def levels(self) -> set:
        """Every (mode, peak_reduction) a batch can contain."""
        return {t.level for t in self.tracks}

    def _episode(self, index: int) -> tuple[list, list]:
        rng = np.random.default_rng([self.seed, int(index)])
        picks, starts = [], []
        for _ in range(self.batch_size):
            for attempt in range(20):  # the last draw is kept even if quiet
                t = self.tracks[int(rng.integers(len(self.tracks)))]
                s = int(rng.integers(0, len(t.x) - self.span + 1))
                if _loud_enough(t, s, self.warmup, self.span, self.floor):
                    break
            picks.append(t)
            starts.append(s)
        return picks, starts

    def batch(self, step: int) -> Batch:
        index, part = divmod(int(step), self.episode)
        picks, starts = self._episode(index)
        if part == 0:
            return _stack(picks, starts, self.warmup + self.scored, self.warmup, self.conditioning, fresh=True)
        offset = self.warmup + part * self.scored
        return _stack(picks, [s + offset for s in starts], self.scored, 0, self.conditioning, fresh=False)


def validation_batch(tracks: Sequence[Track], seconds: float, warmup_s: float, conditioning: str) -> Batch:
    """The start of every track, ``seconds`` long (all cut to the shortest), from silence.

    Scored like the test files, from their first sample (after ``warmup_s`` if set), so
    the slow, history-dependent part of the device's behaviour counts as it does there.
    """
    if not tracks:
        raise UserError("no validation material")
    length = min(int(round(seconds * SAMPLE_RATE)), min(len(t.x) for t in tracks))
    warmup = int(round(warmup_s * SAMPLE_RATE))
    if length <= warmup:
        raise UserError(f"validation audio of {length / SAMPLE_RATE:.2f} s is not longer than the "
                        f"{warmup_s:g} s validation warm-up")
    return _stack(tracks, [0] * len(tracks), length, warmup, conditioning)
