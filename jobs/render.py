"""The job of ``test_comp.py``: render files or a folder through a fit or a neural model.

What renders: any DSP fit (:func:`dsp.storage.open_fit.open_fit`: a one-pair fit, a chain
or joint fit at an LA-2A setting, a manifest fit at a knob setting), or a neural checkpoint
(at a setting). How (:func:`render_path`): one file, streamed in blocks
with bounded memory (a neural model at another sample rate than its own: read whole,
resampled in and out); or every audio file of a folder into another folder, same
names and formats, with a progress bar.

One out-of-range policy for every model with a knob
(:meth:`dsp.knobs.parammap.ParamMap.check_fitted`): a setting outside what was fitted is
an error naming the nearest fitted setting, never silently rendered with another
setting's parameters.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from audio.io import (OUTPUT_EXTENSIONS, audio_info, output_format, output_subtype, process_file, read_audio,
                      write_audio)
from common.errors import UserError
from dsp.storage.open_fit import FittedModel

__all__ = ["Source", "dsp_source", "neural_source", "render_path", "LONG_FILE_S"]

LONG_FILE_S = 30.0   # a single file longer than this gets a progress bar


@dataclass
class Source:
    """What renders: ``stream(sample_rate)`` gives a block processor, or None when the
    audio must be rendered whole with ``whole(x, sample_rate, progress)``."""
    label: str
    stream: Callable[[int], Callable | None]
    whole: Callable | None = None


def dsp_source(fit: FittedModel, setting: dict | None) -> Source:
    """A DSP fit (:func:`dsp.storage.open_fit.open_fit`) at ``setting`` as a :class:`Source`."""
    params = fit.at(setting)    # checks the setting: the one out-of-range policy
    where = f"{fit.device.label(setting)} from {fit.path}" if setting else str(fit.path)
    label = f"{fit.model_class.name} {where}: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items())
    return Source(label, lambda sr: fit.processor(sr, setting).process)


def neural_source(renderer, path: Path, setting: dict) -> Source:
    """A loaded neural model (:class:`neural.inference.NeuralRenderer`) at a setting, checked
    against what it was trained with."""
    renderer.device.check(setting)
    renderer.param_map.check_fitted(setting, str(path))
    label = (f"{path} ({renderer.name}, {renderer.num_parameters} parameters) at "
             f"{renderer.device.label(setting)}")

    def stream(sr: int):
        return renderer.block_processor(sr, setting) if sr == renderer.sample_rate else None

    def whole(x, sr, progress):
        return renderer.render_channels(x, sr, setting, progress=progress)

    return Source(label, stream, whole)


def render_path(source: Source, inp: Path, out: Path, block: int, quiet: bool = False) -> int:
    """Render a file, or every audio file of the folder ``inp`` into the folder ``out``."""
    if inp.is_dir():
        return _render_folder(source, inp, out, block, quiet)
    stats = _render_file(source, inp, out, block, show=not quiet)
    sr = stats["sample_rate"]
    print(f"wrote {out} ({stats['frames'] / sr:.2f} s, {stats['channels']} ch, {sr} Hz) with {source.label}")
    _warn_clipped(stats, out)
    return 0


def _render_file(source: Source, inp: Path, out: Path, block: int, show: bool) -> dict:
    info = audio_info(inp)
    bar = tqdm(total=info.frames, desc=inp.name, unit="sample", unit_scale=True, leave=False,
               disable=not show or info.frames < LONG_FILE_S * info.sample_rate)
    try:
        proc = source.stream(info.sample_rate)
        if proc is not None:
            def counted(x):
                bar.update(x.shape[1])
                return proc(x)
            return process_file(inp, out, counted, block)
        return _render_whole(source, inp, out, info, bar)
    finally:
        bar.close()


def _render_whole(source: Source, inp: Path, out: Path, info, bar) -> dict:
    """Read whole, render, write with the input's format (a neural model at another rate)."""
    if out.resolve() == inp.resolve():
        raise UserError(f"{out}: output would overwrite the input file")
    subtype = output_subtype(output_format(out), info.subtype)
    if info.frames == 0:
        raise UserError(f"{inp}: audio file is empty (0 samples)")
    x, sr = read_audio(inp)
    y = source.whole(x, sr, lambda done: bar.update(round(done * info.frames) - bar.n))
    if not np.all(np.isfinite(y)):
        raise UserError(f"{inp}: processing produced non-finite samples")
    clipped = 0 if subtype in ("FLOAT", "DOUBLE") else int((np.abs(y) > 1.0).sum())
    write_audio(out, y, sr, subtype=subtype)
    return {"sample_rate": sr, "channels": info.channels, "frames": info.frames, "clipped": clipped}


def _render_folder(source: Source, inp: Path, out: Path, block: int, quiet: bool) -> int:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: the input {inp} is a folder, so the output must be a folder too")
    if out.resolve() == inp.resolve():
        raise UserError(f"{out}: output folder is the input folder (the files would be overwritten)")
    if not out.parent.is_dir():
        raise UserError(f"{out}: output folder {out.parent} does not exist")
    files = sorted(p for p in inp.iterdir() if p.is_file() and p.suffix.lower() in OUTPUT_EXTENSIONS)
    if not files:
        raise UserError(f"{inp}: no audio files ({', '.join(OUTPUT_EXTENSIONS)}) in the folder")
    for f in files:   # every file readable before the first is written
        if audio_info(f).frames == 0:
            raise UserError(f"{f}: audio file is empty (0 samples)")
    out.mkdir(exist_ok=True)
    clipped = []
    for f in tqdm(files, desc="render", unit="file", disable=quiet):
        stats = _render_file(source, f, out / f.name, block, show=False)
        if stats["clipped"]:
            clipped.append(f"{f.name} ({stats['clipped']})")
    print(f"wrote {len(files)} files to {out} with {source.label}")
    if clipped:
        print(f"warning: samples clipped to full scale in {', '.join(clipped)}", file=sys.stderr)
    return 0


def _warn_clipped(stats: dict, out: Path) -> None:
    if stats["clipped"]:
        print(f"warning: {stats['clipped']} samples clipped to full scale in {out}", file=sys.stderr)
