"""TensorBoard logging (``logger=tensorboard``): scalars, audio examples and the report's figures.

:func:`open_tracker` turns the ``logger`` setting into a :class:`common.tracking.Tracker`;
the helpers below log what the jobs know at their end: target against model audio at a
few settings (:func:`log_audio_pairs`), the knob map (:func:`log_knob_map`) and the
ESR-vs-setting picture (:func:`log_esr_vs_setting`), drawn by :mod:`report.plots`.
Open with ``tensorboard --logdir DIR``.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from common.errors import UserError
from common.tracking import NULL_TRACKER, Tracker

__all__ = ["LOGGERS", "TensorBoardTracker", "open_tracker", "log_audio_pairs", "log_figure", "log_knob_map",
           "log_esr_vs_setting", "TB_DIR"]

LOGGERS = ("csv", "tensorboard")
TB_DIR = "tensorboard"   # the event files' folder inside a run's or a fit's output folder


class TensorBoardTracker(Tracker):
    """A :class:`Tracker` writing TensorBoard event files into ``log_dir``."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:   # tensorboard is in requirements.txt; a partial install lacks it
            raise UserError("logger=tensorboard needs the tensorboard package (pip install -r requirements.txt)") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            if isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), int(step))

    def audio(self, tag: str, samples: np.ndarray, sample_rate: int, step: int = 0) -> None:
        clip = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
        self.writer.add_audio(tag, clip[None, :], int(step), sample_rate=int(sample_rate))

    def image(self, tag: str, rgb: np.ndarray, step: int = 0) -> None:
        self.writer.add_image(tag, np.asarray(rgb), int(step), dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tracker(name: str, out_dir: Path) -> Tracker:
    """The tracker of the ``logger`` setting: ``csv`` (the CSV logs only) or ``tensorboard``
    (event files in ``out_dir/tensorboard`` as well)."""
    name = str(name)
    if name not in LOGGERS:
        raise UserError(f"logger must be one of {', '.join(LOGGERS)}, got {name!r}")
    return NULL_TRACKER if name == "csv" else TensorBoardTracker(Path(out_dir) / TB_DIR)


def log_figure(tracker: Tracker, tag: str, draw: Callable[[Path], None], step: int = 0) -> None:
    """Log the picture ``draw(path)`` saves as a PNG (the report's plotting functions)."""
    if tracker is NULL_TRACKER:
        return
    import matplotlib.image as mpimg
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        tracker.image(tag, mpimg.imread(path), step)


def log_audio_pairs(tracker: Tracker, examples: list[tuple[str, np.ndarray, np.ndarray]], sample_rate: int,
                    step: int = 0, seconds: float = 5.0) -> None:
    """Target against model: ``(label, target, model_output)`` clips, the first ``seconds`` of each.

    Shape: target and output ``(T,)``.
    """
    n = int(seconds * sample_rate)
    for label, target, output in examples:
        tracker.audio(f"audio/{label}/target", target[:n], sample_rate, step)
        tracker.audio(f"audio/{label}/model", output[:n], sample_rate, step)


def log_knob_map(tracker: Tracker, param_map, step: int = 0) -> None:
    """The knob-map figure of an LA-2A knob map (parameters against peak reduction)."""
    from dsp.knobs.knobmap import KnobMap
    if isinstance(param_map, KnobMap):
        from report.plots import plot_knobmap
        log_figure(tracker, "figures/knob_map", lambda p: plot_knobmap(param_map, p), step)


def log_esr_vs_setting(tracker: Tracker, rows: list[dict], unseen=(), step: int = 0,
                       tag: str = "figures/esr_vs_setting") -> None:
    """The ESR-vs-peak-reduction figure of rows with ``mode, peak_reduction, model, kind, esr``."""
    if rows:
        from report.plots import plot_esr_vs_pr
        log_figure(tracker, tag, lambda p: plot_esr_vs_pr(rows, p, set(unseen)), step)
