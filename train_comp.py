"""Fit the 5-parameter compressor with Newton-Raphson (Hydra-style overrides).

    python train_comp.py                                   # both chains on the stand-in corpus
    python train_comp.py data=signaltrain data.root=DIR    # the real SignalTrain LA-2A
    python train_comp.py data.input=IN.wav data.target=TARGET.wav ckpt_dir=DIR   # one pair
    python train_comp.py data=ff_a                         # recover a digital compressor
    python train_comp.py data=manifest data.path=M.csv ckpt_dir=DIR   # every Train take of a manifest

The job is ``job=auto`` (default: what the data asks for) or one of pair, digital,
chain, manifest (jobs/fit.py).
"""
from __future__ import annotations

import sys

from common.errors import run_main
from jobs.launch import run_entry


def main() -> int:
    return run_entry("config", sys.argv[1:], __doc__, "train_comp.py", "jobs.fit:run_fit_job", output_key="ckpt_dir")


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
