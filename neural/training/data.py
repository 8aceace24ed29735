"""Training data for the neural models: tracks with their DSP features, random segments.

A :class:`Track` is one (input, target) take of the corpus at one setting (a knob dict
of its :class:`audio.devices.Device`: the LA-2A's mode and peak reduction, or another
device's knobs), held in memory with the fitted DSP compressor's gain at that setting,
computed once over the whole file (so a segment cut from the middle carries the
compressor's true history). The ff5 DSP output is not stored: it is ``x * 10^(g_db / 20)``;
a gray-box fit's output is not a gain (filters, tube shaper), so it is stored beside
``g_db`` (which stays the compressor's gain, for the features).

Conditioning vectors and the DSP gain features come from :mod:`neural.conditioning`,
shared with inference.

:class:`SegmentSampler` draws batches of random segments (an unscored warm-up followed
by the scored part) from the training tracks; the draw for step ``k`` depends only on
``(seed, k)``, so a resumed run sees the same batches as an uninterrupted one.
:func:`validation_batch` holds the start of every validation pair.

Sample rate: a corpus trains at its own rate (one rate for every take, checked from the
headers before any work by :func:`audio.rates.check_rates`); each :class:`Track` carries
it, the DSP gain is computed at it, and seconds become samples at it
(:func:`tracks_rate`). :data:`DEFAULT_SAMPLE_RATE` is the rate of a checkpoint that does
not record one (every model before rates were recorded ran at 44.1 kHz).

Shape: every signal is 1-D float32 ``(T,)`` per track; batches are ``(B, T)`` tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from audio.devices import LA2A, Device
from audio.io import audio_info
from audio.pairs import read_aligned_pair
from common.errors import UserError
from dsp.knobs.parammap import ParamMap
from dsp.models.classes import ModelParams
from neural.conditioning import DEFAULT_SAMPLE_RATE, check_dsp_class, conditioning, dsp_features

__all__ = ["tracks_rate", "Track", "load_tracks", "HALF", "out_of_fold_features", "Batch", "SegmentSampler", "validation_batch"]

@dataclass
class Track:
    """One take at one setting, with the fitted DSP gain over the whole file.

    ``level`` is the hashable setting (its values in the device's knob order).
    """
    split: str
    setting: dict          # knob dict, e.g. {"mode": "compress", "peak_reduction": 65}
    id: int
    x: np.ndarray          # input, (T,) float32
    y: np.ndarray          # target, (T,) float32
    g_db: np.ndarray       # DSP gain incl. make-up, dB, (T,) float32
    params: dict           # the DSP parameters used
    cond: dict = field(default_factory=dict)   # conditioning name -> (C,) float32
    device: Device = LA2A
    dsp_out: np.ndarray | None = None   # the DSP output (T,) float32 when it is not x * gain (graybox, opto)
    sample_rate: int = DEFAULT_SAMPLE_RATE   # Hz, of x, y and the DSP gain

    @property
    def level(self) -> tuple:
        return self.device.key(self.setting)

    def y_dsp(self, sl: slice = slice(None)) -> np.ndarray:
        if self.dsp_out is not None:
            return self.dsp_out[sl]
        return self.x[sl] * np.power(10.0, self.g_db[sl] / 20.0, dtype=np.float32)


def load_tracks(takes: Sequence, param_map: ParamMap, splits: Iterable[str],
                keep: Callable[[dict], bool] = lambda setting: True,
                quiet: bool = False, desc: str = "tracks", max_samples: int | None = None,
                align: str = "auto", halves: tuple[ParamMap, ParamMap] | None = None) -> list[Track]:
    """Read the mono takes of ``splits`` at settings where ``keep(setting)``, at their own
    sample rate, with the DSP gain at their setting (``param_map.at``) computed at that
    rate and every conditioning of the device.

    ``takes``: items with ``split, id, input, target, setting`` (a SignalTrain
    :class:`audio.signaltrain.Pair` or a manifest row). ``max_samples`` reads only the
    start of every file (bounds the memory on long recordings such as SignalTrain's
    20-minute files). ``align``: ``"auto"`` corrects each target's latency and polarity
    against its input as the DSP fit does (:func:`audio.pairs.read_aligned_pair`), so a
    hybrid sees the pair its DSP parameters were fitted on; ``"off"`` reads it as is.
    ``halves``: the fits of the first and of the second half of every take (``data.fit_span``):
    the DSP features become out of fold (:func:`out_of_fold_features`); the parameters and
    the conditioning stay ``param_map``'s.

    Raises:
        UserError: a file that is not mono, a file at another rate than the first take
            read, a setting the map does not cover.
    """
    splits = tuple(splits)
    check_dsp_class(param_map.model_class.name, "the DSP fit")
    device = param_map.device
    chosen = [t for t in takes if t.split in splits and keep(t.setting)]
    tracks = []
    for t in tqdm(chosen, desc=desc, unit="pair", disable=quiet, leave=False):
        x, y, sr = _read_mono(t.input, t.target, max_samples, align)
        if tracks and sr != tracks[0].sample_rate:
            raise UserError(f"{t.input}: sample rate {sr} Hz, but {chosen[0].input} is "
                            f"{tracks[0].sample_rate} Hz; resample the corpus to one rate")
        params = param_map.at(t.setting)
        if halves is None:
            g_db, dsp_out = dsp_features(x[0], params, sr)
        else:
            whole = x.shape[1] if max_samples is None or x.shape[1] < max_samples else audio_info(t.input).frames
            g_db, dsp_out = out_of_fold_features(x[0], halves[0].at(t.setting), halves[1].at(t.setting),
                                                 int(round(HALF * whole)), sr)
        cond = {name: conditioning(name, params, t.setting, device) for name in device.conditionings}
        tracks.append(Track(t.split, dict(t.setting), t.id, x[0], y[0], g_db, params, cond, device, dsp_out, sr))
    return tracks


HALF = 0.5   # where a take is cut in two for out-of-fold features (the folds' data.fit_span)


def out_of_fold_features(x: np.ndarray, first: ModelParams, second: ModelParams, split: int,
                         sample_rate: int) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`neural.conditioning.dsp_features` of a take whose two halves were fitted apart:
    before ``split`` those of the fit of the second half, from it on those of the fit of the first.

    A fit's errors on its own fitting audio are smaller than, and not like, its errors on new
    material, which is what a hybrid meets on Test; so it learns from features of a fit that did
    not read the audio. Each fit renders the whole take (its state at the cut is the one it has
    there) and the two are joined at the cut.
    """
    g_second, y_second = dsp_features(x, second, sample_rate)
    g_first, y_first = dsp_features(x, first, sample_rate)
    g_db = np.concatenate([g_second[:split], g_first[split:]])
    y = None if y_second is None else np.concatenate([y_second[:split], y_first[split:]])
    return g_db, y


def tracks_rate(tracks: Sequence[Track]) -> int:
    """The one sample rate of ``tracks`` (Hz).

    Raises:
        UserError: when they mix rates (each set of tracks trains at one rate).
        ValueError: when ``tracks`` is empty.
    """
    if not tracks:
        raise ValueError("tracks_rate needs at least one track")
    rates = sorted({int(t.sample_rate) for t in tracks})
    if len(rates) > 1:
        raise UserError(f"the tracks mix sample rates ({', '.join(f'{r} Hz' for r in rates)}); "
                        "resample the corpus to one rate")
    return rates[0]


def _read_mono(input_path, target_path, max_samples: int | None, align: str = "auto"
               ) -> tuple[np.ndarray, np.ndarray, int]:
    x, y, sr_x, _ = read_aligned_pair(input_path, target_path, align, stop=max_samples)
    if x.shape[0] != 1:
        raise UserError(f"{target_path}: {x.shape[0]} channels; training expects mono pairs")
    return x, y, int(sr_x)


@dataclass
class Batch:
    """Segments of equal length: the first ``warmup`` samples are not scored."""
    x: torch.Tensor        # (B, T)
    y: torch.Tensor        # (B, T) target
    y_dsp: torch.Tensor    # (B, T)
    g_db: torch.Tensor     # (B, T)
    cond: torch.Tensor     # (B, C)
    warmup: int
    levels: list           # the setting (``Track.level``) of every row
    fresh: bool = True     # the rows start here (model from silence), not where the last batch ended

    def to(self, device) -> "Batch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.x), move(self.y), move(self.y_dsp), move(self.g_db), move(self.cond),
                     self.warmup, self.levels, self.fresh)


def _stack(tracks: Sequence[Track], starts: Sequence[int], length: int, warmup: int, cond_name: str,
           fresh: bool = True) -> Batch:
    rows = [(t, slice(s, s + length)) for t, s in zip(tracks, starts)]
    as_t = lambda arrays: torch.from_numpy(np.stack(arrays))  # noqa: E731
    return Batch(
        x=as_t([t.x[sl] for t, sl in rows]), y=as_t([t.y[sl] for t, sl in rows]),
        y_dsp=as_t([t.y_dsp(sl) for t, sl in rows]), g_db=as_t([t.g_db[sl] for t, sl in rows]),
        cond=as_t([t.cond[cond_name] for t, _ in rows]), warmup=warmup,
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
        conditioning: the name of the conditioning vector put in ``Batch.cond``.
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
        sr = tracks_rate(self.tracks)
        short = [t for t in self.tracks if len(t.x) < self.span]
        if short:
            raise UserError(f"{len(short[0].x) / sr:.2f} s of training audio is shorter than one episode "
                            f"({self.span / sr:.2f} s: warm-up + episode x segment); shorten "
                            "train.warmup_s, train.segment_s or train.episode")
        self.seed, self.conditioning, self.floor = int(seed), conditioning, float(floor)

    @property
    def levels(self) -> set:
        """Every setting (``Track.level``) a batch can contain."""
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
    Seconds are counted at the tracks' own rate.
    """
    if not tracks:
        raise UserError("no validation material")
    sr = tracks_rate(tracks)
    length = min(int(round(seconds * sr)), min(len(t.x) for t in tracks))
    warmup = int(round(warmup_s * sr))
    if length <= warmup:
        raise UserError(f"validation audio of {length / sr:.2f} s is not longer than the "
                        f"{warmup_s:g} s validation warm-up")
    return _stack(tracks, [0] * len(tracks), length, warmup, conditioning)
