"""Plain-text tables for the summaries printed at the end of every run."""
from __future__ import annotations

__all__ = ["format_table"]


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Align ``rows`` under ``columns`` given as ``(key, header, format)``."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([("" if r.get(k) is None else format(r[k], f)) for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
