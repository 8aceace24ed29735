"""The one "make sure the DSP fit exists" that training and comparison share.

A neural hybrid needs the fitted DSP parameters at every setting, and a comparison
scores the DSP fit itself. When ``dsp_dir`` lacks them, the fit job of
``train_comp.py`` runs first (with the same ``data`` config, on Train material, the
unseen levels held out), unless ``fit`` is false. A fit already there must honour the
protocol (:mod:`jobs.protocol`): Train material only, no unseen level fitted; one
that does not is refused with the command that refits it.
"""
from __future__ import annotations

from pathlib import Path

from common.config import load_config
from common.errors import UserError
from dsp.knobs.knobcurves import KnobCurves
from dsp.knobs.knobmap import KnobMap
from dsp.storage.open_fit import load_param_map
from dsp.knobs.knobtable import KnobTable
from dsp.storage.take_fits import load_take_fits, take_fit
from jobs.chain import fit_span_setting
from jobs.joint_fit import MANIFEST_CURVES
from jobs.fit import run_fit_job
from audio.datasets import fit_pair_finder, load_pairs
from jobs.protocol import PROTOCOL_SPLITS, data_key, protocol_problem, takes_data_key

__all__ = ["ensure_dsp_fit"]


def ensure_dsp_fit(data, dsp_dir: str | Path, takes=None, *, fit: bool = True, quiet: bool = False,
                   modes=None, unseen=(), compressor: str = "ff5", report: bool = True
                   ) -> KnobMap | KnobTable | KnobCurves:
    """The fitted parameter map in ``dsp_dir``, fitted first where it is missing.

    Args:
        data: the ``data`` config the fit runs on (what ``train_comp.py data=...`` gets).
        takes: a corpus of takes with their own knobs (manifest rows): the map is their
            :class:`dsp.knobs.knobtable.KnobTable`, fitting the takes without a fit of their
            own, or, where ``dsp_dir`` holds a joint fit of exactly these takes
            (``knobcurves.yaml``), its :class:`dsp.knobs.knobcurves.KnobCurves`; None: the LA-2A
            chain's ``knobmap.yaml``.
        fit: false raises a UserError instead of fitting.
        modes: the chain's modes (default: the config's).
        unseen: the held-out peak reduction levels: a missing chain is fitted without
            them, an existing one must not have been fitted there.
        compressor: the DSP model class (``ff5`` | ``graybox``) to fit with; an existing
            chain of another class is refused.
        report: false: a fit made here writes no ``report.html`` (a fit nobody listens to).

    Returns:
        a :class:`dsp.knobs.parammap.ParamMap`.
    """
    dsp_dir = Path(dsp_dir)
    unseen = sorted({int(v) for v in unseen})
    read = sorted(set(data.get("fit_splits") or []) - set(PROTOCOL_SPLITS))
    if read:
        raise UserError(f"data.fit_splits: the DSP fit of a comparison or a neural training reads Train material "
                        f"only (the protocol), got {list(data.fit_splits)}")
    unseen_arg = f"unseen_levels=[{','.join(map(str, unseen))}]"
    overrides = [f"ckpt_dir={dsp_dir}", f"quiet={bool(quiet)}", unseen_arg, f"compressor={compressor}",
                 f"report.html={bool(report)}"]
    if takes is None:
        path = dsp_dir / "knobmap.yaml"
        missing = not path.is_file()
        command = f"python train_comp.py ckpt_dir={dsp_dir} {unseen_arg}"
        problem, what = f"{path}: no DSP chain", f"no DSP chain in {dsp_dir}: fitting it first"
        if modes is not None:
            overrides.append(f"modes=[{','.join(str(m) for m in modes)}]")
    elif (dsp_dir / MANIFEST_CURVES).is_file():    # a joint fit (method=joint): the curves answer
        return _manifest_curves(dsp_dir / MANIFEST_CURVES, takes)
    else:
        todo = [t for t in takes if take_fit(dsp_dir, t) is None]
        missing = bool(todo)
        command = f"python train_comp.py data=manifest data.path={data.path} ckpt_dir={dsp_dir}"
        problem = f"{dsp_dir}: no DSP fit of manifest line {todo[0].index}" if todo else ""
        what = f"{len(todo)} manifest rows without a DSP fit in {dsp_dir}: fitting them first"
    if missing:
        if not fit:
            raise UserError(f"{problem}; run `{command}` first (or set fit_chain=true)")
        print(f"{what} ({command})")
        _run_fit(overrides, data)
    if takes is not None:
        return load_take_fits(takes, dsp_dir)
    kmap = load_param_map(dsp_dir / "knobmap.yaml", "knobmap")
    if kmap.compressor != compressor:
        raise UserError(f"{dsp_dir / 'knobmap.yaml'}: is a {kmap.compressor} fit, compressor={compressor} "
                        f"was asked (point dsp_dir elsewhere)")
    problem = protocol_problem(kmap.protocol, unseen, fit_span_setting(data))
    if problem:
        raise UserError(f"{dsp_dir / 'knobmap.yaml'}: this DSP fit {problem}; remove {dsp_dir} to have it refitted "
                        f"on Train without the unseen levels, or run `python train_comp.py ckpt_dir=DIR {unseen_arg}` "
                        f"and give dsp_dir=DIR")
    if not missing:
        stale = _data_change(kmap, data)
        if stale:
            if not fit:
                raise UserError(f"{dsp_dir / 'knobmap.yaml'}: {stale}; run `{command}` to refit it "
                                f"(or set fit_chain=true)")
            print(f"note: {dsp_dir / 'knobmap.yaml'}: {stale}: refitting ({command})")
            _run_fit(overrides, data)   # the chain refits the levels whose files changed
            kmap = load_param_map(dsp_dir / "knobmap.yaml", "knobmap")
    return kmap


def _run_fit(overrides: list[str], data) -> None:
    fit_cfg = load_config("config", overrides)
    fit_cfg.data = data
    run_fit_job(fit_cfg)


def _data_change(kmap: KnobMap, data) -> str:
    """Why ``kmap`` was not fitted on the material ``data`` selects now ("" when it was, or
    when the map predates data keys: the protocol check then decides)."""
    protocol = kmap.protocol or {}
    if "data_key" not in protocol:
        return ""
    find = fit_pair_finder(load_pairs(data, quiet=True), data)
    if data_key(find, protocol.get("fitted") or {}) != protocol["data_key"]:
        return "it was fitted on other material than this data config selects"
    return ""


def _manifest_curves(path: Path, takes) -> KnobCurves:
    """The joint fit in ``path``, if it was fitted on exactly ``takes`` (Train only)."""
    curves = load_param_map(path, "knobcurves")
    read = sorted(set(curves.protocol.get("fit_splits") or []) - set(PROTOCOL_SPLITS))
    if read:
        raise UserError(f"{path}: this joint fit read {'/'.join(read)} material; refit it on Train only "
                        f"(python train_comp.py data=manifest method=joint ckpt_dir={path.parent})")
    if curves.protocol.get("data_key") != takes_data_key(takes):
        raise UserError(f"{path}: fitted on other takes than the manifest's Train rows; refit it "
                        f"(python train_comp.py data=manifest method=joint ckpt_dir={path.parent})")
    return curves
