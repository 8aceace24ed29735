"""What SOURCE is, and the streaming module built from it with its Python reference.

:func:`resolve_source` tells a neural run (a ``.pt``) from a DSP fit, which is opened by
the project's one resolver (:func:`dsp.storage.open_fit.open_fit`: a one-pair fit, an
LA-2A chain or joint fit, a manifest device's per-take fits or knob curves). :func:`build`
returns an :class:`Exportable`: the scriptable module (:mod:`deploy.compressor`,
:mod:`deploy.graybox`, :mod:`deploy.opto`, :mod:`deploy.curves`, :mod:`deploy.neural`), how to call it at a
setting, the settings worth checking and, per setting, the project's own Python renderer
that the exported file must equal. Writing and checking the file is the export job
(:mod:`jobs.export`).

- a one-pair fit -> ``forward(x)``;
- an LA-2A chain or joint fit (its knob map) -> ``forward(x, peak_reduction, mode)``;
- a manifest device's per-take fits (nearest fitted setting) or knob curves ->
  ``forward(x, knobs)``, the knob values in the device's order (``knob_names()``);
- a neural run's checkpoint (``best.pt``) of an LA-2A model -> ``forward(x, peak_reduction, mode)``.

Which model class exports in which form is the fit's own answer
(:meth:`dsp.storage.open_fit.FittedModel.export_form`); anything else is refused by name.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from audio.devices import MODES, SWITCH, la2a_setting
from common.errors import UserError
from dsp.storage.open_fit import FIT_HELP, FittedModel, open_fit

__all__ = ["KINDS", "SOURCE_HELP", "Exportable", "resolve_source", "build", "check_levels"]

KINDS = ("fit", "knobmap", "knobtable", "knobcurves", "neural")
SOURCE_HELP = f"expected {FIT_HELP}, or a neural checkpoint (.pt)"
LA2A_SIGNATURE = "forward(x, peak_reduction, mode)  # mode 0 compress, 1 limit"
_FORM_KINDS = {"pair": "fit", "knobmap": "knobmap", "knobtable": "knobtable", "knobcurves": "knobcurves"}


@dataclass
class Exportable:
    """A scriptable module with what the export needs to check it.

    Attributes:
        kind: one of :data:`KINDS`.
        source: the file (or manifest fit folder) it was built from.
        module: the scriptable streaming module.
        sample_rate: the rate it starts at.
        signature: how to call it.
        description: one line for people.
        settings: the settings to check (knob dicts; ``[None]`` for a module without knobs).
        knob_args: a setting -> the module's knob arguments after ``x``.
        reference: a setting -> the Python renderer's block callable on ``(C, n)`` float32.
        follows_rate: whether ``set_sample_rate`` retimes it (DSP) or it runs at one rate (neural).
        knobs: the knob names (the device's order).
    """

    kind: str
    source: Path
    module: object
    sample_rate: int
    signature: str
    description: str
    settings: list
    knob_args: Callable[[Optional[dict]], tuple]
    reference: Callable[[Optional[dict]], Callable]
    follows_rate: bool
    knobs: tuple = ()


def resolve_source(source: str | Path) -> tuple[str, Path, FittedModel | None]:
    """``(kind, path, fit)`` for SOURCE: kind in :data:`KINDS`; ``fit`` the opened DSP fit
    (None for a neural run).

    Raises:
        UserError: a missing or unreadable source, or one of no known kind.
    """
    p = Path(source)
    if not p.exists():
        raise UserError(f"{p}: not found ({SOURCE_HELP})")
    if p.is_file() and zipfile.is_zipfile(p):
        return "neural", p, None
    fit = open_fit(p)
    form = fit.export_form()
    if not form.exportable:
        raise UserError(f"{fit.path}: {form.reason}")
    return _FORM_KINDS[fit.form], fit.path, fit


def check_levels(levels) -> list[float]:
    """PR values to check: the ends, a point between fitted levels, and one outside the
    fitted range (within 0..100)."""
    lo, hi = float(min(levels)), float(max(levels))
    points = {lo, hi, lo + 0.37 * (hi - lo)}
    if lo > 0:
        points.add(0.0)
    elif hi < 100:
        points.add(100.0)
    return sorted(points)


def _la2a_args(setting: dict) -> tuple:
    return float(setting["peak_reduction"]), float(SWITCH[setting["mode"]])


def _map_reference(fit: FittedModel, sr: int):
    """The Python renderer at a setting of a map, with the map's own answer outside the
    fitted range (the exported module holds the end values there too)."""
    return lambda s: fit.model_class.processor(fit.param_map.at(s), sr).process


# --- per kind ---------------------------------------------------------------------------
def _fit(fit: FittedModel, sample_rate: int | None) -> Exportable:
    from deploy.compressor import FixedCompressor
    from deploy.graybox import FixedGraybox
    from deploy.opto import FixedOpto
    params = fit.at()
    sr = int(sample_rate or fit.sample_rate)
    module = {"ff5": FixedCompressor, "graybox": FixedGraybox, "opto": FixedOpto}[fit.model_class.name](params, sr)
    desc = f"one-pair {fit.model_class.name} fit: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items())
    return Exportable("fit", fit.path, module, sr, "forward(x)", desc, [None],
                      lambda setting: (), lambda setting: fit.processor(sr).process, True)


def _knobmap(fit: FittedModel, sample_rate: int | None) -> Exportable:
    from deploy.compressor import KnobMapCompressor
    from deploy.graybox import KnobMapGraybox
    kmap = fit.param_map
    unknown = [m for m in kmap.modes if m not in MODES]
    if unknown:
        raise UserError(f"{fit.path}: mode {unknown[0]!r} has no place on the exported mode knob (compress, limit)")
    sr = int(sample_rate or 44100)
    settings = [la2a_setting(m, pr) for m in kmap.modes for pr in check_levels(kmap.levels(m))]
    desc = (f"{kmap.compressor} knob map: "
            + "; ".join(f"{m} PR {min(kmap.levels(m))}..{max(kmap.levels(m))}" for m in kmap.modes))
    from deploy.opto import KnobMapOpto
    module = {"ff5": KnobMapCompressor, "graybox": KnobMapGraybox, "opto": KnobMapOpto}[kmap.compressor](kmap.table, sr)
    return Exportable("knobmap", fit.path, module, sr, LA2A_SIGNATURE, desc, settings,
                      _la2a_args, _map_reference(fit, sr), True, tuple(kmap.knobs))


def knob_table_module(table, sample_rate: int):
    """The :class:`deploy.compressor.KnobTableCompressor` of a :class:`dsp.knobs.knobtable.KnobTable`."""
    from deploy.compressor import KnobTableCompressor
    from dsp.knobs.knobtable import FAR
    fitted = table.fitted()
    points = [[float(s[k]) for k in table.knobs] for s, _ in fitted]
    return KnobTableCompressor(list(table.knobs), points, [p for _, p in fitted], [float(v) for v in table.scale],
                               FAR, sample_rate)


def table_check_settings(table, most: int = 4) -> list[dict]:
    """Fitted settings and midpoints between neighbours in the table (where nearest switches)."""
    fitted = table.settings()
    chosen = fitted[:most]
    mids = [{k: (float(a[k]) + float(b[k])) / 2 + 1e-3 * table.scale[i] for i, k in enumerate(table.knobs)}
            for a, b in zip(fitted[:most], fitted[1:most + 1])]
    return chosen + mids


def _knobtable(fit: FittedModel, sample_rate: int | None) -> Exportable:
    table = fit.param_map
    sr = int(sample_rate or 44100)
    knobs = tuple(table.knobs)
    desc = (f"knob table: {len(table.settings())} fitted settings of the knobs {', '.join(knobs)} "
            "(nearest fitted setting)")
    return Exportable("knobtable", fit.path, knob_table_module(table, sr), sr, fit.export_form().signature, desc,
                      table_check_settings(table), lambda s: ([float(s[k]) for k in knobs],),
                      _map_reference(fit, sr), True, knobs)


def _knobcurves(fit: FittedModel, sample_rate: int | None) -> Exportable:
    from deploy.curves import KnobCurvesCompressor
    from dsp.knobs.knobtable import FAR
    curves = fit.param_map
    sr = int(sample_rate or 44100)
    knobs = tuple(curves.knobs)
    desc = f"knob curves: smooth in the knobs {', '.join(knobs)} over {len(curves.settings())} fitted settings"
    settings = table_check_settings(curves._range)
    return Exportable("knobcurves", fit.path, KnobCurvesCompressor(curves, FAR, sr), sr, fit.export_form().signature,
                      desc, settings, lambda s: ([float(s[k]) for k in knobs],), _map_reference(fit, sr), True, knobs)


def _neural(path: Path, sample_rate: int | None) -> Exportable:
    from deploy.neural import neural_module
    from neural.checkpoint import load_checkpoint
    from neural.inference import NeuralRenderer
    record, model = load_checkpoint(path)
    sr = int(record["sample_rate"])
    if sample_rate is not None and int(sample_rate) != sr:
        raise UserError(f"{path}: the neural model runs at {sr} Hz only, not {int(sample_rate)} Hz")
    module = neural_module(record, model, str(path))
    renderer = NeuralRenderer(record, model, str(path))
    pm = renderer.param_map
    modes = pm.modes if renderer.uses_dsp else list(MODES)
    levels = [pr for m in pm.modes for pr in pm.levels(m)] or [40, 100]
    settings = [la2a_setting(m, pr) for m in modes for pr in check_levels(levels)]
    desc = f"{renderer.name} ({renderer.head}, {renderer.num_parameters} parameters)"
    return Exportable("neural", path, module, sr, LA2A_SIGNATURE, desc, settings, _la2a_args,
                      lambda s: renderer.block_processor(sr, s), False, tuple(renderer.knobs))


_BUILDERS = {"fit": _fit, "knobmap": _knobmap, "knobtable": _knobtable, "knobcurves": _knobcurves}


def build(kind: str, path: Path, fit: FittedModel | None = None, sample_rate: int | None = None) -> Exportable:
    """The :class:`Exportable` of a resolved source (:func:`resolve_source`).

    Args:
        fit: the opened DSP fit (None for a neural run).
        sample_rate: the rate a DSP module starts at (default: the fit's, or 44100 for a
            map); a neural model runs at its training rate only.

    Raises:
        UserError: a bad source, or a model this exporter does not convert.
    """
    if kind == "neural":
        return _neural(path, sample_rate)
    return _BUILDERS[kind](fit, sample_rate)
