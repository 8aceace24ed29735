"""``test_comp.py`` (issue 15): one-pair fit folders, folders of files, the fitted-range
policy shared by chain folders and neural models, and neural models at other rates."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from scipy.signal import butter, sosfiltfilt

from support import SR, TRUE_PARAMS, _ckpt_text, program, write_wav
from dsp.knobs.knobmap import KnobMap
from dsp.models.ff5_streaming import render
from neural.checkpoint import build_model, model_spec, save_checkpoint

KMAP = KnobMap({"compress": {100: TRUE_PARAMS, 50: {**TRUE_PARAMS, "ratio": 2.0}}}, "ff5")


def _tiny_neural(path):
    """An untrained S6 hybrid over KMAP (fitted at compress PR 50..100), 44.1 kHz."""
    torch.manual_seed(0)
    spec = model_spec("s6", "hybrid_gain", "fitted", {"width": 8, "state": 3})
    save_checkpoint(path, {"model": spec, "variant": "hybrid", "sample_rate": SR, "param_map": KMAP.to_record(),
                           "state_dict": build_model(spec).state_dict(), "config": {}})
    return path


def test_one_pair_fit_folder(run_cli, tmp_path):
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "ckpt.yaml").write_text(_ckpt_text(TRUE_PARAMS))
    x = program(1.0, SR, seed=3)
    write_wav(tmp_path / "in.wav", x)
    res = run_cli(["test_comp.py", "fit", "in.wav", "out.wav"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    y, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    np.testing.assert_allclose(y, render(x, SR, TRUE_PARAMS)[0], rtol=1e-6, atol=1e-7)


def test_one_pair_fit_folder_takes_no_setting(run_cli, tmp_path, clean_failure):
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "ckpt.yaml").write_text(_ckpt_text(TRUE_PARAMS))
    write_wav(tmp_path / "in.wav", program(1.0, SR))
    res = run_cli(["test_comp.py", "fit", "in.wav", "o.wav", "--peak-reduction", "50", "--mode", "compress"],
                  cwd=tmp_path)
    clean_failure(res, "ckpt.yaml", "fixed parameters")


def test_folder_renders_every_file_keeping_formats(run_cli, tmp_path):
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "ckpt.yaml").write_text(_ckpt_text(TRUE_PARAMS))
    src = tmp_path / "songs"
    src.mkdir()
    x = program(1.0, SR, seed=5, channels=2)
    write_wav(src / "a.wav", x, subtype="PCM_16")
    sf.write(str(src / "b.flac"), x[0], 48000, subtype="PCM_24")
    (src / "notes.txt").write_text("not audio\n")
    res = run_cli(["test_comp.py", "fit", "songs", "out"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "wrote 2 files" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.flac"]
    a, b = sf.info(str(tmp_path / "out" / "a.wav")), sf.info(str(tmp_path / "out" / "b.flac"))
    assert (a.subtype, a.channels, a.samplerate) == ("PCM_16", 2, SR)
    assert (b.subtype, b.channels, b.samplerate) == ("PCM_24", 1, 48000)
    # the same as rendering that file alone
    one = run_cli(["test_comp.py", "fit", "songs/b.flac", "b_alone.flac"], cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert np.array_equal(sf.read(str(tmp_path / "b_alone.flac"))[0], sf.read(str(tmp_path / "out" / "b.flac"))[0])


def test_folder_mistakes(run_cli, tmp_path, clean_failure):
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "ckpt.yaml").write_text(_ckpt_text(TRUE_PARAMS))
    (tmp_path / "songs").mkdir()
    write_wav(tmp_path / "songs" / "a.wav", program(0.5, SR))
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile.wav").write_bytes(b"")
    clean_failure(run_cli(["test_comp.py", "fit", "songs", "songs"], cwd=tmp_path), "songs", "input folder")
    clean_failure(run_cli(["test_comp.py", "fit", "empty", "out"], cwd=tmp_path), "empty", "no audio files")
    clean_failure(run_cli(["test_comp.py", "fit", "songs", "afile.wav"], cwd=tmp_path), "afile.wav", "folder")
    clean_failure(run_cli(["test_comp.py", "fit", "songs", "no/such/out"], cwd=tmp_path), "does not exist")
    (tmp_path / "songs" / "junk.wav").write_bytes(b"RIFF junk")
    clean_failure(run_cli(["test_comp.py", "fit", "songs", "out2"], cwd=tmp_path), "junk.wav")
    assert not (tmp_path / "out2").exists()   # nothing written before every file was checked


def test_chain_folder_outside_the_fitted_levels(run_cli, tmp_path, clean_failure):
    (tmp_path / "chain").mkdir()
    KMAP.save(tmp_path / "chain" / "knobmap.yaml")
    write_wav(tmp_path / "in.wav", program(0.5, SR))
    res = run_cli(["test_comp.py", "chain", "in.wav", "o.wav", "--peak-reduction", "20", "--mode", "compress"],
                  cwd=tmp_path)
    clean_failure(res, "PR 20", "50..100", "nearest fitted setting is compress PR 50")
    assert not (tmp_path / "o.wav").exists()


def test_neural_48k_stereo_and_the_same_range_policy(run_cli, tmp_path, clean_failure):
    model = _tiny_neural(tmp_path / "m.pt")
    x = program(1.0, 48000, seed=9, channels=2)
    write_wav(tmp_path / "in48k_stereo.wav", x, 48000, subtype="PCM_24")
    res = run_cli(["test_comp.py", "--neural", model, "in48k_stereo.wav", "out.wav", "--peak-reduction", "65",
                   "--mode", "compress"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = sf.info(str(tmp_path / "out.wav"))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (48000, 2, x.shape[1], "PCM_24")
    y, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    # an untrained hybrid is the DSP model: compare below 18 kHz (the 44.1 kHz model cannot
    # pass what lies above its Nyquist) and away from the edges
    ref = render(x, 48000, KMAP.at({"mode": "compress", "peak_reduction": 65})).T
    audible = butter(8, 18000, fs=48000, output="sos")
    diff, ref = sosfiltfilt(audible, y - ref, axis=0)[4800:-4800], sosfiltfilt(audible, ref, axis=0)[4800:-4800]
    assert np.sum(diff ** 2) / np.sum(ref ** 2) < 1e-3
    bad = run_cli(["test_comp.py", "--neural", model, "in48k_stereo.wav", "o.wav", "--peak-reduction", "10",
                   "--mode", "compress"], cwd=tmp_path)
    clean_failure(bad, "PR 10", "nearest fitted setting is compress PR 50")
