"""The one CSV writer: rows of dicts to a CSV file, floats to 6 significant digits, atomically.

Every table the tool writes (fit summaries, training logs, test tables, comparisons)
goes through :func:`csv_text` / :func:`write_csv`, so they all read back the same way.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Iterable, Sequence

from common.atomic import write_text_atomic

__all__ = ["csv_text", "write_csv"]


def _cell(value) -> object:
    return f"{value:.6g}" if isinstance(value, float) else value


def csv_text(rows: Iterable[dict], columns: Sequence[str] | None = None) -> str:
    """CSV text of ``rows``; ``columns`` (default: the first row's keys) picks and orders the
    fields, keys outside it are left out and missing ones are empty."""
    rows = list(rows)
    fields = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[dict], columns: Sequence[str] | None = None) -> None:
    """Write :func:`csv_text` of ``rows`` to ``path`` atomically."""
    write_text_atomic(path, csv_text(rows, columns))
