"""Export a fit, a knob map or a neural run as one TorchScript file (the job behind ``export.py``).

:func:`export_model` finds what SOURCE is, builds the streaming module
(:mod:`deploy.compressor`, :mod:`deploy.neural`), scripts it, saves it beside OUT under a
temporary name, loads that file back and checks it against the project's Python renderer
(:class:`dsp.render.BlockCompressor`, :class:`neural.inference.NeuralRenderer`) on a short
test signal in odd-sized blocks, and only then moves it onto OUT. A module that fails
the check is never written.

SOURCE is one of:

- a one-pair fit: its ``ckpt.yaml`` or the folder holding it -> ``forward(x)``;
- a chain: its folder holding ``knobmap.yaml``, or that file -> ``forward(x, peak_reduction, mode)``;
- a neural run's checkpoint (``best.pt``) -> ``forward(x, peak_reduction, mode)``.
"""
from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from common.atomic import atomic_path
from common.errors import UserError

__all__ = ["TOLERANCE", "ExportResult", "resolve_source", "build_module", "export_model", "export_neutone",
           "check_signal", "stream"]

TOLERANCE = 1e-4        # largest difference allowed from the Python renderer
CHECK_BLOCKS = (257, 1000, 4096)
CHECK_SECONDS = 0.3
_SOURCE_HELP = "expected a ckpt.yaml, a chain folder holding knobmap.yaml, or a neural checkpoint (.pt)"


@dataclass
class ExportResult:
    """What was written and how it was checked."""
    kind: str                      # fit | knobmap | neural
    source: Path                   # the file the module was built from
    out: Path
    signature: str                 # how to call the module
    sample_rate: int
    description: str
    max_error: float               # largest |exported - Python renderer| over the check
    seconds: float
    bytes: int = 0
    settings_checked: list = field(default_factory=list)


def resolve_source(source: str | Path) -> tuple[str, Path]:
    """``(kind, file)`` for SOURCE: kind is ``fit``, ``knobmap`` or ``neural``."""
    p = Path(source)
    if not p.exists():
        raise UserError(f"{p}: not found ({_SOURCE_HELP})")
    if p.is_dir():
        if (p / "knobmap.yaml").is_file():
            return "knobmap", p / "knobmap.yaml"
        if (p / "ckpt.yaml").is_file():
            return "fit", p / "ckpt.yaml"
        raise UserError(f"{p}: folder holds neither knobmap.yaml (a chain) nor ckpt.yaml (a one-pair fit)")
    if zipfile.is_zipfile(p):
        return "neural", p
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        raise UserError(f"{p}: not a readable checkpoint or knob map ({_SOURCE_HELP})") from None
    if isinstance(data, dict) and data.get("kind") == "knobmap":
        return "knobmap", p
    if isinstance(data, dict) and "params" in data:
        return "fit", p
    raise UserError(f"{p}: neither a compressor checkpoint nor a knob map ({_SOURCE_HELP})")


# --- the module and its Python reference, per kind -----------------------------------
# a reference is make_reference(mode, peak_reduction) -> block callable on (C, n) float32

def _fit(path: Path, sample_rate: int | None):
    from deploy.compressor import FixedCompressor
    from dsp.checkpoint import load_checkpoint
    from dsp.render import BlockCompressor
    record = load_checkpoint(path)
    if record.get("compressor", "ff5") != "ff5":  # graybox: no TorchScript module yet
        raise UserError(f"{path}: a {record['compressor']} fit cannot be exported yet (compressor=ff5 only)")
    params = record["params"]
    sr = int(sample_rate or record["sample_rate"])
    module = FixedCompressor(params, sr)
    desc = "one-pair fit: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items())
    return module, sr, "forward(x)", desc, [None], lambda setting: BlockCompressor(params, sr).process


def _knobmap(path: Path, sample_rate: int | None):
    from deploy.compressor import KnobMapCompressor
    from dsp.knobmap import KnobMap
    from dsp.render import BlockCompressor
    kmap = KnobMap.load(path)
    if kmap.compressor != "ff5":  # graybox: no TorchScript module yet
        raise UserError(f"{path}: a {kmap.compressor} knob map cannot be exported yet (compressor=ff5 only)")
    unknown = [m for m in kmap.modes if m not in ("compress", "limit")]
    if unknown:
        raise UserError(f"{path}: mode {unknown[0]!r} has no place on the exported mode knob (compress, limit)")
    sr = int(sample_rate or 44100)
    module = KnobMapCompressor(kmap.table, sr)
    settings = [(m, pr) for m in kmap.modes for pr in _check_levels(kmap.levels(m))]
    desc = "knob map: " + "; ".join(f"{m} PR {min(kmap.levels(m))}..{max(kmap.levels(m))}" for m in kmap.modes)
    return (module, sr, "forward(x, peak_reduction, mode)  # mode 0 compress, 1 limit", desc, settings,
            lambda s: BlockCompressor(kmap.at(s[0], s[1]), sr).process)


def _neural(path: Path, sample_rate: int | None):
    from deploy.neural import neural_module
    from neural.checkpoint import load_checkpoint
    from neural.inference import NeuralRenderer
    record, model = load_checkpoint(path)
    sr = int(record["sample_rate"])
    if sample_rate is not None and int(sample_rate) != sr:
        raise UserError(f"{path}: the neural model runs at {sr} Hz only, not {int(sample_rate)} Hz")
    module = neural_module(record, model, str(path))
    renderer = NeuralRenderer(record, model, str(path))
    modes = renderer.knobmap.modes if renderer.uses_dsp else ["compress", "limit"]
    levels = [pr for m in modes for pr in renderer.knobmap.levels(m)] if renderer.knobmap.table else [40, 100]
    settings = [(m, pr) for m in modes for pr in _check_levels(levels)]
    desc = f"{renderer.name} ({renderer.head}, {renderer.num_parameters} parameters)"
    return (module, sr, "forward(x, peak_reduction, mode)  # mode 0 compress, 1 limit", desc, settings,
            lambda s: renderer.block_processor(sr, s[0], s[1]))


_BUILDERS = {"fit": _fit, "knobmap": _knobmap, "neural": _neural}


def _check_levels(levels) -> list[float]:
    """Settings to check: the ends, a point between fitted levels, and one outside the range (within 0..100)."""
    lo, hi = float(min(levels)), float(max(levels))
    points = {lo, hi, lo + 0.37 * (hi - lo)}
    if lo > 0:
        points.add(0.0)
    elif hi < 100:
        points.add(100.0)
    return sorted(points)


def build_module(kind: str, path: Path, sample_rate: int | None = None):
    """``(module, sample_rate, signature, description, settings, make_reference)`` for a source."""
    return _BUILDERS[kind](path, sample_rate)


def check_signal(seconds: float, sample_rate: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Test signal: noise bursts with loud and quiet passages, ``(channels, n)`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    env = 0.02 + 0.8 * (np.sin(2 * np.pi * 4 * t) > 0.3) + 0.2 * (np.sin(2 * np.pi * 0.7 * t) > 0)
    return (env * rng.standard_normal((channels, n)) * 0.4).astype(np.float32)


def stream(call: Callable[[np.ndarray], np.ndarray], x: np.ndarray, block: int) -> np.ndarray:
    """Run ``call`` over ``x`` in blocks of ``block`` samples and join the outputs."""
    return np.concatenate([np.asarray(call(x[:, i:i + block])) for i in range(0, x.shape[1], block)], axis=1)


def _scripted_call(module, setting):
    if setting is None:
        return lambda b: module(torch.from_numpy(np.ascontiguousarray(b))).numpy()
    mode = {"compress": 0.0, "limit": 1.0}[setting[0]]
    return lambda b: module(torch.from_numpy(np.ascontiguousarray(b)), float(setting[1]), mode).numpy()


def _verify(module, settings, make_reference, sample_rate: int) -> float:
    """Largest difference from the Python renderer over the settings and check blocks."""
    x = check_signal(CHECK_SECONDS, sample_rate)
    worst = 0.0
    for i, setting in enumerate(settings):
        block = CHECK_BLOCKS[i % len(CHECK_BLOCKS)]
        module.reset()
        y = stream(_scripted_call(module, setting), x, block)
        ref = stream(make_reference(setting), x, 4096)
        worst = max(worst, float(np.max(np.abs(y - ref))))
    module.reset()
    return worst


def _check_out(out: Path, source: Path, source_arg: Path) -> None:
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the file to write (e.g. {out / 'model.pt'})")
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if out.exists() and (out.resolve() == source.resolve() or out.resolve() == source_arg.resolve()):
        raise UserError(f"{out}: is the source itself; choose another output file")


def export_model(source: str | Path, out: str | Path, sample_rate: int | None = None) -> ExportResult:
    """Write SOURCE as one TorchScript file at OUT, checked against the Python renderer.

    Args:
        source: a ckpt.yaml (or its folder), a chain folder / knobmap.yaml, or a neural ``.pt``.
        out: the file to write (replaced atomically; never half-written).
        sample_rate: the rate the DSP module starts at (default: the fit's rate, or 44100
            for a knob map; ``set_sample_rate`` changes it later). A neural model runs at
            its training rate only.

    Raises:
        UserError: a missing or unreadable source, a bad OUT, a model that cannot be exported.
    """
    start = time.perf_counter()
    kind, path = resolve_source(source)
    out = Path(out)
    _check_out(out, path, Path(source))
    if sample_rate is not None and int(sample_rate) <= 0:
        raise UserError(f"sample rate {sample_rate} must be positive")
    module, sr, signature, desc, settings, make_reference = build_module(kind, path, sample_rate)
    scripted = torch.jit.script(module)
    meta = {"kind": kind, "source": str(path), "signature": signature, "sample_rate": sr, "description": desc,
            "torch": torch.__version__}
    with atomic_path(out) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"export.json": json.dumps(meta)})
        loaded = torch.jit.load(str(tmp))
        with torch.no_grad():
            worst = _verify(loaded, settings, make_reference, sr)
        if not worst <= TOLERANCE:
            raise RuntimeError(f"the exported module differs from the Python renderer by {worst:.3g} "
                               f"(allowed {TOLERANCE:g}); nothing written")
        size = tmp.stat().st_size
    return ExportResult(kind=kind, source=path, out=out, signature=signature, sample_rate=sr, description=desc,
                        max_error=worst, seconds=time.perf_counter() - start, bytes=size,
                        settings_checked=[s for s in settings if s is not None])


def export_neutone(source: str | Path, out_dir: str | Path, submission: bool = True) -> ExportResult:
    """Write SOURCE as a Neutone FX model folder (``model.nm``, ``metadata.json``), validated by the SDK.

    Runs only where ``neutone_sdk`` imports (``docs/NEUTONE.md``). The folder is built
    beside OUT under a temporary name and moved there when the SDK's checks pass.

    Raises:
        UserError: the SDK is missing, a bad source, OUT exists and is not an empty folder.
    """
    import os
    import shutil
    import tempfile
    start = time.perf_counter()
    kind, path = resolve_source(source)
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UserError(f"{out}: already exists; the Neutone model is written to a new (or empty) folder")
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    try:
        from deploy.neutone import save_neutone
    except ImportError as exc:
        raise UserError(f"--neutone needs neutone-sdk, which this environment lacks ({exc}); "
                        "see docs/NEUTONE.md for its own environment") from None
    from deploy.compressor import KnobMapCompressor
    module, sr, _, desc, _, _ = build_module(kind, path, None)
    has_knobs = kind != "fit"
    if kind == "fit":  # no knobs: a knob map of one level holds the same parameters at every setting
        params = dict(zip(("threshold_db", "ratio", "attack_ms", "release_ms", "make_up_db"), module.params))
        module = KnobMapCompressor({"compress": {0: params}, "limit": {0: params}}, sr)
    rates = [sr] if kind == "neural" else [44100, 48000, 88200, 96000]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save_neutone(module, tmp, "LA-2A match", desc, has_knobs, rates, kind != "neural", submission)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = (out / "model.nm").stat().st_size
    return ExportResult(kind=kind, source=path, out=out / "model.nm",
                        signature="Neutone FX: knobs peak_reduction (0..1 -> PR 0..100), mode (< 0.5 compress)",
                        sample_rate=sr, description=desc, max_error=float("nan"),
                        seconds=time.perf_counter() - start, bytes=size)
