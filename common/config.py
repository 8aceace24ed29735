"""Loading the Hydra configuration in ``cfg/`` with command-line overrides.

The entry scripts use Hydra's compose API rather than ``@hydra.main`` so that the
run never changes directory (relative paths work), writes no ``outputs/`` folder,
and a bad override becomes one ``error:`` line instead of a Hydra traceback.
"""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from common.errors import UserError

__all__ = ["CONFIG_DIR", "load_config", "to_plain"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "cfg"


def load_config(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``cfg/<config_name>.yaml`` with Hydra-style ``key=value`` overrides."""
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        raise UserError(f"unknown option {bad[0]!r}: settings are given as key=value (e.g. ckpt_dir=DIR)")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        msg = " ".join(str(exc).split())
        raise UserError(f"configuration: {msg}") from None
    return cfg


def to_plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
