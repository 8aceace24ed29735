"""``device=``: cuda without CUDA is one ``error:`` line before any work; auto falls back to the CPU."""
from __future__ import annotations

import pytest
import torch

from common.errors import UserError
from jobs.fit_options import resolve_device


def test_auto_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match="device=cuda but no CUDA"):
        resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("script", ["train_comp.py", "train_neural.py"])
def test_cuda_without_cuda_is_one_line(script, run_cli, clean_failure, tmp_path):
    res = run_cli([script, "device=cuda", f"data.cache_dir={tmp_path}/cache", "quiet=true"], cwd=tmp_path)
    clean_failure(res, "device=cuda")
    assert not (tmp_path / "cache").exists()   # said before any corpus is made
