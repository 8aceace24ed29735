"""Train a neural model of the device (LRU, S6, LSTM, ...), residual hybrid or black box.

    python train_neural.py                                 # the LRU hybrid: corrects the fitted DSP model
    python train_neural.py model=lstm variant=blackbox     # the knobs alone
    python train_neural.py data=signaltrain data.root=DIR model=s6 max_minutes=60

Settings: cfg/train_neural.yaml and the config group cfg/model/<model>.yaml (Hydra-style overrides).
Writes out_dir/{best.pt,last.pt,log.csv,test_esr.csv}; an interrupted run resumes
from last.pt. Render with ``python test_comp.py --neural out_dir/best.pt IN OUT
--peak-reduction P --mode M``.
"""
from __future__ import annotations

import sys

from jobs.launch import run_entry
from common.errors import run_main


def main() -> int:
    return run_entry("train_neural", sys.argv[1:], __doc__, "train_neural.py", "jobs.train:run_train_job", output_key="out_dir")


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
