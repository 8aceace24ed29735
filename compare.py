"""Compare DSP, hybrid and black-box models on the Test material, with tables and pictures.

    python compare.py out_dir=DIR

Fits the chain and trains the neural models first if they are missing (default
configs), reuses what exists, then writes DIR/compare.csv, DIR/compare.md and PNG plots.
"""
from __future__ import annotations

import sys

from common.cli import compose_cli
from common.errors import run_main
from jobs.compare import run_compare


def main() -> int:
    cfg = compose_cli("compare", sys.argv[1:], __doc__, "compare.py")
    return 0 if cfg is None else run_compare(cfg, sys.argv[1:])


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
