"""Neutone export: runs only where neutone-sdk imports (its own environment, docs/NEUTONE.md).

    /tmp/neutone-venv/bin/python -m pytest tests/deploy/test_neutone.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("neutone_sdk", reason="neutone-sdk lives in its own environment (docs/NEUTONE.md)")

from neutone_sdk.utils import load_neutone_model  # noqa: E402

from deploy.verify import check_signal  # noqa: E402
from jobs.export import export_neutone  # noqa: E402
from audio.devices import la2a_setting  # noqa: E402
from dsp.knobs.knobmap import KnobMap
from dsp.models.ff5_streaming import StreamingCompressor

P = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
TABLE = {"compress": {100: P, 40: {**P, "threshold_db": -12.0, "ratio": 3.0}},
         "limit": {100: {**P, "ratio": 8.0}, 40: {**P, "threshold_db": -14.0}}}


def _stream(model, x, params, block: int = 512) -> np.ndarray:
    # the wrapper reuses its buffers: copy what comes out
    return np.concatenate([model(torch.tensor(x[:, i:i + block]), params).clone().numpy()
                           for i in range(0, x.shape[1], block)], 1)


def test_knobmap_neutone_model_passes_sdk_checks_and_matches(tmp_path):
    (tmp_path / "chain").mkdir()
    KnobMap(TABLE, "ff5").save(tmp_path / "chain" / "knobmap.yaml")
    res = export_neutone(tmp_path / "chain", tmp_path / "nm", submission=False)
    assert res.out == tmp_path / "nm" / "model.nm" and res.out.is_file()
    model, meta = load_neutone_model(str(res.out))
    assert [p["name"] for p in meta["neutone_parameters"].values()][:2] == ["peak_reduction", "mode"]
    model.set_daw_sample_rate_and_buffer_size(44100, 512)
    model.reset()
    x = check_signal(0.2, 44100, channels=2)[:, :512 * 16]
    params = torch.zeros(4, 512)
    params[0], params[1] = 0.65, 1.0   # PR 65, limit
    y = _stream(model, x, params)
    ref = StreamingCompressor(KnobMap(TABLE, "ff5").at(la2a_setting("limit", 65.0)), 44100).process(x)
    assert np.max(np.abs(y - ref)) < 1e-4


def test_graybox_knobmap_neutone_model_matches(tmp_path):
    """A gray-box knob map goes into the plug-in with its blocks (filters, tube) around the compressor."""
    from dsp.models.graybox_streaming import StreamingGraybox
    blocks = {"input_highpass_hz": 25.0, "input_shelf_hz": 9000.0, "input_shelf_db": -6.0, "tube_drive": 2.5,
              "tube_asymmetry": 0.3, "output_highpass_hz": 12.0}
    table = {m: {pr: {**p, **blocks, "tube_drive": 1.0 + pr / 50.0} for pr, p in lv.items()} for m, lv in TABLE.items()}
    (tmp_path / "chain").mkdir()
    KnobMap(table, "graybox").save(tmp_path / "chain" / "knobmap.yaml")
    res = export_neutone(tmp_path / "chain", tmp_path / "nm", submission=False)
    model, _ = load_neutone_model(str(res.out))
    model.set_daw_sample_rate_and_buffer_size(48000, 512)
    model.reset()
    x = check_signal(0.2, 48000, channels=2)[:, :512 * 16]
    params = torch.zeros(4, 512)
    params[0], params[1] = 0.55, 0.0   # PR 55, compress
    y = _stream(model, x, params)
    ref = StreamingGraybox(KnobMap(table, "graybox").at(la2a_setting("compress", 55.0)), 48000).process(x)
    assert np.max(np.abs(y - ref)) < 1e-4


@pytest.mark.slow   # the SDK's checks run the model at many buffer sizes: about 2 min each on a busy 2-core machine
@pytest.mark.parametrize("backbone", ["lru", "s6"])
def test_default_hybrid_with_audio_path_neutone_model_matches(tmp_path, backbone):
    """The default hybrids (LRU, S6; control rate, audio-rate path on) pass the SDK's checks and stream as the renderer."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_scripted_neural import AUDIO_PATH, write_checkpoint
    finally:
        sys.path.pop(0)
    from neural.inference import NeuralRenderer
    from deploy.verify import stream
    path = write_checkpoint(tmp_path / "best.pt", backbone, conditioning="fitted+knobs", extra={"frame": 32},
                            normalised=True, audio_path=AUDIO_PATH)
    res = export_neutone(path, tmp_path / "nm", submission=False)
    model, _ = load_neutone_model(str(res.out))
    model.set_daw_sample_rate_and_buffer_size(44100, 512)
    model.reset()
    x = check_signal(0.2, 44100, channels=2)[:, :512 * 16]
    params = torch.zeros(4, 512)
    params[0], params[1] = 0.65, 1.0   # PR 65, limit
    y = _stream(model, x, params)
    ref = stream(NeuralRenderer.load(path).block_processor(44100, la2a_setting("limit", 65.0)), x, 4096)
    assert np.max(np.abs(y - ref)) < 1e-4
