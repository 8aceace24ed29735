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
from dsp.knobmap import KnobMap  # noqa: E402
from dsp.render import BlockCompressor  # noqa: E402

P = {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 2.0, "release_ms": 150.0, "make_up_db": 3.0}
TABLE = {"compress": {100: P, 40: {**P, "threshold_db": -12.0, "ratio": 3.0}},
         "limit": {100: {**P, "ratio": 8.0}, 40: {**P, "threshold_db": -14.0}}}


def test_knobmap_neutone_model_passes_sdk_checks_and_matches(tmp_path):
    (tmp_path / "chain").mkdir()
    KnobMap(TABLE).save(tmp_path / "chain" / "knobmap.yaml")
    res = export_neutone(tmp_path / "chain", tmp_path / "nm", submission=False)
    assert res.out == tmp_path / "nm" / "model.nm" and res.out.is_file()
    model, meta = load_neutone_model(str(res.out))
    assert [p["name"] for p in meta["neutone_parameters"].values()][:2] == ["peak_reduction", "mode"]
    model.set_daw_sample_rate_and_buffer_size(44100, 512)
    model.reset()
    x = check_signal(0.2, 44100, channels=2)[:, :512 * 16]
    params = torch.zeros(4, 512)
    params[0], params[1] = 0.65, 1.0   # PR 65, limit
    # the wrapper reuses its buffers: copy what goes in and what comes out
    y = np.concatenate([model(torch.tensor(x[:, i:i + 512]), params).clone().numpy() for i in range(0, x.shape[1], 512)], 1)
    ref = BlockCompressor(KnobMap(TABLE).at(la2a_setting("limit", 65.0)), 44100).process(x)
    assert np.max(np.abs(y - ref)) < 1e-4
