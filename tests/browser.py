"""Opening a report page in a real browser: headless Chromium (Debian's ``chromium``) driven
by Playwright's Python API, with the system browser (no browser download).

:func:`check_page` asserts what a person relies on: no console error and no request off
the disk (the page works with no network), every ``<audio>`` decodes to the length of its
excerpt and plays (muted), every picture has a size, the named tables have their rows,
and the page fits 1280 px and 390 px wide screens without sideways scrolling; it saves a
full-page screenshot at each width.

Where Chromium or Playwright is missing the check is skipped, except in CI
(``LA2A_REQUIRE_BROWSER`` or ``CI`` set: ``.ci/run`` sets the first), where it fails.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# what works in a container: no sandbox (root), no GPU, nothing fetched in the background
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required"]
WIDTHS = (1280, 390)


def _executable() -> str | None:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    return shutil.which("chromium")


def require_browser():
    """Playwright's sync API and Chromium's path; a skip (a failure in CI) when either is missing."""
    required = bool(os.environ.get("LA2A_REQUIRE_BROWSER") or os.environ.get("CI"))
    exe = _executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = ("playwright (pip install -r requirements.txt)" if sync_playwright is None else
               "chromium (apt-get install -y chromium)" if exe is None else None)
    if missing:
        if required:
            pytest.fail(f"the browser check needs {missing}")
        pytest.skip(f"no {missing} here (CI installs it)")
    return sync_playwright, exe


_WAIT_METADATA = """async () => {
  const els = [...document.querySelectorAll('audio')];
  await Promise.all(els.map(a => a.readyState >= 1 || a.error ? null : new Promise(done => {
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
  })));
  return els.map(a => ({src: a.getAttribute('src'), duration: a.duration, expected: parseFloat(a.dataset.seconds),
                        error: a.error ? a.error.code : null}));
}"""

_PLAY = """async (i) => {
  const a = document.querySelectorAll('audio')[i];
  a.muted = true;
  try { await a.play(); } catch (e) { return {played: false, why: String(e)}; }
  const t0 = performance.now();
  while (a.currentTime <= 0 && performance.now() - t0 < 5000) { await new Promise(r => setTimeout(r, 20)); }
  const t = a.currentTime;
  a.pause();
  return {played: t > 0, time: t};
}"""

_IMAGES = """() => [...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                                   w: i.naturalWidth, h: i.naturalHeight}))"""

_TABLE_ROWS = """(name) => [...document.querySelectorAll(`table[data-table="${name}"]`)]
                   .map(t => t.querySelectorAll('tbody tr').length)"""

_WIDTHS = """() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
                    view: window.innerWidth})"""


def check_page(path: Path, shots: Path, tables: dict[str, list[int]], name: str = "page") -> dict:
    """Open ``path`` in headless Chromium and assert the checks of the module doc.

    Args:
        path: the page (``report.html``).
        shots: a folder for the screenshots (``<name>_<width>.png``) and the browser's profile.
        tables: ``data-table`` name -> the expected row count of each such table, in page order.

    Returns:
        What was found: ``audio`` (per element src, duration, expected), ``images``, ``shots``.
    """
    sync_playwright, exe = require_browser()
    shots.mkdir(parents=True, exist_ok=True)
    profile = shots / f"{name}-profile"
    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir()
    console, page_errors, off_disk, failed = [], [], [], []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=exe, args=ARGS,
                                                       headless=True, viewport={"width": WIDTHS[0], "height": 900})
        try:
            def route(r):
                if r.request.url.startswith(("file:", "data:", "about:")):
                    r.continue_()
                else:
                    off_disk.append(r.request.url)
                    r.abort()
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            # a media element cancels its own download once it has what it preloads (ERR_ABORTED):
            # not a failure; a missing file is (ERR_FILE_NOT_FOUND, and a console error)
            page.on("requestfailed", lambda r: None if "ERR_ABORTED" in str(r.failure)
                    else failed.append(f"{r.url}: {r.failure}"))
            page.goto(path.resolve().as_uri(), wait_until="load")
            audio = page.evaluate(_WAIT_METADATA)
            plays = [page.evaluate(_PLAY, i) for i in range(len(audio))]
            images = page.evaluate(_IMAGES)
            rows = {t: page.evaluate(_TABLE_ROWS, t) for t in tables}
            sizes, shot_files = {}, []
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                page.wait_for_timeout(100)
                sizes[width] = page.evaluate(_WIDTHS)
                shot = shots / f"{name}_{width}.png"
                page.screenshot(path=str(shot), full_page=True)
                shot_files.append(shot)
        finally:
            context.close()
    assert not off_disk, f"the page asked the network for {off_disk[:5]}"
    assert not console and not page_errors, f"console errors: {console[:5]} {page_errors[:5]}"
    assert not failed, f"failed requests: {failed[:5]}"
    assert audio, "no <audio> on the page"
    for a, played in zip(audio, plays):
        assert a["error"] is None, f"{a['src']}: media error {a['error']}"
        assert abs(a["duration"] - a["expected"]) <= 0.05 * a["expected"], a
        assert played["played"], (a["src"], played)
    assert images, "no picture on the page"
    for im in images:
        assert im["complete"] and im["w"] > 0 and im["h"] > 0, im
    for t, counts in tables.items():
        assert rows[t] == counts, f"table {t}: rows {rows[t]}, expected {counts}"
    for width, s in sizes.items():
        assert s["doc"] <= s["view"] and s["body"] <= s["view"], f"scrolls sideways at {width} px: {s}"
    for shot in shot_files:
        assert shot.stat().st_size > 10_000
    return {"audio": audio, "images": images, "shots": shot_files}
