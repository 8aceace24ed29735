"""Compare DSP, hybrid and black-box models on the Test material, with tables and pictures.

    python compare.py out_dir=DIR

Fits the chain and trains the neural models first if they are missing (default
configs, through the Hydra launcher: hydra/launcher=joblib|submitit_local|submitit_slurm;
train_jobs=N at once with joblib), reuses what exists, then writes DIR/compare.csv,
DIR/compare.md and PNG plots.
"""
from __future__ import annotations

import sys

from common.cli import compose_cli
from common.errors import UserError, run_main
from jobs.launch import split_launch_args
from jobs.compare import run_compare


def main() -> int:
    args = split_launch_args(sys.argv[1:])   # hydra/launcher=...: how the missing models train
    if args.multirun:
        raise UserError("compare.py runs one comparison; its missing trainings go through the launcher "
                        "(hydra/launcher=..., train_jobs=N) without -m")
    cfg = compose_cli("compare", args.job, __doc__, "compare.py")
    return 0 if cfg is None else run_compare(cfg, args.job, args.hydra)


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
