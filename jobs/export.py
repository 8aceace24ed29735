"""The job of ``export.py``: one TorchScript file (or a Neutone FX model) from a fit, a map or a run.

:func:`export_model` builds the streaming module (:func:`deploy.build.build`), scripts
it, saves it beside OUT under a temporary name, loads that file back and checks it
against the project's Python renderer (:func:`deploy.verify.max_difference`), and only
then moves it onto OUT: a module that fails the check is never written.
:func:`export_neutone` wraps the same module for the Neutone FX plug-in
(:mod:`deploy.neutone`, in the SDK's own environment). :func:`run_export` is the whole
job behind the entry script, report included.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.atomic import atomic_path, temporary_folder
from common.errors import UserError
from deploy.build import build, resolve_source
from deploy.verify import TOLERANCE, max_difference

__all__ = ["ExportResult", "export_model", "export_neutone", "fit_as_knob_map", "run_export"]

NEUTONE_RATES = [44100, 48000, 88200, 96000]   # a DSP model follows the host; these it lists as native


@dataclass
class ExportResult:
    """What was written and how it was checked."""
    kind: str                      # fit | knobmap | knobtable | knobcurves | neural
    source: Path                   # the file the module was built from
    out: Path
    signature: str                 # how to call the module
    sample_rate: int
    description: str
    max_error: float               # largest |exported - Python renderer| over the check
    seconds: float
    bytes: int = 0
    settings_checked: list = field(default_factory=list)
    knobs: tuple = ()


def _check_out(out: Path, source: Path, source_arg: Path) -> None:
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the file to write (e.g. {out / 'model.pt'})")
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if out.exists() and (out.resolve() == source.resolve() or out.resolve() == source_arg.resolve()):
        raise UserError(f"{out}: is the source itself; choose another output file")


def export_model(source: str | Path, out: str | Path, sample_rate: int | None = None) -> ExportResult:
    """Write SOURCE (:mod:`deploy.build`) as one TorchScript file at OUT, checked against the Python renderer.

    Args:
        source: a ckpt.yaml (or its folder), a chain folder / knobmap.yaml, a knobtable.yaml
            or manifest fit folder, or a neural ``.pt``.
        out: the file to write (replaced atomically; never half-written).
        sample_rate: the rate a DSP module starts at (default: the fit's rate, or 44100
            for a map; ``set_sample_rate`` changes it later). A neural model runs at its
            training rate only.

    Raises:
        UserError: a missing or unreadable source, a bad OUT, a model that cannot be exported.
        RuntimeError: the exported module differs from the renderer by more than
            :data:`deploy.verify.TOLERANCE` (nothing written).
    """
    start = time.perf_counter()
    kind, path, fit = resolve_source(source)
    out = Path(out)
    _check_out(out, path, Path(source))
    if sample_rate is not None and int(sample_rate) <= 0:
        raise UserError(f"sample rate {sample_rate} must be positive")
    ex = build(kind, path, fit, sample_rate)
    scripted = torch.jit.script(ex.module)
    meta = {"kind": kind, "source": str(path), "signature": ex.signature, "sample_rate": ex.sample_rate,
            "description": ex.description, "knobs": list(ex.knobs), "torch": torch.__version__}
    with atomic_path(out) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"export.json": json.dumps(meta)})
        worst = max_difference(torch.jit.load(str(tmp)), ex)
        if not worst <= TOLERANCE:
            raise RuntimeError(f"the exported module differs from the Python renderer by {worst:.3g} "
                               f"(allowed {TOLERANCE:g}); nothing written")
        size = tmp.stat().st_size
    return ExportResult(kind=kind, source=path, out=out, signature=ex.signature, sample_rate=ex.sample_rate,
                        description=ex.description, max_error=worst, seconds=time.perf_counter() - start,
                        bytes=size, settings_checked=[s for s in ex.settings if s is not None], knobs=ex.knobs)


def export_neutone(source: str | Path, out_dir: str | Path, submission: bool = True) -> ExportResult:
    """Write SOURCE as a Neutone FX model folder (``model.nm``, ``metadata.json``), validated by the SDK.

    Runs only where ``neutone_sdk`` imports (``docs/NEUTONE.md``). The folder is built
    beside OUT under a temporary name and moved there when the SDK's checks pass. The
    plug-in's knobs are the LA-2A's (peak reduction, mode): a knob table is refused.

    Raises:
        UserError: the SDK is missing, a bad source, OUT exists and is not an empty folder.
    """
    start = time.perf_counter()
    kind, path, fit = resolve_source(source)
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UserError(f"{out}: already exists; the Neutone model is written to a new (or empty) folder")
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if kind in ("knobtable", "knobcurves"):
        raise UserError(f"{path}: a device with its own knobs has no Neutone form yet; the "
                        "Neutone model's knobs are the LA-2A's peak reduction and mode")
    try:
        from deploy.neutone import save_neutone
    except ImportError as exc:
        raise UserError(f"--neutone needs neutone-sdk, which this environment lacks ({exc}); "
                        "see docs/NEUTONE.md for its own environment") from None
    ex = build(kind, path, fit, None)
    module = fit_as_knob_map(ex.module, ex.sample_rate) if kind == "fit" else ex.module
    rates = NEUTONE_RATES if ex.follows_rate else [ex.sample_rate]
    with temporary_folder(out) as tmp:
        save_neutone(module, tmp, "LA-2A match", ex.description, kind != "fit", rates, ex.follows_rate, submission)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    size = (out / "model.nm").stat().st_size
    return ExportResult(kind=kind, source=path, out=out / "model.nm",
                        signature="Neutone FX: knobs peak_reduction (0..1 -> PR 0..100), mode (< 0.5 compress)",
                        sample_rate=ex.sample_rate, description=ex.description, max_error=float("nan"),
                        seconds=time.perf_counter() - start, bytes=size, knobs=ex.knobs)


def fit_as_knob_map(module, sample_rate: int):
    """A one-pair fit's module as a knob map of one level (the same parameters at every
    setting), for a host that always passes the knobs (Neutone)."""
    from deploy.compressor import PARAM_ORDER, KnobMapCompressor
    from deploy.graybox import GRAYBOX_ORDER, FixedGraybox, KnobMapGraybox
    graybox = isinstance(module, FixedGraybox)
    params = dict(zip(GRAYBOX_ORDER if graybox else PARAM_ORDER, module.params))
    return (KnobMapGraybox if graybox else KnobMapCompressor)({"compress": {0: params}, "limit": {0: params}},
                                                              sample_rate)


def run_export(source: str, out: str, sample_rate: int | None = None, neutone: bool = False) -> int:
    """The whole job of ``export.py``: export, then print what was written and how it was checked."""
    if neutone:
        if sample_rate is not None:
            raise UserError("--sample-rate does not apply to --neutone (the plug-in passes the host's rate)")
        res = export_neutone(source, out)
        print(f"wrote {res.out} ({res.bytes / 1024:.0f} KiB, {res.seconds:.1f} s): {res.description}")
        knobs = res.signature if res.kind != "fit" else "Neutone FX: no knobs (a one-pair fit)"
        print(f"  {knobs}; passed the SDK's save_neutone_model checks")
        return 0
    res = export_model(source, out, sample_rate)
    extra = "reset()" if res.kind == "neural" else "reset(); set_sample_rate(sr)"
    if res.kind in ("knobtable", "knobcurves"):
        extra += "; knob_names()"
    print(f"wrote {res.out} ({res.bytes / 1024:.0f} KiB, {res.seconds:.1f} s): {res.description}")
    print(f"  call      {res.signature}; {extra}")
    print(f"  rate      {res.sample_rate} Hz")
    print(f"  checked   {max(len(res.settings_checked), 1)} setting(s) against the Python renderer: "
          f"max difference {res.max_error:.2e}")
    return 0
