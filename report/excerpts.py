"""Short excerpts of a take that show different behaviour of a leveller, chosen from its input.

:func:`choose_excerpts` looks at the input's level in 10 ms frames and picks, in this
order and without overlap:

- ``transient``: the most onsets, the sum of the level's rises (dB per 10 ms frame, frames
  above -40 dBFS): drums, plucks, speech; the attack is heard here;
- ``sustained``: loud throughout: the highest 20th percentile of the level over the window;
  steady gain reduction, and how much of it;
- ``release``: quiet after loud: the loudest part of the first 40 % of the window against
  the median level of the rest (which must stay above -50 dBFS, so there is something to
  hear the gain come back on); the release is heard here.

Windows start on a 0.25 s grid after the take's unscored warm-up. A take too short for a
whole window gives one excerpt: what follows the warm-up (or the whole take).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Excerpt", "KINDS", "choose_excerpts", "fit_excerpt"]

KINDS = {
    "transient": "transient-rich passage (attack)",
    "sustained": "sustained loud passage (steady gain reduction)",
    "release": "quiet after loud (release)",
    "whole": "the whole take after its warm-up",
}
_FRAME_S = 0.01
_GRID_S = 0.25
_AUDIBLE_DB = -40.0
_RELEASE_FLOOR_DB = -50.0


@dataclass(frozen=True)
class Excerpt:
    """Samples ``start:stop`` of a take, and why they were chosen (a key of :data:`KINDS`)."""
    kind: str
    start: int
    stop: int

    @property
    def label(self) -> str:
        return KINDS[self.kind]

    def seconds(self, sample_rate: int) -> float:
        return (self.stop - self.start) / sample_rate

    def span(self, sample_rate: int) -> str:
        """``"3.00-8.00 s"``: where it lies in the take."""
        return f"{self.start / sample_rate:.2f}-{self.stop / sample_rate:.2f} s"


def _levels_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(x)
    x = x.reshape(1, -1) if x.ndim != 2 else x
    hop = max(1, int(round(_FRAME_S * sample_rate)))
    n = x.shape[1] // hop
    ms = np.empty(n)
    rows = max(1, 2 ** 20 // hop)   # a chunk at a time: a long take is never copied whole in float64
    for a in range(0, n, rows):
        b = min(n, a + rows)
        mono = np.asarray(x[:, a * hop:b * hop], np.float64).mean(axis=0)
        ms[a:b] = (mono ** 2).reshape(b - a, hop).mean(axis=1)
    return 10.0 * np.log10(ms + 1e-12)


def _scores(level: np.ndarray, starts: np.ndarray, width: int) -> dict[str, np.ndarray]:
    rises = np.maximum(np.diff(level, prepend=level[:1]), 0.0) * (level > _AUDIBLE_DB)
    c = np.concatenate([[0.0], np.cumsum(rises)])
    transient = c[starts + width] - c[starts]
    sustained = np.array([np.percentile(level[s:s + width], 20) for s in starts])
    head = max(1, int(0.4 * width))
    release = np.empty(len(starts))
    for i, s in enumerate(starts):
        loud = np.percentile(level[s:s + head], 90)
        rest = np.median(level[s + head:s + width])
        release[i] = loud - rest if rest > _RELEASE_FLOOR_DB else -np.inf
    return {"transient": transient, "sustained": sustained, "release": release}


def choose_excerpts(x: np.ndarray, sample_rate: int, seconds: float = 5.0, count: int = 3,
                    skip_s: float = 1.0) -> list[Excerpt]:
    """Up to ``count`` non-overlapping excerpts of ``seconds`` from the input ``x`` (see the
    module doc), in the order transient, sustained, release, then sorted by time.

    Shape: ``x`` ``(samples,)`` or ``(channels, samples)``.
    """
    n = np.asarray(x).shape[-1]
    skip = min(int(skip_s * sample_rate), n)
    length = int(round(seconds * sample_rate))
    if n - skip < length:
        start = skip if n - skip >= sample_rate // 2 else 0   # at least half a second, else the whole take
        return [Excerpt("whole", start, n)]
    level = _levels_db(x, sample_rate)
    hop = max(1, int(round(_FRAME_S * sample_rate)))
    width = length // hop
    first = int(np.ceil(skip / hop))
    grid = max(1, int(round(_GRID_S / _FRAME_S)))
    starts = np.arange(first, len(level) - width + 1, grid)
    if len(starts) == 0:
        return [Excerpt("whole", skip, n)]
    scores = _scores(level, starts, width)
    chosen: list[Excerpt] = []
    taken = np.zeros(len(level), bool)
    for kind in ("transient", "sustained", "release")[:max(0, count)]:
        free = np.array([not taken[s:s + width].any() for s in starts])
        score = np.where(free, scores[kind], -np.inf)
        if not np.isfinite(score).any():
            continue
        i = int(np.argmax(score))
        s = int(starts[i])
        taken[s:s + width] = True
        chosen.append(Excerpt(kind, s * hop, s * hop + length))
    return sorted(chosen, key=lambda e: e.start)


def fit_excerpt(x: np.ndarray, sample_rate: int, seconds: float = 4.0, skip_s: float = 1.0) -> Excerpt:
    """One excerpt for a fit's report: the transient-rich passage (the most telling of a
    leveller's attack and release), or the whole take if it is short."""
    return choose_excerpts(x, sample_rate, seconds, 1, skip_s)[0]
