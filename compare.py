"""Compare DSP, hybrid and black-box models on the Test material, with tables and pictures.

    python compare.py out_dir=DIR

Fits the chain and trains the neural models first if they are missing (default
configs), reuses what exists, then writes DIR/compare.csv, DIR/compare.md and PNG plots.
"""
from __future__ import annotations

import sys

from common.config import load_config
from common.errors import run_main
from jobs.compare import run_compare


def main() -> int:
    return run_compare(load_config("compare", sys.argv[1:]), sys.argv[1:])


if __name__ == "__main__":
    run_main(main)
