"""One sample rate per corpus, checked from the file headers before any long work."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

from audio.io import audio_info
from common.errors import UserError

__all__ = ["check_rates"]


def check_rates(paths: Iterable[str | os.PathLike]) -> int:
    """The one sample rate of ``paths``, read from their headers (no samples are read).

    The rate most files share is taken as the corpus's (the first file's on a tie),
    so the error names a file that is actually out of line.

    Returns:
        The rate in Hz.

    Raises:
        UserError: naming the first file at another rate, its rate and the corpus's;
            or an unreadable file (from :func:`audio.io.audio_info`).
        ValueError: when ``paths`` is empty.
    """
    rates = [(p, audio_info(p).sample_rate) for p in paths]
    if not rates:
        raise ValueError("check_rates needs at least one file")
    counts = Counter(rate for _, rate in rates)
    first_rate = rates[0][1]
    common = max(counts, key=lambda r: (counts[r], r == first_rate))
    example = next(p for p, r in rates if r == common)
    for path, rate in rates:
        if rate != common:
            others = counts[common]
            raise UserError(f"{path}: sample rate {rate} Hz, but {others} of the {len(rates)} files "
                            f"(such as {example}) are {common} Hz; resample the corpus to one rate")
    return common
