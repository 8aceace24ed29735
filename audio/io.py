"""Reading and writing audio files through soundfile, with validation.

Any file libsndfile reads is accepted as input (wav, flac, aiff, ogg, mp3, ...);
outputs are wav, flac, aiff, ogg (Vorbis) or mp3, chosen by the extension. An
output keeps the input's encoding where the output format can hold it and
otherwise takes the format's default (:func:`output_subtype`).

Audio arrays are float32 with shape ``(channels, samples)``. Every problem a user
can cause (missing file, not audio, empty, non-finite samples, wrong rate or
channel count) raises :class:`common.errors.UserError` with a message that names
the file, so entry scripts can print it as one ``error:`` line.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from common.atomic import atomic_path
from common.errors import UserError, machine_failure, write_failure_cause

__all__ = ["AudioInfo", "audio_info", "read_audio", "read_pair", "write_audio", "check_pair", "process_file",
           "output_format", "output_subtype", "OUTPUT_EXTENSIONS"]


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    subtype: str
    format: str


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header of an audio file, without reading the samples."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: file not found")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, not an audio file")
    try:
        with _c_stderr_silenced():  # libsndfile's MPEG probe prints "Note: ..." lines on junk
            info = sf.info(str(p))
    except Exception as exc:  # soundfile raises several types for junk files
        reason = _reason(exc)
        if "does not exist" in reason:  # libsndfile's words for a format it cannot recognise
            reason = "unknown format or damaged file"
        raise UserError(f"{p}: not a readable audio file ({reason})") from None
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames),
                     str(info.subtype), str(info.format))


def read_audio(path: str | os.PathLike, *, sample_rate: int | None = None,
               channels: int | None = None, allow_silence: bool = False,
               start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 ``(channels, samples)`` and validate it.

    Args:
        sample_rate: required rate, or None to accept any.
        channels: required channel count, or None to accept any.
        allow_silence: accept an all-zero file (rejected by default).
        start, stop: sample range to read (for chunked processing).

    Returns:
        ``(audio, sample_rate)``.
    """
    p = Path(path)
    info = audio_info(p)
    if info.frames == 0:
        raise UserError(f"{p}: audio file is empty (0 samples)")
    if sample_rate is not None and info.sample_rate != sample_rate:
        raise UserError(f"{p}: sample rate is {info.sample_rate} Hz, expected {sample_rate} Hz")
    if channels is not None and info.channels != channels:
        raise UserError(f"{p}: has {info.channels} channels, expected {channels}")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True, start=start, stop=stop)
    except Exception as exc:
        raise UserError(f"{p}: could not read audio ({_reason(exc)})") from None
    data = np.ascontiguousarray(data.T)
    if data.shape[1] == 0:
        raise UserError(f"{p}: audio file is empty (0 samples)")
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise UserError(f"{p}: contains {bad} NaN or infinite samples")
    if not allow_silence and start == 0 and stop is None and not np.any(data):
        raise UserError(f"{p}: audio is silent (all samples are zero)")
    return data, int(sr)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                subtype: str | None = None) -> None:
    """Write ``(channels, samples)`` (or 1-D mono) audio atomically.

    The folder must exist; an existing file is replaced only once the new one is
    complete. ``subtype`` (e.g. ``"PCM_24"``) is used where the format (from the
    extension) can hold it, else the format's default (float for wav and aiff).
    """
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{p}: output folder {folder} does not exist")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, cannot write audio there")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None, :]
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{p}: refusing to write NaN or infinite samples")
    fmt = output_format(p)
    subtype = output_subtype(fmt, subtype)
    if _clips(subtype):
        audio = np.clip(audio, -1.0, 1.0)
    with atomic_path(p) as tmp, _writing(p):
        with _open_for_write(tmp, sample_rate, audio.shape[0], subtype, fmt, shown=p) as f:
            f.write(audio.T)


def check_pair(input_path: str | os.PathLike, target_path: str | os.PathLike,
               x: np.ndarray, sr_x: int, y: np.ndarray, sr_y: int) -> None:
    """Raise if an input/target pair cannot be compared sample by sample."""
    if sr_x != sr_y:
        raise UserError(f"{target_path}: sample rate {sr_y} Hz does not match "
                        f"{input_path} ({sr_x} Hz)")
    if x.shape[0] != y.shape[0]:
        raise UserError(f"{target_path}: has {y.shape[0]} channels but {input_path} "
                        f"has {x.shape[0]}")
    if x.shape[1] != y.shape[1]:
        raise UserError(f"{target_path}: length {y.shape[1]} samples does not match "
                        f"{input_path} ({x.shape[1]} samples)")


@contextlib.contextmanager
def _writing(final: Path):
    """Turn a failed libsndfile write (it says only "System error" for a full disk or a
    read-only folder) into a UserError that names ``final`` and, where the folder
    tells, the cause."""
    try:
        yield
    except (sf.SoundFileError, OSError) as exc:
        cause = machine_failure(exc) or write_failure_cause(final) or _reason(exc)
        raise UserError(f"{final}: cannot write audio ({cause})") from None


_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile command (sndfile.h)


def _open_for_write(path: Path, sample_rate: int, channels: int, subtype: str, fmt: str,
                    shown: Path | None = None) -> sf.SoundFile:
    """Open ``path`` for writing, without the PEAK chunk of float files: it holds the
    time of writing, so the same audio would give different bytes on every run.
    ``shown`` is the name a refusal (say, mp3 at 96 kHz) reports."""
    try:
        f = sf.SoundFile(str(path), "w", int(sample_rate), int(channels), subtype, format=fmt)
    except (sf.LibsndfileError, ValueError, TypeError, RuntimeError) as exc:
        raise UserError(f"{shown or path}: cannot write {fmt.lower()} ({subtype}) at {int(sample_rate)} Hz with "
                        f"{int(channels)} channel(s) ({_reason(exc)})") from None
    try:
        sf._snd.sf_command(f._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, sf._snd.SF_FALSE)
    except AttributeError:  # soundfile internals changed: files stay valid, only not byte-stable
        pass
    return f


OUTPUT_EXTENSIONS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF", ".ogg": "OGG",
                     ".mp3": "MP3"}
# What each output format may be written as, the default first. A format/subtype
# pair libsndfile's check_format accepts is not always writable (wav holding mp3
# frames reads, but does not write), hence an explicit list.
_WRITABLE = {
    "WAV": ("FLOAT", "PCM_16", "PCM_24", "PCM_32", "PCM_U8", "DOUBLE", "ULAW", "ALAW"),
    "AIFF": ("FLOAT", "PCM_16", "PCM_24", "PCM_32", "PCM_S8", "PCM_U8", "DOUBLE", "ULAW", "ALAW"),
    "FLAC": ("PCM_24", "PCM_16", "PCM_S8"),
    "OGG": ("VORBIS", "OPUS"),
    "MP3": ("MPEG_LAYER_III",),
}


def output_format(path: str | os.PathLike) -> str:
    """libsndfile's format name for an output file, from its extension."""
    p = Path(path)
    fmt = OUTPUT_EXTENSIONS.get(p.suffix.lower())
    if fmt is None:
        raise UserError(f"{p}: unsupported output extension (use {', '.join(OUTPUT_EXTENSIONS)})")
    return fmt


def output_subtype(fmt: str, wanted: str | None = None) -> str:
    """``wanted`` (say, the input's subtype) where ``fmt`` can be written with it, else
    ``fmt``'s default: FLOAT for wav and aiff, PCM_24 for flac, VORBIS for ogg,
    MPEG_LAYER_III for mp3."""
    writable = _WRITABLE[fmt]
    return wanted if wanted in writable else writable[0]


def _clips(subtype: str) -> bool:
    """True for encodings that cannot hold samples beyond [-1, 1] (integers, mp3)."""
    return subtype.startswith("PCM") or subtype in ("ULAW", "ALAW", "MPEG_LAYER_III")



@contextlib.contextmanager
def _c_stderr_silenced():
    """Send the C-level stderr (file descriptor 2) to /dev/null for the duration."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text.split(": ", 1)[-1] if text else type(exc).__name__


def read_pair(input_path: str | os.PathLike, target_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Read and cross-check an input/target pair: same rate, channels and length."""
    x, sr_x = read_audio(input_path)
    y, sr_y = read_audio(target_path)
    check_pair(input_path, target_path, x, sr_x, y, sr_y)
    return x, y, sr_x


def process_file(input_path: str | os.PathLike, output_path: str | os.PathLike, process_block,
                 block: int = 1 << 16) -> dict:
    """Stream ``input_path`` through ``process_block`` into ``output_path``.

    ``process_block((channels, n) float32) -> (channels, n)`` is called on
    consecutive blocks (it keeps its own state). The output keeps the input's
    rate, channel count, format and subtype; memory is bounded by the block. It
    is written to a temporary file and renamed into place only when complete.

    Returns:
        ``{"sample_rate", "channels", "frames", "clipped"}``; ``clipped`` counts
        samples limited to [-1, 1] for an output that cannot hold
        more (integer, mp3).
    """
    inp, out = Path(input_path), Path(output_path)
    info = audio_info(inp)
    if info.frames == 0:
        raise UserError(f"{inp}: audio file is empty (0 samples)")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{out}: output folder {folder} does not exist")
    if out.is_dir():
        raise UserError(f"{out}: is a folder, cannot write audio there")
    if out.resolve() == inp.resolve():
        raise UserError(f"{out}: output would overwrite the input file")
    fmt = output_format(out)
    subtype = output_subtype(fmt, info.subtype)  # mp3 -> wav: float, not wav with mp3 frames
    clips = _clips(subtype)
    clipped, silent = 0, True
    with atomic_path(out) as tmp:
        try:
            reader = sf.SoundFile(str(inp))
        except Exception as exc:
            raise UserError(f"{inp}: not a readable audio file ({_reason(exc)})") from None
        with reader:
            with _writing(out):
                writer = _open_for_write(tmp, info.sample_rate, info.channels, subtype, fmt, shown=out)
            try:
                for chunk in reader.blocks(blocksize=block, dtype="float32", always_2d=True):
                    x = np.ascontiguousarray(chunk.T)
                    if not np.all(np.isfinite(x)):
                        raise UserError(f"{inp}: contains NaN or infinite samples")
                    silent = silent and not np.any(x)
                    y = np.asarray(process_block(x), dtype=np.float32)
                    if not np.all(np.isfinite(y)):
                        raise UserError(f"{inp}: processing produced non-finite samples")
                    if clips:
                        over = np.abs(y) > 1.0
                        clipped += int(over.sum())
                        y = np.clip(y, -1.0, 1.0)
                    with _writing(out):
                        writer.write(y.T)
            finally:
                with _writing(out):
                    writer.close()  # flushes: a full disk may show only here
        if silent:
            raise UserError(f"{inp}: audio is silent (all samples are zero)")
    return {"sample_rate": info.sample_rate, "channels": info.channels, "frames": info.frames,
            "clipped": clipped}
