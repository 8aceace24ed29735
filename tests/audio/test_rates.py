"""A corpus at mixed sample rates is refused up front, naming the odd file."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audio.rates import check_rates
from common.errors import UserError


def _wav(path, rate):
    sf.write(path, np.full(64, 0.1, dtype=np.float32), rate)
    return path


def test_one_rate_is_returned(tmp_path):
    paths = [_wav(tmp_path / f"{i}.wav", 48000) for i in range(3)]
    assert check_rates(paths) == 48000
    assert check_rates(iter([str(paths[0])])) == 48000


def test_the_odd_file_is_named_with_both_rates(tmp_path):
    paths = [_wav(tmp_path / "a.wav", 48000), _wav(tmp_path / "b.wav", 44100),
             _wav(tmp_path / "c.wav", 44100), _wav(tmp_path / "d.wav", 44100)]
    with pytest.raises(UserError) as err:
        check_rates(paths)
    msg = str(err.value)
    assert msg.startswith(f"{paths[0]}: sample rate 48000 Hz, but 3 of the 4 files (such as {paths[1]}) are 44100 Hz")
    assert "\n" not in msg


def test_a_tie_keeps_the_first_files_rate(tmp_path):
    paths = [_wav(tmp_path / "a.wav", 44100), _wav(tmp_path / "b.wav", 96000)]
    with pytest.raises(UserError, match=r"b\.wav: sample rate 96000 Hz, but 1 of the 2 files .* are 44100 Hz"):
        check_rates(paths)


def test_unreadable_and_empty(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    with pytest.raises(UserError, match="junk.wav: not a readable audio file"):
        check_rates([_wav(tmp_path / "a.wav", 44100), tmp_path / "junk.wav"])
    with pytest.raises(ValueError):
        check_rates([])
