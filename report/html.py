"""Self-contained report pages: HTML building blocks and the files a page links to.

A report is ``report.html`` and a folder ``report_files/`` beside it (FLAC audio, PNG
pictures); it opens from disk in any browser with no network: no script, font or style
is fetched, the style sheet is inline. Audio is 16-bit FLAC (lossless for the 16-bit
signal; a browser and libsndfile both decode it), mono, at the take's rate and at its
true level: an excerpt whose loudest track would clip is scaled down as a whole (every
track by the same amount, said in the page).

:class:`ReportFiles` writes the files into a staging folder and :meth:`ReportFiles.publish`
swaps the folder and the page in, so a failed run leaves the previous report as it was.
"""
from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from common.atomic import remove_stale_temporaries, temporary_name, write_text_atomic

__all__ = ["PAGE", "FILES", "esc", "code", "slug", "page", "table", "track", "figure", "badge", "ReportFiles",
           "fade_edges", "level_dbfs"]

PAGE = "report.html"
FILES = "report_files"
FADE_S = 0.01   # fades at both ends of every excerpt's tracks (no click where it is cut)

_CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fff;
  margin:0 auto;max-width:1180px;padding:0 14px 40px}
h1{font-size:1.55em;margin:.9em 0 .2em}h2{font-size:1.25em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd;
  padding-bottom:.15em}h3{font-size:1.05em;margin:1.3em 0 .3em}
p,li,figcaption,dd{overflow-wrap:anywhere}
code{font-size:.92em;background:#f3f3f5;padding:0 .25em;border-radius:3px}
nav{font-size:.92em;margin:.6em 0}nav a{margin-right:.8em;white-space:nowrap;display:inline-block}
.scroll{overflow-x:auto;max-width:100%;margin:.4em 0 1em}
table{border-collapse:collapse;font-size:.86em;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e3e3e6;padding:.25em .55em;text-align:right;white-space:nowrap}
th{background:#f5f5f7;position:sticky;top:0}
td.text,th.text{text-align:left}
tr.held-out td{background:#fff8e6}
.badge{display:inline-block;font-size:.78em;padding:0 .45em;border-radius:.7em;background:#ffe2a8;color:#5a3d00;
  margin-left:.35em;vertical-align:.1em}
.tracks{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:8px 14px;margin:.5em 0}
.track{margin:0;padding:6px 8px;border:1px solid #e3e3e6;border-radius:6px;background:#fafafa}
.track figcaption{font-size:.86em;margin-bottom:3px}
.track.error{background:#fff4f4}
audio{width:100%;height:34px;display:block}
figure.plot{margin:.6em 0 1em}figure.plot img{max-width:100%;height:auto;display:block;border:1px solid #eee}
figure.plot figcaption{font-size:.86em;color:#444;margin-top:.25em}
dl.defs dt{font-weight:600;margin-top:.4em}dl.defs dd{margin:0 0 0 1.2em}
.note{color:#555;font-size:.9em}
"""


def esc(text) -> str:
    """Text for HTML (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def code(text) -> str:
    """Escaped text with its ``backticks`` as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def slug(text) -> str:
    """Lower-case letters and digits joined by ``-``: an id or a file name from a label."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def page(title: str, body: str) -> str:
    """A whole page: the inline style sheet, a viewport for phones, ``body`` as given."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def badge(text: str) -> str:
    return f'<span class="badge">{esc(text)}</span>'


def _cell(value, fmt: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and not np.isfinite(value):
        return "nan"
    if fmt:
        try:
            return format(value, fmt)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def table(rows: list[dict], columns: list[tuple], *, name: str = "", row_class=None, raw=()) -> str:
    """A table in a horizontally scrolling box (the page itself never scrolls sideways).

    Args:
        rows: dicts.
        columns: ``(key, header, format)``, as :func:`common.table.format_table` takes them;
            an empty format is text (left-aligned).
        name: the table's ``data-table`` attribute (what checks find it by).
        row_class: ``row -> str`` CSS class of a row (e.g. ``held-out``).
        raw: keys whose values are HTML already (not escaped).
    """
    head = "".join(f'<th class="{"text" if not f else "num"}">{esc(h)}</th>' for _, h, f in columns)
    body = []
    for r in rows:
        cls = row_class(r) if row_class else ""
        cells = []
        for k, _, f in columns:
            v = r.get(k)
            text = str(v) if k in raw and v is not None else esc(_cell(v, f))
            cells.append(f'<td class="{"text" if not f else "num"}">{text}</td>')
        cls_attr = f' class="{esc(cls)}"' if cls else ""
        body.append(f"<tr{cls_attr}>" + "".join(cells) + "</tr>")
    attr = f' data-table="{esc(name)}"' if name else ""
    return (f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body)
            + "\n</tbody></table></div>")


def track(src: str, seconds: float, label: str, note: str = "", error: bool = False) -> str:
    """A labelled audio player; ``data-seconds`` is the excerpt's length (what checks compare
    the decoded duration with)."""
    extra = f' <span class="note">{esc(note)}</span>' if note else ""
    cls = "track error" if error else "track"
    return (f'<figure class="{cls}"><figcaption>{esc(label)}{extra}</figcaption>'
            f'<audio controls preload="metadata" src="{esc(src)}" data-seconds="{seconds:.4f}"></audio></figure>')


def figure(src: str, caption: str, alt: str) -> str:
    return (f'<figure class="plot"><img src="{esc(src)}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def fade_edges(x: np.ndarray, sample_rate: int, seconds: float = FADE_S) -> np.ndarray:
    """``x`` with raised-cosine fades of ``seconds`` at both ends."""
    x = np.array(x, dtype=np.float64, copy=True)
    n = min(int(seconds * sample_rate), len(x) // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def level_dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS (-inf for silence)."""
    ms = float(np.mean(np.square(np.asarray(x, np.float64)))) if len(x) else 0.0
    return 10.0 * np.log10(ms) if ms > 0 else float("-inf")


class ReportFiles:
    """The files of one report, written into a staging folder beside ``folder/report_files``.

    Identical audio is written once (a held-out setting's ``dsp`` and ``dsp-interp`` are
    the same model). :attr:`bytes` counts what was written so far.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.folder)
        self.staging = self.folder / (temporary_name(FILES) + "-staging")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir()
        self.bytes = 0
        self._by_hash: dict[str, str] = {}

    def src(self, name: str) -> str:
        """The page's link to file ``name`` (relative: the folder can be moved or copied)."""
        return f"{FILES}/{name}"

    def path(self, name: str) -> Path:
        """Where to write file ``name`` now (in the staging folder)."""
        return self.staging / name

    def add(self, name: str) -> str:
        """Count a file written to :meth:`path` and return its link."""
        self.bytes += self.path(name).stat().st_size
        return self.src(name)

    def audio(self, name: str, x: np.ndarray, sample_rate: int) -> str:
        """Write mono ``x`` (within [-1, 1]) as ``name.flac``; its link (an identical earlier one's)."""
        pcm = np.clip(np.round(np.asarray(x, np.float64).reshape(-1) * 32767.0), -32768, 32767).astype("<i2")
        key = hashlib.sha1(pcm.tobytes() + str(sample_rate).encode()).hexdigest()
        if key in self._by_hash:
            return self._by_hash[key]
        sf.write(str(self.path(name + ".flac")), pcm, sample_rate, format="FLAC", subtype="PCM_16")
        self._by_hash[key] = self.add(name + ".flac")
        return self._by_hash[key]

    def remove(self, links: list[str]) -> None:
        """Delete files already written (a setting dropped to keep within a size budget)."""
        for link in set(links):
            p = self.staging / Path(link).name
            if p.is_file():
                self.bytes -= p.stat().st_size
                p.unlink()
        self._by_hash = {k: v for k, v in self._by_hash.items() if v not in set(links)}

    def publish(self, text: str) -> Path:
        """Put the files in place of ``report_files/`` and write ``report.html``; returns its path."""
        final = self.folder / FILES
        old = None
        if final.exists():
            old = self.folder / (temporary_name(FILES) + "-old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(self.staging, final)
        write_text_atomic(self.folder / PAGE, text)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.folder / PAGE

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def total_bytes(self, extra: list[Path] = ()) -> int:
        """What the report holds: its files, the page and the pictures beside it it links to."""
        return self.bytes + sum(Path(p).stat().st_size for p in extra if Path(p).is_file())
