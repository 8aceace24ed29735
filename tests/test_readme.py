"""Every Python block of the README runs verbatim, in a fresh interpreter, in a folder that
holds the fits it names (it makes its own audio)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from dsp.knobs.knobmap import KnobMap
from support import ROOT, TRUE_PARAMS

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
GRAY = {**TRUE_PARAMS, "input_highpass_hz": 30.0, "input_shelf_hz": 8000.0, "input_shelf_db": -4.0,
        "tube_drive": 2.0, "tube_asymmetry": 0.2, "output_highpass_hz": 15.0}


def test_the_readme_has_python_blocks():
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs_as_written(block, tmp_path):
    # the default chain's folder, as `python train_comp.py` writes it (a small gray-box knob map)
    (tmp_path / "checkpoints" / "standin").mkdir(parents=True)
    KnobMap({m: {40: {**GRAY, "threshold_db": -12.0}, 100: GRAY} for m in ("compress", "limit")},
            "graybox").save(tmp_path / "checkpoints" / "standin" / "knobmap.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}   # the checkout, as after pip install -e .
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
