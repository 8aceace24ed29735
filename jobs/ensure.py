"""The one "make sure the DSP fit exists" that training and comparison share.

A neural hybrid needs the fitted DSP parameters at every setting, and a comparison
scores the DSP fit itself. When ``dsp_dir`` lacks them, the fit job of
``train_comp.py`` runs first (with the same ``data`` config), unless ``fit`` is false.
"""
from __future__ import annotations

from pathlib import Path

from common.config import load_config
from common.errors import UserError
from dsp.knobmap import KnobMap
from dsp.knobtable import KnobTable, load_take_fits, take_fit
from jobs.fit import run_fit_job

__all__ = ["ensure_dsp_fit"]


def ensure_dsp_fit(data, dsp_dir: str | Path, takes=None, *, fit: bool = True, quiet: bool = False,
                   modes=None, compressor: str = "ff5") -> KnobMap | KnobTable:
    """The fitted parameter map in ``dsp_dir``, fitted first where it is missing.

    Args:
        data: the ``data`` config the fit runs on (what ``train_comp.py data=...`` gets).
        takes: a corpus of takes with their own knobs (manifest rows): the map is their
            :class:`dsp.knobtable.KnobTable`, fitting the takes without a fit of their
            own; None: the LA-2A chain's ``knobmap.yaml``.
        fit: false raises a UserError instead of fitting.
        modes: the chain's modes (default: the config's).
        compressor: the DSP model class (``ff5`` | ``graybox``) to fit with; an existing
            chain of another class is refused.

    Returns:
        a :class:`dsp.parammap.ParamMap`.
    """
    dsp_dir = Path(dsp_dir)
    overrides = [f"ckpt_dir={dsp_dir}", f"quiet={bool(quiet)}", f"compressor={compressor}"]
    if takes is None:
        path = dsp_dir / "knobmap.yaml"
        missing = not path.is_file()
        command = f"python train_comp.py ckpt_dir={dsp_dir}"
        problem, what = f"{path}: no DSP chain", f"no DSP chain in {dsp_dir}: fitting it first"
        if modes is not None:
            overrides.append(f"modes=[{','.join(str(m) for m in modes)}]")
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
        fit_cfg = load_config("config", overrides)
        fit_cfg.data = data
        run_fit_job(fit_cfg)
    if takes is None:
        kmap = KnobMap.load(dsp_dir / "knobmap.yaml")
        if kmap.compressor != compressor:
            raise UserError(f"{dsp_dir / 'knobmap.yaml'}: is a {kmap.compressor} fit, compressor={compressor} "
                            f"was asked (point dsp_dir elsewhere)")
        return kmap
    return load_take_fits(takes, dsp_dir)
