"""Audio I/O: round trips in every supported format, validation errors that name the
file, atomic writes, and block processing that keeps the file's format."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.io import audio_info, check_pair, output_subtype, process_file, read_audio, read_pair, write_audio
from common.errors import UserError

SR = 44100


def _signal(channels: int, n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.9, 0.9, (channels, n)).astype(np.float32)


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext,subtype,atol", [
    (".wav", "FLOAT", 0.0), (".wav", "PCM_16", 1 / 32768), (".wav", "PCM_24", 1 / 2 ** 23),
    (".flac", "PCM_16", 1 / 32768), (".flac", "PCM_24", 1 / 2 ** 23),
    (".aiff", "PCM_16", 1 / 32768), (".aif", "FLOAT", 0.0),
])
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip(tmp_path, ext, subtype, atol, channels):
    x = _signal(channels)
    path = tmp_path / f"a{ext}"
    write_audio(path, x, SR, subtype=subtype)
    y, sr = read_audio(path)
    assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=atol, rtol=0)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.subtype) == (SR, channels, x.shape[1], subtype)


def test_mono_1d_is_written_as_one_channel(tmp_path):
    x = _signal(1)[0]
    write_audio(tmp_path / "m.wav", x, 22050)
    y, sr = read_audio(tmp_path / "m.wav", sample_rate=22050, channels=1)
    assert sr == 22050 and y.shape == (1, x.size)
    np.testing.assert_array_equal(y[0], x)


def test_read_range(tmp_path):
    x = _signal(2)
    write_audio(tmp_path / "s.wav", x, SR)
    y, _ = read_audio(tmp_path / "s.wav", start=100, stop=400)
    np.testing.assert_array_equal(y, x[:, 100:400])


def test_read_pair(tmp_path):
    x, y = _signal(2, seed=1), _signal(2, seed=2)
    write_audio(tmp_path / "x.wav", x, SR)
    write_audio(tmp_path / "y.flac", y, SR, subtype="PCM_24")
    a, b, sr = read_pair(tmp_path / "x.wav", tmp_path / "y.flac")
    assert sr == SR and a.shape == b.shape == (2, 3000)


# --------------------------------------------------------------------------------------
# validation: every error names the file
# --------------------------------------------------------------------------------------
def _write_raw(path: Path, data: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), np.atleast_2d(data).T, sr, subtype=subtype)
    return path


def _bad_files(tmp: Path) -> dict:
    noise = _signal(1)[0]
    nan = noise.copy()
    nan[10] = np.nan
    inf = noise.copy()
    inf[-1] = -np.inf
    (tmp / "folder.wav").mkdir()
    (tmp / "text.wav").write_text("this is not audio\n")
    (tmp / "junk.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp / "zero_bytes.wav").write_bytes(b"")
    return {
        "missing": (tmp / "missing.wav", "not found"),
        "folder": (tmp / "folder.wav", "folder"),
        "text": (tmp / "text.wav", "not a readable audio file"),
        "junk": (tmp / "junk.wav", "not a readable audio file"),
        "zero bytes": (tmp / "zero_bytes.wav", "not a readable audio file"),
        "empty": (_write_raw(tmp / "empty.wav", np.zeros(0)), "empty"),
        "nan": (_write_raw(tmp / "nan.wav", nan), "NaN"),
        "inf": (_write_raw(tmp / "inf.wav", inf), "infinite"),
        "silent": (_write_raw(tmp / "silent.wav", np.zeros(500), subtype="PCM_16"), "silent"),
    }


@pytest.mark.parametrize("case", ["missing", "folder", "text", "junk", "zero bytes", "empty", "nan", "inf",
                                  "silent"])
def test_read_rejects_bad_file(tmp_path, case):
    path, words = _bad_files(tmp_path)[case]
    with pytest.raises(UserError) as err:
        read_audio(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_silence_allowed_on_request(tmp_path):
    path = _write_raw(tmp_path / "s.wav", np.zeros(100))
    y, _ = read_audio(path, allow_silence=True)
    assert not y.any()


def test_wrong_rate_and_channels_name_the_file(tmp_path):
    path = _write_raw(tmp_path / "a.wav", _signal(2), sr=48000)
    with pytest.raises(UserError, match=r"a\.wav: sample rate is 48000 Hz, expected 44100"):
        read_audio(path, sample_rate=44100)
    with pytest.raises(UserError, match=r"a\.wav: has 2 channels, expected 1"):
        read_audio(path, channels=1)


@pytest.mark.parametrize("change,words", [
    ({"sr_y": 48000}, "sample rate"), ({"y": np.zeros((2, 10))}, "channels"), ({"y": np.zeros((1, 9))}, "length"),
])
def test_check_pair_names_the_target(change, words):
    kw = {"x": np.zeros((1, 10)), "sr_x": SR, "y": np.zeros((1, 10)), "sr_y": SR, **change}
    with pytest.raises(UserError) as err:
        check_pair("in.wav", "target.wav", kw["x"], kw["sr_x"], kw["y"], kw["sr_y"])
    assert str(err.value).startswith("target.wav: ") and words in str(err.value) and "in.wav" in str(err.value)


# --------------------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------------------
def test_write_failure_leaves_old_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "out.wav"
    write_audio(path, _signal(1, seed=3), SR)
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    real_write = sf.SoundFile.write

    def half_write(self, data):  # write part of the file, then fail
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sf.SoundFile, "write", half_write)
    with pytest.raises(UserError, match=r"out.wav: cannot write audio \(no space left on device\)"):
        write_audio(path, _signal(1, seed=4), SR)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # no temporary file left


def test_write_refuses_bad_targets(tmp_path):
    x = _signal(1)
    with pytest.raises(UserError, match="missing.*does not exist"):
        write_audio(tmp_path / "missing" / "o.wav", x, SR)
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(UserError, match="d.wav: is a folder"):
        write_audio(tmp_path / "d.wav", x, SR)
    with pytest.raises(UserError, match="o.txt: unsupported output extension"):
        write_audio(tmp_path / "o.txt", x, SR)
    bad = x.copy()
    bad[0, 5] = np.nan
    with pytest.raises(UserError, match="o.wav: refusing to write NaN"):
        write_audio(tmp_path / "o.wav", bad, SR)
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "o.txt").exists()


def test_same_audio_same_bytes(tmp_path):
    """No timestamp in the file (libsndfile's PEAK chunk of float files holds one)."""
    x = _signal(2)
    write_audio(tmp_path / "a.wav", x, SR)
    write_audio(tmp_path / "b.wav", x, SR)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    process_file(tmp_path / "a.wav", tmp_path / "c.wav", lambda b: b * 0.5)
    process_file(tmp_path / "a.wav", tmp_path / "d.wav", lambda b: b * 0.5)
    assert (tmp_path / "c.wav").read_bytes() == (tmp_path / "d.wav").read_bytes()
    assert b"PEAK" not in (tmp_path / "a.wav").read_bytes()


def test_written_files_get_ordinary_permissions(tmp_path):
    """An atomically written file is readable like any other file the user creates."""
    umask = os.umask(0o022)
    os.umask(umask)
    write_audio(tmp_path / "o.wav", _signal(1), SR)
    assert (tmp_path / "o.wav").stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------------------
# process_file: streaming in blocks, keeping the format
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,subtype,channels", [
    ("a.wav", "PCM_16", 2), ("a.wav", "FLOAT", 1), ("a.flac", "PCM_24", 2), ("a.aiff", "PCM_16", 1),
])
def test_process_file_keeps_format_and_works_in_blocks(tmp_path, name, subtype, channels):
    x = _signal(channels, n=4500) * 0.5
    src = tmp_path / name
    write_audio(src, x, 48000, subtype=subtype)
    x_read, _ = read_audio(src)
    seen = []

    def halve(block):
        seen.append(block.shape)
        return block * 0.5

    out = tmp_path / f"out{src.suffix}"
    stats = process_file(src, out, halve, block=1000)
    assert seen == [(channels, 1000)] * 4 + [(channels, 500)]
    assert stats == {"sample_rate": 48000, "channels": channels, "frames": 4500, "clipped": 0}
    info = audio_info(out)
    assert (info.sample_rate, info.channels, info.frames, info.subtype) == (48000, channels, 4500, subtype)
    assert info.format == audio_info(src).format
    y, _ = read_audio(out)
    atol = 0 if subtype == "FLOAT" else 2.0 ** -14
    np.testing.assert_allclose(y, x_read * 0.5, atol=atol, rtol=0)


def test_process_file_counts_clipping_in_integer_files(tmp_path):
    src = tmp_path / "a.wav"
    write_audio(src, np.array([[0.1, 0.6, -0.7, 0.2]]), SR, subtype="PCM_16")
    stats = process_file(src, tmp_path / "b.wav", lambda b: b * 2.0)
    assert stats["clipped"] == 2
    y, _ = read_audio(tmp_path / "b.wav")
    assert np.max(np.abs(y)) <= 1.0


def test_process_file_float_output_from_float_input_to_flac(tmp_path):
    """A float wav rendered to .flac (which has no float subtype) still works."""
    src = tmp_path / "a.wav"
    write_audio(src, _signal(1) * 0.5, SR)
    process_file(src, tmp_path / "b.flac", lambda b: b)
    y, _ = read_audio(tmp_path / "b.flac")
    np.testing.assert_allclose(y, read_audio(src)[0], atol=2.0 ** -22)


def test_process_file_failure_midway_leaves_old_output(tmp_path):
    x = _signal(1, n=5000)
    x[0, 4000] = np.nan
    src = _write_raw(tmp_path / "in.wav", x[0])
    out = tmp_path / "out.wav"
    out.write_bytes(b"previous result")
    with pytest.raises(UserError, match=r"in\.wav: contains NaN"):
        process_file(src, out, lambda b: b, block=1000)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]


def test_process_file_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "in.wav"
    write_audio(src, _signal(1), SR)
    before = src.read_bytes()
    with pytest.raises(UserError, match="overwrite the input"):
        process_file(src, tmp_path / "." / "in.wav", lambda b: b)
    assert src.read_bytes() == before


def test_process_file_rejects_silent_input(tmp_path):
    src = _write_raw(tmp_path / "in.wav", np.zeros(3000))
    with pytest.raises(UserError, match=r"in\.wav: audio is silent"):
        process_file(src, tmp_path / "out.wav", lambda b: b, block=1000)
    assert not (tmp_path / "out.wav").exists()


# --------------------------------------------------------------------------------------
# any readable input to any output format
# --------------------------------------------------------------------------------------
def _can_write(fmt: str, subtype: str) -> bool:
    if fmt not in sf.available_formats():
        return False
    try:
        with sf.SoundFile(os.devnull, "w", SR, 1, subtype, format=fmt):
            return True
    except Exception:
        return False


_INPUTS = {  # name: (libsndfile format, subtype), files written by soundfile itself
    "in.wav": ("WAV", "PCM_16"), "in.flac": ("FLAC", "PCM_24"), "in.ogg": ("OGG", "VORBIS"),
    "in.mp3": ("MP3", "MPEG_LAYER_III"), "in.aiff": ("AIFF", "FLOAT"),
}
# what each output gets: the input's subtype where the format can be written with it
_EXPECTED = {  # (output, input subtype): output subtype
    (".wav", "PCM_16"): "PCM_16", (".wav", "PCM_24"): "PCM_24", (".wav", "FLOAT"): "FLOAT",
    (".wav", "VORBIS"): "FLOAT", (".wav", "MPEG_LAYER_III"): "FLOAT",
    (".aiff", "PCM_16"): "PCM_16", (".aiff", "PCM_24"): "PCM_24", (".aiff", "FLOAT"): "FLOAT",
    (".aiff", "VORBIS"): "FLOAT", (".aiff", "MPEG_LAYER_III"): "FLOAT",
    (".flac", "PCM_16"): "PCM_16", (".flac", "PCM_24"): "PCM_24", (".flac", "FLOAT"): "PCM_24",
    (".flac", "VORBIS"): "PCM_24", (".flac", "MPEG_LAYER_III"): "PCM_24",
    **{(".ogg", sub): "VORBIS" for sub in ("PCM_16", "PCM_24", "FLOAT", "VORBIS", "MPEG_LAYER_III")},
    **{(".mp3", sub): "MPEG_LAYER_III" for sub in ("PCM_16", "PCM_24", "FLOAT", "VORBIS", "MPEG_LAYER_III")},
}


@pytest.mark.parametrize("out_ext", [".wav", ".flac", ".ogg", ".mp3", ".aiff"])
@pytest.mark.parametrize("in_name", sorted(_INPUTS))
def test_any_input_format_to_any_output_format(tmp_path, in_name, out_ext):
    in_fmt, in_sub = _INPUTS[in_name]
    out_fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3", ".aiff": "AIFF"}[out_ext]
    for fmt, sub in ((in_fmt, in_sub), (out_fmt, output_subtype(out_fmt))):
        if not _can_write(fmt, sub):
            pytest.skip(f"this libsndfile build cannot write {fmt} ({sub})")
    t = np.arange(SR // 2) / SR
    x = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    src = tmp_path / in_name
    sf.write(src, x.T, SR, subtype=in_sub, format=in_fmt)
    out = tmp_path / f"out{out_ext}"
    stats = process_file(src, out, lambda b: 0.5 * b)
    info = audio_info(out)
    assert info.format == out_fmt and info.channels == 2 and info.sample_rate == SR
    assert info.subtype == _EXPECTED[(out_ext, in_sub)]
    y, _ = read_audio(out)
    x_in, _ = read_audio(src)
    rms = lambda a: float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))  # noqa: E731
    # lossy codecs pad and delay the audio: compare levels, not samples
    assert rms(y) == pytest.approx(0.5 * rms(x_in), rel=0.05)
    assert stats["clipped"] == 0


@pytest.mark.parametrize("fmt,wanted,expected", [
    ("WAV", None, "FLOAT"), ("WAV", "MPEG_LAYER_III", "FLOAT"), ("WAV", "PCM_24", "PCM_24"),
    ("FLAC", "FLOAT", "PCM_24"), ("FLAC", "PCM_16", "PCM_16"), ("OGG", "PCM_16", "VORBIS"),
    ("MP3", "FLOAT", "MPEG_LAYER_III"), ("AIFF", "VORBIS", "FLOAT"),
])
def test_output_subtype_keeps_what_fits_else_the_default(fmt, wanted, expected):
    assert output_subtype(fmt, wanted) == expected


def test_write_audio_picks_a_valid_subtype(tmp_path):
    x = _signal(2) * 0.5
    write_audio(tmp_path / "a.flac", x, SR)                    # no float flac: 24-bit
    assert audio_info(tmp_path / "a.flac").subtype == "PCM_24"
    write_audio(tmp_path / "b.wav", x, SR, subtype="VORBIS")    # not a wav encoding: the default
    assert audio_info(tmp_path / "b.wav").subtype == "FLOAT"


def test_unwritable_rate_is_a_user_error(tmp_path):
    if not _can_write("MP3", "MPEG_LAYER_III"):
        pytest.skip("this libsndfile build cannot write mp3")
    with pytest.raises(UserError, match=r"o\.mp3: cannot write mp3 \(MPEG_LAYER_III\) at 96000 Hz"):
        write_audio(tmp_path / "o.mp3", _signal(1) * 0.5, 96000)
    assert list(tmp_path.iterdir()) == []
