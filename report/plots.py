"""The comparison's pictures (matplotlib, written as PNG).

Each function takes plain data and a path and writes one figure:
ESR against PR (on a manifest corpus: ESR per knob setting), the knob map,
drum-hit waveforms with gain reduction, and sine-sweep spectrograms (the aliasing
check of the CL 1B study).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import spectrogram  # noqa: E402

from audio.gain import SMOOTHING_MS, GainTrace, gain_trace  # noqa: E402
from common.atomic import atomic_path  # noqa: E402
from audio.devices import la2a_setting  # noqa: E402
from dsp.knobs.knobmap import KnobMap
from report.models import is_dsp, series_label  # noqa: E402
from dsp.models.parameters import PARAM_NAMES

__all__ = ["plot_esr_vs_pr", "plot_esr_by_setting", "plot_knobmap", "plot_joint_curves", "plot_drum_hit",
           "plot_sweep_spectrograms", "plot_gain_traces", "plot_error_spectrograms"]

_UNITS = {"threshold_db": "threshold (dB)", "ratio": "ratio", "attack_ms": "attack (ms)",
          "release_ms": "release (ms)", "make_up_db": "make-up (dB)",
          # the optical cell's (dsp.models.opto)
          "release_slow_ms": "slow release (ms)", "slow_fraction": "slow fraction", "memory_ms": "memory (ms)",
          "memory_depth": "memory depth", "sidechain_shelf_hz": "sidechain shelf (Hz)",
          "sidechain_shelf_db": "sidechain shelf (dB)", "input_mix": "input tap"}
_LOG_SCALE = ("attack_ms", "release_ms", "ratio", "release_slow_ms", "memory_ms", "memory_depth", "sidechain_shelf_hz")


def _save(fig, path: Path, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def series_style(model: str, kind: str, models: list[str]) -> dict:
    """Line style of a (model, kind) series: DSP kinds in black/grey, one colour per
    neural model, solid for hybrids and dashed for black boxes."""
    if is_dsp(model, kind):
        grey = model == "graybox"
        return ({"color": "tab:brown" if grey else "black", "ls": "-"} if kind == "dsp"
                else {"color": "tan" if grey else "0.55", "ls": ":"})
    neural = [m for m in models if m not in ("dsp", "ff5", "graybox")]
    colour = plt.get_cmap("tab10")(neural.index(model) % 10)
    return {"color": colour, "ls": "--" if kind == "blackbox" else "-"}


def plot_esr_vs_pr(rows: list[dict], path: Path, unseen: set[int]) -> None:
    modes = sorted({r["mode"] for r in rows})
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes) + 1.8, 4.2), sharey=True, squeeze=False)
    series = sorted({(r["model"], r["kind"]) for r in rows}, key=lambda s: (s[1] != "dsp", s))
    models = sorted({m for m, _ in series})
    for ax, mode in zip(axes[0], modes):
        for model, kind in series:
            pts = sorted((r["peak_reduction"], r["esr"]) for r in rows
                         if r["mode"] == mode and r["model"] == model and r["kind"] == kind)
            if pts:
                pr, esr = zip(*pts)
                label = series_label(model, kind)
                ax.plot(pr, esr, marker="o", ms=3, lw=1.3, label=label, **series_style(model, kind, models))
        for u in unseen:
            ax.axvline(u, color="0.88", lw=6, zorder=0)
        ax.set_yscale("log")
        ax.set_title(f"{mode} (grey bars: levels never trained on)")
        ax.set_xlabel("peak reduction")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("ESR (pre-emphasised, Test)")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    _save(fig, path)


def plot_esr_by_setting(rows: list[dict], knobs: list[str], path: Path) -> None:
    """ESR of every model at every knob setting (manifest rows; files at a setting averaged).

    One group of bars per setting, labelled with its knob values; settings never
    trained at (split "unseen") are shaded.
    """
    keys = sorted({tuple(r["setting"][k] for k in knobs) for r in rows})
    series = sorted({(r["model"], r["kind"]) for r in rows}, key=lambda s: (not s[1].startswith("dsp"), s))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(keys) * max(1, len(series)) ** 0.5 + 2), 4.5))
    width = 0.8 / max(len(series), 1)
    for j, (model, kind) in enumerate(series):
        vals = []
        for key in keys:
            sel = [r["esr"] for r in rows if r["model"] == model and r["kind"] == kind
                   and tuple(r["setting"][k] for k in knobs) == key]
            vals.append(float(np.mean(sel)) if sel else np.nan)
        label = series_label(model, kind)
        ax.bar(np.arange(len(keys)) + (j - (len(series) - 1) / 2) * width, vals, width, label=label)
    unseen = {tuple(r["setting"][k] for k in knobs) for r in rows if r["split"] == "unseen"}
    for i, key in enumerate(keys):
        if key in unseen:
            ax.axvspan(i - 0.5, i + 0.5, color="0.9", zorder=0)
    ax.set_xticks(np.arange(len(keys)))
    ax.set_xticklabels(["\n".join(f"{k} {v:g}" for k, v in zip(knobs, key)) for key in keys], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ESR (pre-emphasised, Test)")
    ax.set_title("ESR per knob setting (grey: settings never trained at nor fitted)")
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def plot_knobmap(kmap: KnobMap, path: Path) -> None:
    fig, axes = plt.subplots(1, 5, figsize=(20, 3.8), layout="constrained")
    for mode in kmap.modes:
        levels = kmap.levels(mode)
        fine = np.linspace(min(levels), max(levels), 121)
        for ax, name in zip(axes, PARAM_NAMES):
            ax.plot(levels, [kmap.table[mode][pr][name] for pr in levels], "o", ms=4, label=f"{mode} fitted")
            ax.plot(fine, [kmap.at(la2a_setting(mode, q))[name] for q in fine], "-", lw=1, label=f"{mode} interpolated")
    for ax, name in zip(axes, PARAM_NAMES):
        ax.set_xlabel("peak reduction")
        ax.set_ylabel(_UNITS[name])
        if name in ("attack_ms", "release_ms"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("knob map: fitted compressor parameters against peak reduction")
    _save(fig, path)


def plot_joint_curves(model, per_level: list[dict], path: Path, held_out=(), per_level_label: str | None = None) -> None:
    """The joint fit's curves (:class:`dsp.knobs.joint_curves.JointKnobModel`) per mode, with the levels it
    was fitted at, against per-level fits (summary rows: ``mode``, ``peak_reduction`` and the
    curves' parameters) when given; held-out levels are marked by vertical lines. The curves'
    parameters are the five-parameter compressor's, or the optical cell's twelve (its held
    blocks are not curves)."""
    first = next(iter(model.fits.values())).curves.space
    names = [n for n in first.names if n in _UNITS]
    cols = min(len(names), 6)
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.8 * rows_n), layout="constrained", squeeze=False)
    axes = axes.reshape(-1)
    for i, mode in enumerate(model.modes):
        colour = f"C{i}"
        grid = model.curve_grid(mode, 121)
        fitted = model.levels(mode)
        at_fitted = model.fits[mode].curves.sample([float(v) for v in fitted])
        rows = [r for r in per_level if r["mode"] == mode]
        for ax, name in zip(axes, names):
            ax.plot(grid["peak_reduction"], grid[name], "-", color=colour, lw=1.5, label=f"{mode} joint")
            ax.plot(fitted, at_fitted[name], ".", color=colour, ms=5)
            if rows and all(r.get(name) not in (None, "") for r in rows):
                ax.plot([float(r["peak_reduction"]) for r in rows], [float(r[name]) for r in rows], "x",
                        color=colour, ms=6, label=f"{mode} per-level")
    for ax, name in zip(axes, names):
        for pr in held_out:
            ax.axvline(pr, color="0.8", lw=0.8, ls="--")
        ax.set_xlabel("peak reduction")
        ax.set_ylabel(_UNITS[name])
        if name in _LOG_SCALE:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    against = f" vs per-level fits ({per_level_label})" if per_level_label else ""
    fig.suptitle(f"joint knob fit: curves over peak reduction{against}; dashed: held-out levels")
    _save(fig, path)


def plot_drum_hit(x: np.ndarray, outputs: dict[str, np.ndarray], sample_rate: int, title: str, path: Path) -> None:
    t = np.arange(len(x)) / sample_rate * 1e3
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    a0.plot(t, x, color="0.75", lw=0.8, label="input")
    for name, y in outputs.items():
        a0.plot(t, y, lw=0.9, label=name)
        tr = gain_trace(x, y, sample_rate, hop_ms=1.0)
        a1.plot(tr.times_s * 1e3, tr.gain_db, lw=1.0, label=name)
    a0.set_ylabel("amplitude")
    a0.legend(fontsize=8, loc="upper right")
    a0.set_title(title)
    a1.set_ylabel(f"gain (dB, powers over {SMOOTHING_MS:g} ms)")
    a1.set_xlabel("time (ms)")
    a1.legend(fontsize=8, loc="lower right")
    for a in (a0, a1):
        a.grid(alpha=0.3)
    _save(fig, path)


def _styles(labels: list[str]) -> dict[str, dict]:
    """The reference (first label) thick and black, the others in the tab10 colours."""
    out = {}
    for i, label in enumerate(labels):
        out[label] = ({"color": "black", "lw": 2.0, "zorder": 5} if i == 0
                      else {"color": plt.get_cmap("tab10")((i - 1) % 10), "lw": 1.1})
    return out


def plot_gain_traces(traces: dict[str, GainTrace], title: str, path: Path, width: float = 10.0) -> None:
    """Gain traces over an excerpt (:func:`audio.gain.gain_trace`), the first (the target) in
    black; time from the start of the excerpt in s, gain in dB. (Fixed margins, no layout
    engine: one of these per excerpt and fitted setting, so it is drawn once, quickly.)"""
    fig = plt.figure(figsize=(width, 3.0))
    legend_w = 1.9 / width
    ax = fig.add_axes((0.8 / width, 0.16, 1.0 - 0.8 / width - legend_w - 0.01, 0.74))
    styles = _styles(list(traces))
    for label, tr in traces.items():
        ax.plot(tr.times_s, tr.gain_db, label=label, **styles[label])
    ax.set_xlabel("time in the excerpt (s)", fontsize=9)
    ax.set_ylabel("gain, output / input (dB)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def _log_spectrogram(z: np.ndarray, sample_rate: int, rows: int = 96, columns: int = 240):
    """Power in dB on a log-frequency grid (``rows`` from 30 Hz to Nyquist) and at most
    ``columns`` time steps: a picture's worth, quick to draw and small to store.

    Returns ``(db (rows, cols), duration_s, log10 of the grid's ends in Hz)``.
    """
    z = np.asarray(z, float)
    nper = 1024 if len(z) >= 1024 else max(16, len(z) // 4)
    f, tt, s = spectrogram(z, fs=sample_rate, nperseg=nper, noverlap=nper // 2)
    group = max(1, int(np.ceil(s.shape[1] / columns)))
    cols = s.shape[1] // group or 1
    s = s[:, : cols * group].reshape(s.shape[0], cols, -1).mean(axis=2) if s.shape[1] >= group else s
    db = 10 * np.log10(s + 1e-20)
    lo, hi = np.log10(30.0), np.log10(sample_rate / 2)
    grid = np.linspace(lo, hi, rows)
    logf = np.log10(np.maximum(f[1:], 1e-3))
    out = np.stack([np.interp(grid, logf, db[1:, j]) for j in range(db.shape[1])], axis=1)
    return out, len(z) / sample_rate, (lo, hi)


def plot_error_spectrograms(target: np.ndarray, errors: dict[str, np.ndarray], sample_rate: int, title: str,
                            path: Path) -> None:
    """The target's spectrogram, then each model's error (target minus output), on one colour
    scale (dB re full scale) and a log-frequency axis: an error as loud as the target shows as
    bright."""
    panels = {"target": target, **{f"error: {k}": v for k, v in errors.items()}}
    n = len(panels)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    spectra = {k: _log_spectrogram(v, sample_rate) for k, v in panels.items()}
    top = float(np.max(spectra["target"][0]))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 0.9, 1.9 * rows + 0.5), squeeze=False,
                             sharex=True, sharey=True)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20) if 30 <= t * 1e3 <= sample_rate / 2]
    im = None
    for i, (ax, (name, (db, seconds, (lo, hi)))) in enumerate(zip(axes.flat, spectra.items())):
        im = ax.imshow(db, origin="lower", aspect="auto", extent=(0, seconds, lo, hi), vmin=top - 90, vmax=top,
                       cmap="magma", interpolation="nearest")
        ax.set_yticks([np.log10(t * 1e3) for t in ticks], [f"{t:g}" for t in ticks])
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("frequency (kHz)", fontsize=8)
        if i + cols >= n:
            ax.set_xlabel("time (s)", fontsize=8)
            ax.tick_params(labelbottom=True)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.subplots_adjust(left=0.07, right=0.88, bottom=0.1, top=0.9, wspace=0.08, hspace=0.35)
    bar = fig.add_axes((0.9, 0.15, 0.015, 0.7))
    fig.colorbar(im, cax=bar).set_label("power (dB re full scale)", fontsize=8)
    bar.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    _save_palette(fig, path, dpi=80)


def _save_palette(fig, path: Path, dpi: int, colours: int = 96) -> None:
    """A PNG of at most ``colours`` colours (a spectrogram's noise makes a full-colour PNG
    several times larger, and a page holds dozens of them)."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    buf.seek(0)
    image = Image.open(buf).convert("RGB").quantize(colours)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)


def plot_sweep_spectrograms(outputs: dict[str, np.ndarray], sample_rate: int, title: str, path: Path) -> None:
    n = len(outputs)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 1.2, 2.9 * rows + 0.6), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for i, (ax, (name, y)) in enumerate(zip(axes.flat, outputs.items())):
        f, tt, s = spectrogram(np.asarray(y, float), fs=sample_rate, nperseg=1024, noverlap=768)
        im = ax.pcolormesh(tt, f / 1e3, 10 * np.log10(s + 1e-14), vmin=-140, vmax=-20, shading="auto",
                           rasterized=True)
        ax.set_title(name, fontsize=10)
        if i + cols >= n:   # the lowest plot of its column
            ax.set_xlabel("time (s)")
            ax.tick_params(labelbottom=True)
        if i % cols == 0:
            ax.set_ylabel("frequency (kHz)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, label="power (dB)", shrink=0.6)
    fig.suptitle(title)
    _save(fig, path)
