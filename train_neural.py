"""Train a neural model of the device: S6 or LSTM, residual hybrid or black box.

    python train_neural.py model=s6 variant=hybrid         # corrects the fitted DSP model
    python train_neural.py model=lstm variant=blackbox     # the knobs alone
    python train_neural.py data=signaltrain data.root=DIR model=s6 max_minutes=60

Settings: cfg/train_neural.yaml and the config group cfg/model/<model>.yaml (Hydra-style overrides).
Writes out_dir/{best.pt,last.pt,log.csv,test_esr.csv}; an interrupted run resumes
from last.pt. Render with ``python test_comp.py --neural out_dir/best.pt IN OUT
--peak-reduction P --mode M``.
"""
from __future__ import annotations

import sys

from common.cli import compose_cli
from common.errors import run_main
from jobs.train import run_train_job


def main() -> int:
    cfg = compose_cli("train_neural", sys.argv[1:], __doc__, "train_neural.py")
    return 0 if cfg is None else run_train_job(cfg)


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
