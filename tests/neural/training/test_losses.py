"""The training losses: the pre-emphasised ESR (warm-up unscored) and ESR + MR-STFT."""
import pytest
import torch

from neural.training.losses import ESRLoss, HybridLoss


def test_losses():
    torch.manual_seed(0)
    y = torch.randn(2, 4000)
    esr = ESRLoss()
    assert esr(y, y)[0].item() == 0.0
    assert esr(0.5 * y, y)[0].item() == pytest.approx(0.25, rel=1e-4)
    # the warm-up is not scored
    p = y.clone()
    p[:, :1000] = 0.0
    assert esr(p, y, warmup=1000)[0].item() < 1e-3 < 0.2 < esr(p, y)[0].item()
    total, parts = HybridLoss(1.0, 0.1)(0.5 * y, y, 500)
    assert set(parts) == {"esr", "stft"}
    assert total.item() == pytest.approx(parts["esr"].item() + 0.1 * parts["stft"].item(), rel=1e-5)
