"""What SOURCE is, and the streaming module built from it with its Python reference.

:func:`resolve_source` tells a fit, a knob map, a knob table and a neural run apart;
:func:`build` loads it and returns an :class:`Exportable`: the scriptable module
(:mod:`deploy.compressor`, :mod:`deploy.neural`), how to call it at a setting, the
settings worth checking and, per setting, the project's own Python renderer
(:class:`dsp.models.ff5_streaming.StreamingCompressor`, :class:`neural.inference.NeuralRenderer`) that
the exported file must equal. Writing and checking the file is the export job
(:mod:`jobs.export`).

SOURCE is one of:

- a one-pair fit: its ``ckpt.yaml`` or the folder holding it -> ``forward(x)``;
- an LA-2A chain: its folder holding ``knobmap.yaml``, or that file ->
  ``forward(x, peak_reduction, mode)``;
- a device with its own knobs: a ``knobtable.yaml`` (a :class:`dsp.knobs.knobtable.KnobTable`
  record), a folder holding one, or the folder ``train_comp.py data=manifest`` wrote
  (``rows/*/ckpt.yaml``, one fit per take) -> ``forward(x, knobs)``, the knob values in
  the device's order (``knob_names()``);
- a neural run's checkpoint (``best.pt``) of an LA-2A model -> ``forward(x, peak_reduction, mode)``.

Both DSP model classes convert: the 5-parameter compressor (``compressor=ff5``,
:mod:`deploy.compressor`) and the gray-box (``compressor=graybox``, :mod:`deploy.graybox`)
as a fit or a knob map; a knob table holds the five only (:class:`dsp.knobs.knobtable.KnobTable`).
A record of another compressor kind, or with parameters its kind does not have, is
refused by name rather than exported without them.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import yaml

from audio.devices import MODES, SWITCH, la2a_setting
from common.errors import UserError
from dsp.models.graybox import BLOCK_NAMES
from dsp.models.parameters import PARAM_NAMES

__all__ = ["KINDS", "SOURCE_HELP", "Exportable", "resolve_source", "build", "compressor_of",
           "check_levels"]

KINDS = ("fit", "knobmap", "knobtable", "neural")
CURVES_NOT_EXPORTABLE = ("knob curves (a manifest's method=joint fit) cannot be exported yet; export the "
                         "per-take fits of method=per_level (a knob table)")
SOURCE_HELP = ("expected a ckpt.yaml, a chain folder holding knobmap.yaml, a knobtable.yaml or manifest fit "
               "folder, or a neural checkpoint (.pt)")
LA2A_SIGNATURE = "forward(x, peak_reduction, mode)  # mode 0 compress, 1 limit"
_MANIFEST_ROWS = "rows"   # dsp.storage.take_fits.take_dir: DSP_DIR/rows/<index>_<label>/ckpt.yaml


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


def resolve_source(source: str | Path) -> tuple[str, Path]:
    """``(kind, path)`` for SOURCE, kind in :data:`KINDS`.

    Raises:
        UserError: a missing or unreadable source, or one of no known kind.
    """
    p = Path(source)
    if not p.exists():
        raise UserError(f"{p}: not found ({SOURCE_HELP})")
    if p.is_dir():
        if (p / "knobcurves.yaml").is_file() and not (p / _MANIFEST_ROWS).is_dir():
            raise UserError(f"{p}: {CURVES_NOT_EXPORTABLE}")
        for name, kind in (("knobmap.yaml", "knobmap"), ("knobtable.yaml", "knobtable"), ("ckpt.yaml", "fit")):
            if (p / name).is_file():
                return kind, p / name
        if (p / _MANIFEST_ROWS).is_dir():
            return "knobtable", p
        raise UserError(f"{p}: folder holds neither knobmap.yaml (a chain), knobtable.yaml or rows/ "
                        "(a manifest fit) nor ckpt.yaml (a one-pair fit)")
    if zipfile.is_zipfile(p):
        return "neural", p
    data = _read_yaml(p)
    if isinstance(data, dict) and data.get("kind") == "knobcurves":
        raise UserError(f"{p}: {CURVES_NOT_EXPORTABLE}")
    if isinstance(data, dict) and data.get("kind") in ("knobmap", "knobtable"):
        return data["kind"], p
    if isinstance(data, dict) and "modes" in data and "params" not in data:
        return "knobmap", p   # the first knob maps had no kind
    if isinstance(data, dict) and "params" in data:
        return "fit", p
    raise UserError(f"{p}: neither a compressor checkpoint nor a knob map ({SOURCE_HELP})")


def _read_yaml(p: Path):
    try:
        return yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        raise UserError(f"{p}: not a readable checkpoint or knob map ({SOURCE_HELP})") from None


def compressor_of(path: Path, record: dict, params_list, allowed: tuple[str, ...] = ("ff5", "graybox")) -> str:
    """The compressor kind of ``record`` (``ff5`` or ``graybox``); UserError for one the modules cannot hold.

    A record names its kind (``compressor: graybox``) or shows it by its parameters (all
    of the gray-box blocks'); parameters beyond its kind's, or a kind outside
    ``allowed``, are refused rather than dropped.
    """
    names = set(PARAM_NAMES)
    keys = {k for params in params_list if isinstance(params, dict) for k in params}
    kind = str(record.get("compressor") or "") if isinstance(record, dict) else ""
    if not kind:
        kind = "graybox" if params_list and all(isinstance(p, dict) and set(BLOCK_NAMES) <= set(p)
                                                for p in params_list) else "ff5"
    if kind == "graybox":
        names |= set(BLOCK_NAMES)
    extra = sorted(keys - names)
    lacking = sorted({k for p in params_list if isinstance(p, dict) for k in names if k not in p})
    if kind in allowed and lacking:
        raise UserError(f"{path}: a {kind} fit lacks {', '.join(lacking[:4])}{', ...' if len(lacking) > 4 else ''}")
    if kind not in allowed:
        more = f" (it holds {', '.join(sorted(keys - set(PARAM_NAMES))[:4])})" if keys - set(PARAM_NAMES) else ""
        raise UserError(f"{path}: a fit of the {kind} compressor cannot be exported here; this source converts "
                        f"the {' or '.join(allowed)} compressor only{more}")
    if extra:
        raise UserError(f"{path}: parameters {', '.join(extra[:4])}{', ...' if len(extra) > 4 else ''} are not "
                        f"the {kind} compressor's; export would drop them")
    return kind


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


# --- per kind ---------------------------------------------------------------------------
def _fit(path: Path, sample_rate: int | None) -> Exportable:
    from deploy.compressor import FixedCompressor
    from deploy.graybox import FixedGraybox
    from dsp.storage.records import load_checkpoint
    from dsp.models.classes import renderer_for
    raw = _read_yaml(path)
    if isinstance(raw, dict):
        compressor_of(path, raw, [raw.get("params")])
    record = load_checkpoint(path)
    params = record["params"]
    sr = int(sample_rate or record["sample_rate"])
    graybox = record["compressor"] == "graybox"
    module = (FixedGraybox if graybox else FixedCompressor)(params, sr)
    desc = f"one-pair {record['compressor']} fit: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items())
    return Exportable("fit", path, module, sr, "forward(x)", desc, [None],
                      lambda setting: (), lambda setting: renderer_for(params, sr).process, True)


def _knobmap(path: Path, sample_rate: int | None) -> Exportable:
    from deploy.compressor import KnobMapCompressor
    from deploy.graybox import KnobMapGraybox
    from dsp.models.classes import renderer_for
    from dsp.knobs.knobmap import KnobMap
    raw = _read_yaml(path)
    if isinstance(raw, dict) and isinstance(raw.get("modes"), dict):
        compressor_of(path, raw, [p for lv in raw["modes"].values() if isinstance(lv, dict) for p in lv.values()])
    kmap = KnobMap.load(path)
    unknown = [m for m in kmap.modes if m not in MODES]
    if unknown:
        raise UserError(f"{path}: mode {unknown[0]!r} has no place on the exported mode knob (compress, limit)")
    sr = int(sample_rate or 44100)
    settings = [la2a_setting(m, pr) for m in kmap.modes for pr in check_levels(kmap.levels(m))]
    desc = (f"{kmap.compressor} knob map: "
            + "; ".join(f"{m} PR {min(kmap.levels(m))}..{max(kmap.levels(m))}" for m in kmap.modes))
    module = (KnobMapGraybox if kmap.compressor == "graybox" else KnobMapCompressor)(kmap.table, sr)
    return Exportable("knobmap", path, module, sr, LA2A_SIGNATURE, desc, settings,
                      _la2a_args, lambda s: renderer_for(kmap.at(s), sr).process, True, tuple(kmap.knobs))


def _manifest_fits(folder: Path):
    """The knob table of a manifest fit folder: every ``rows/*/ckpt.yaml`` (take order)."""
    from dsp.storage.records import load_checkpoint
    from dsp.knobs.knobtable import KnobTable
    files = sorted((folder / _MANIFEST_ROWS).glob("*/ckpt.yaml"))
    if not files:
        raise UserError(f"{folder}: no fits in {folder / _MANIFEST_ROWS} (run train_comp.py data=manifest first)")
    knobs, settings = None, []
    for f in files:
        raw = _read_yaml(f)
        if isinstance(raw, dict):
            compressor_of(f, raw, [raw.get("params")], allowed=("ff5",))
        record = load_checkpoint(f)
        values = record.get("knobs")
        if not isinstance(values, dict) or not values:
            raise UserError(f"{f}: a manifest take's fit without its knobs")
        if knobs is None:
            knobs = list(values)
        elif set(values) != set(knobs):
            raise UserError(f"{f}: knobs {', '.join(values)} differ from {', '.join(knobs)} of {files[0]}")
        settings.append(({k: float(values[k]) for k in knobs}, record["params"]))
    return KnobTable(knobs, settings)


def _load_knobtable(path: Path):
    from dsp.knobs.knobtable import KnobTable
    from dsp.knobs.parammap import load_param_map
    if path.is_dir():
        return _manifest_fits(path)
    raw = _read_yaml(path)
    if isinstance(raw, dict) and isinstance(raw.get("settings"), list):
        compressor_of(path, raw, [s.get("params") for s in raw["settings"] if isinstance(s, dict)], allowed=("ff5",))
    table = load_param_map(path)
    if not isinstance(table, KnobTable):
        raise UserError(f"{path}: is a {table.kind}, expected a knob table")
    return table


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


def _knobtable(path: Path, sample_rate: int | None) -> Exportable:
    from dsp.models.ff5_streaming import StreamingCompressor
    table = _load_knobtable(path)
    sr = int(sample_rate or 44100)
    knobs = tuple(table.knobs)
    desc = (f"knob table: {len(table.settings())} fitted settings of the knobs {', '.join(knobs)} "
            "(nearest fitted setting)")
    signature = f"forward(x, knobs)  # knobs: [{', '.join(knobs)}]"
    return Exportable("knobtable", path, knob_table_module(table, sr), sr, signature, desc,
                      table_check_settings(table), lambda s: ([float(s[k]) for k in knobs],),
                      lambda s: StreamingCompressor(table.at(s), sr).process, True, knobs)


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


_BUILDERS = {"fit": _fit, "knobmap": _knobmap, "knobtable": _knobtable, "neural": _neural}


def build(kind: str, path: Path, sample_rate: int | None = None) -> Exportable:
    """The :class:`Exportable` of a resolved source (:func:`resolve_source`).

    Args:
        sample_rate: the rate a DSP module starts at (default: the fit's, or 44100 for a
            map); a neural model runs at its training rate only.

    Raises:
        UserError: a bad source, or a model this exporter does not convert.
    """
    return _BUILDERS[kind](path, sample_rate)
