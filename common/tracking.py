"""Experiment tracking: what a fit or a training reports while it runs, whatever the backend.

The loops (``neural/training/loop.py``, the fit jobs) call a :class:`Tracker`; the default
one does nothing (the CSV logs are written anyway). ``logger=tensorboard`` gives the
TensorBoard one (:mod:`report.tensorboard`), which also draws the report's figures.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Tracker", "NULL_TRACKER"]


class Tracker:
    """No-op base: every method is safe to call; subclasses send the values somewhere."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Log ``tag -> value`` at ``step`` (non-numeric and empty values are skipped)."""

    def audio(self, tag: str, samples: np.ndarray, sample_rate: int, step: int = 0) -> None:
        """Log a mono clip ``samples`` (shape ``(T,)``, floats in [-1, 1])."""

    def image(self, tag: str, rgb: np.ndarray, step: int = 0) -> None:
        """Log a picture (shape ``(H, W, 3|4)``, floats in [0, 1] or uint8)."""

    def flush(self) -> None:
        """Write what is buffered."""

    def close(self) -> None:
        """Write what is buffered and release the files."""

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


NULL_TRACKER = Tracker()
