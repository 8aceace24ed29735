"""The one way to open a fit: any file or folder a fit job writes, as one :class:`FittedModel`.

What opens (:func:`open_fit`), by form:

- ``pair``: a one-pair fit, its ``ckpt.yaml`` or the folder holding it;
- ``knobmap``: an LA-2A chain or joint fit, the folder holding ``knobmap.yaml`` or that
  file (a joint fit's knob map holds its curves sampled at every level);
- ``knobtable``: a manifest device's per-take fits, the folder holding ``rows/*/ckpt.yaml``,
  or a ``knobtable.yaml``;
- ``knobcurves``: a manifest device's joint fit, the folder holding ``knobcurves.yaml`` or
  that file.

Every record names its model class (``compressor``, :mod:`dsp.models.classes`); a record
that names none, an unknown one, or lacks a parameter its class needs is refused with a
:class:`common.errors.UserError` naming the file. The object answers a setting's
parameters (:meth:`FittedModel.at`), checks a setting (:meth:`FittedModel.check`: the one
out-of-range policy), renders offline and block by block, describes itself and says how it
exports (:meth:`FittedModel.export_form`). ``test_comp.py``, ``export.py``, ``compare.py``,
the trainings, TensorBoard logging and the ``leveller`` API all open fits here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from audio.devices import Device
from common.errors import UserError
from dsp.knobs.knobcurves import KnobCurves
from dsp.knobs.knobmap import KnobMap
from dsp.knobs.knobtable import KnobTable
from dsp.knobs.parammap import ParamMap, check_param_map
from dsp.models.classes import ModelClass, ModelParams, model_class, record_class
from dsp.storage.records import load_checkpoint

__all__ = ["FittedModel", "ExportForm", "exports", "FORMS", "FIT_HELP", "MANIFEST_ROWS", "open_fit", "param_map_from_record",
           "load_param_map"]

FORMS = ("pair", "knobmap", "knobtable", "knobcurves")
PAIR_FILE = "ckpt.yaml"
MANIFEST_ROWS = "rows"   # dsp.storage.take_fits.take_dir: DSP_DIR/rows/<index>_<label>/ckpt.yaml
# the map files a fit folder may hold, in the order a folder is read
MAP_FILES = {"knobmap.yaml": "knobmap", "knobcurves.yaml": "knobcurves", "knobtable.yaml": "knobtable"}
FIT_HELP = ("a ckpt.yaml or the folder of a one-pair fit, a chain or joint fit folder (knobmap.yaml), a manifest "
            "fit folder (rows/ or knobcurves.yaml), or one of those files")
_MAP_CLASSES: dict[str, type[ParamMap]] = {"knobmap": KnobMap, "knobtable": KnobTable, "knobcurves": KnobCurves}
# how each form's exported module is called (deploy/build.py builds it)
_SIGNATURES = {"pair": "forward(x)", "knobmap": "forward(x, peak_reduction, mode)  # mode 0 compress, 1 limit",
               "knobtable": "forward(x, knobs)", "knobcurves": "forward(x, knobs)"}
_EXPORTS = {"ff5": set(FORMS), "graybox": {"pair", "knobmap"}, "opto": {"pair", "knobmap"}}   # class -> forms export can build


def exports(model_class: str, form: str) -> bool:
    """Whether ``export.py`` builds a ``form`` fit of class ``model_class`` (and so a hybrid on it)."""
    return form in _EXPORTS.get(model_class, set())


@dataclass(frozen=True)
class ExportForm:
    """How a fit exports: whether it can, the exported module's call, and why not."""
    exportable: bool
    signature: str
    reason: str = ""


@dataclass
class FittedModel:
    """A fit opened from disk (:func:`open_fit`).

    Attributes:
        path: the file it was read from (a manifest fit: its folder).
        form: one of :data:`FORMS`.
        param_map: the parameters over the device's settings; None for a one-pair fit.
        record: a one-pair fit's record (``ckpt.yaml``); None otherwise.
    """
    path: Path
    form: str
    param_map: ParamMap | None = None
    record: dict | None = None

    @property
    def model_class(self) -> ModelClass:
        return model_class(self.record["compressor"]) if self.param_map is None else self.param_map.model_class

    @property
    def device(self) -> Device | None:
        """The device whose settings it answers; None for a one-pair fit (no knobs)."""
        return None if self.param_map is None else self.param_map.device

    @property
    def knobs(self) -> tuple[str, ...]:
        return () if self.device is None else tuple(self.device.knobs)

    @property
    def sample_rate(self) -> int | None:
        """The rate of the fitting audio (a one-pair fit); None for a map (any rate)."""
        return None if self.record is None else int(self.record["sample_rate"])

    @property
    def protocol(self) -> dict | None:
        return getattr(self.param_map, "protocol", None)

    def check(self, setting: dict | None = None) -> dict | None:
        """The setting, checked: a one-pair fit takes none; a map a setting of its device
        within what was fitted (the error names the nearest fitted setting).

        Raises:
            UserError: naming the fit.
        """
        if self.param_map is None:
            if setting:
                raise UserError(f"{self.path}: a one-pair fit has fixed parameters; give no setting "
                                f"(got {dict(setting)})")
            return None
        if setting is None:
            raise UserError(f"{self.path}: a {self.describe_form()} needs a setting "
                            f"({', '.join(self.knobs)})")
        if not isinstance(setting, dict):
            raise UserError(f"{self.path}: a setting is a knob dict ({', '.join(self.knobs)}), got {setting!r}")
        try:
            self.device.check(setting)
        except UserError as exc:
            raise UserError(f"{self.path}: {exc}") from None
        self.param_map.check_fitted(setting, str(self.path))
        return dict(setting)

    def at(self, setting: dict | None = None) -> ModelParams:
        """The model's physical parameters at ``setting`` (checked first)."""
        setting = self.check(setting)
        if self.param_map is None:
            return self.record["params"]
        return self.param_map.at(setting)

    def at_without(self, setting: dict) -> ModelParams:
        """The parameters at ``setting`` as if it had not been fitted (leave-one-out)."""
        return self.param_map.at_without(self.check(setting))

    def processor(self, sample_rate: int, setting: dict | None = None):
        """A stateful block renderer (``.process((channels, n)) -> (channels, n)``) at ``setting``."""
        params = self.at(setting)
        try:
            return self.model_class.processor(params, sample_rate)
        except ValueError as exc:
            raise UserError(f"{self.path}: {exc}") from None

    def render(self, x: np.ndarray, sample_rate: int, setting: dict | None = None,
               block: int = 1 << 18) -> np.ndarray:
        """``x`` (``(samples,)`` or ``(channels, samples)``, finite) through the model at ``setting``."""
        x = np.asarray(x)
        if x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.number):
            raise UserError(f"audio must be a numeric (samples,) or (channels, samples) array, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise UserError("audio holds NaN or infinite samples")
        proc = self.processor(sample_rate, setting)
        x2 = np.atleast_2d(x)
        parts = [proc.process(x2[:, i:i + block]) for i in range(0, x2.shape[1], block)] or [x2[:, :0]]
        out = np.concatenate(parts, axis=1)
        return out[0] if x.ndim == 1 else out

    def describe_form(self) -> str:
        return {"pair": "one-pair fit", "knobmap": "knob map", "knobtable": "knob table",
                "knobcurves": "set of knob curves"}[self.form]

    def describe(self) -> str:
        """One line for people: class, form and what it covers."""
        head = f"{self.model_class.name} {self.describe_form()} ({self.path})"
        if self.param_map is None:
            return head + ": " + ", ".join(f"{k} {v:.4g}" for k, v in self.record["params"].items())
        pm = self.param_map
        if isinstance(pm, KnobMap):
            ranges = "; ".join(f"{m} PR {min(pm.levels(m))}..{max(pm.levels(m))}" for m in pm.modes)
            held = (pm.protocol or {}).get("held_out")
            return head + f": {ranges}" + (f"; held out {held}" if held else "")
        return head + f": {len(pm.settings())} fitted settings of the knobs {', '.join(pm.knobs)}"

    def export_form(self) -> ExportForm:
        """Whether ``export.py`` converts this fit, and how the exported module is called."""
        signature = _SIGNATURES[self.form]
        if self.form in ("knobtable", "knobcurves"):
            signature += f"  # knobs: [{', '.join(self.knobs)}]"
        if not exports(self.model_class.name, self.form):
            name = self.model_class.name
            return ExportForm(False, signature, f"{'an' if name[0] in 'aeiou' else 'a'} {name} {self.describe_form()} "
                                                f"has no exported form yet")
        return ExportForm(True, signature)


def open_fit(path: str | Path) -> FittedModel:
    """Open any fit (see the module doc).

    Raises:
        UserError: a missing or unreadable fit, a record of no or an unknown model class,
            a parameter missing or out of range.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: not found (expected {FIT_HELP})")
    if p.is_dir():
        for name, form in MAP_FILES.items():
            if (p / name).is_file():
                return FittedModel(p / name, form, param_map=load_param_map(p / name, form))
        if (p / MANIFEST_ROWS).is_dir():
            return FittedModel(p, "knobtable", param_map=_manifest_rows(p))
        if (p / PAIR_FILE).is_file():
            return FittedModel(p / PAIR_FILE, "pair", record=load_checkpoint(p / PAIR_FILE))
        raise UserError(f"{p}: fit not found in the folder (expected {FIT_HELP})")
    record = _read_yaml(p)
    if isinstance(record, dict) and "params" in record:
        return FittedModel(p, "pair", record=load_checkpoint(p))
    return FittedModel(p, _form_of(p, record), param_map=load_param_map(p))


def _read_yaml(p: Path):
    if not p.is_file():
        raise UserError(f"{p}: fit not found (expected {FIT_HELP})")
    try:
        return yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        raise UserError(f"{p}: not a readable YAML fit (expected {FIT_HELP})") from None


def _form_of(p: Path, record) -> str:
    if not isinstance(record, dict):
        raise UserError(f"{p}: not a fit (expected {FIT_HELP})")
    form = record.get("kind", "knobmap" if "modes" in record else None)   # the first knob maps had no kind
    if form not in _MAP_CLASSES:
        raise UserError(f"{p}: not a fit (kind {form!r}; expected {FIT_HELP})")
    return form


def param_map_from_record(record: dict, where: str = "parameter map") -> ParamMap:
    """The map a :meth:`dsp.knobs.parammap.ParamMap.to_record` dict describes, checked.

    Raises:
        UserError: naming ``where``: an unknown form or class, a missing or bad entry.
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: not a parameter map")
    form = record.get("kind", "knobmap" if "modes" in record else None)
    if form not in _MAP_CLASSES:
        raise UserError(f"{where}: not a parameter map (kind {form!r})")
    try:
        cls = record_class(record, where)
        for label, params in _entries(form, record):
            cls.check(params, f"{where}: {label}")
        pm = _MAP_CLASSES[form].from_record(record)
    except UserError:
        raise
    except ValueError as exc:
        raise UserError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{where}: not a valid {form} ({type(exc).__name__}: {exc})") from None
    if not pm.settings():
        raise UserError(f"{where}: holds no fitted setting")
    check_param_map(pm, where)
    return pm


def _entries(form: str, record: dict):
    """(label, parameter dict) of every stored entry of a map record (a curve record has none)."""
    if form == "knobmap":
        return [(f"{m} PR {pr}", params) for m, lv in record["modes"].items() for pr, params in lv.items()]
    if form == "knobtable":
        return [(f"setting {i + 1}", s["params"]) for i, s in enumerate(record["settings"])]
    return []


def load_param_map(path: str | Path, form: str | None = None) -> ParamMap:
    """Read a map file (``knobmap.yaml``, ``knobtable.yaml``, ``knobcurves.yaml``), checked."""
    p = Path(path)
    record = _read_yaml(p)
    found = _form_of(p, record)
    if form is not None and found != form:
        raise UserError(f"{p}: is a {found}, expected a {form}")
    return param_map_from_record(record, str(p))


def _manifest_rows(folder: Path) -> KnobTable:
    """The knob table of a manifest fit folder: every ``rows/*/ckpt.yaml`` (take order)."""
    files = sorted((folder / MANIFEST_ROWS).glob(f"*/{PAIR_FILE}"))
    if not files:
        raise UserError(f"{folder}: no fits in {folder / MANIFEST_ROWS} (run train_comp.py data=manifest first)")
    knobs, settings, classes = None, [], set()
    for f in files:
        record = load_checkpoint(f)
        values = record.get("knobs")
        if not isinstance(values, dict) or not values:
            raise UserError(f"{f}: a manifest take's fit without its knobs")
        if knobs is None:
            knobs = list(values)
        elif set(values) != set(knobs):
            raise UserError(f"{f}: knobs {', '.join(values)} differ from {', '.join(knobs)} of {files[0]}")
        classes.add(record["compressor"])
        settings.append(({k: float(values[k]) for k in knobs}, record["params"]))
    if len(classes) > 1:
        raise UserError(f"{folder}: the takes' fits mix model classes ({', '.join(sorted(classes))})")
    return KnobTable(knobs, settings, compressor=classes.pop())
