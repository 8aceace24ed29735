"""Whether a training run may resume from ``last.pt``: the settings that shape the weights must match.

A resumed run continues the saved one step for step only when everything that decides
the batches and the updates is the same: the model (backbone, head, sizes,
conditioning and its normalisation), the variant, the training settings, the data and
what is held out of it, the DSP fit it is conditioned on, and the seed. Only the
length of the run (``train.max_steps``, the time cap) may change, so that a finished
run can be extended; with ``train.schedule=cosine`` the learning rate follows
``max_steps``, so there only the time cap may. :func:`changed_settings` lists what differs, as dotted keys.
"""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError

__all__ = ["RESUMABLE", "changed_settings", "check_resumable"]

# training settings a resumed run may change: they set how long it runs, not what it does
RESUMABLE = ("max_steps", "max_minutes")
# config entries that shape the run (besides the model spec and the training settings)
_CONFIG_KEYS = ("seed", "variant", "unseen_levels", "modes", "levels", "unseen_dsp", "normalise_conditioning",
                "max_seconds_per_pair", "data", "crossfit")
# data entries that only say where things are cached or how much is printed
_DATA_IGNORED = ("cache_dir",)


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out or {prefix: {}}
    if isinstance(value, tuple):
        value = list(value)
    return {prefix: value}


def _differences(prefix: str, old, new) -> list[str]:
    a, b = _flatten(prefix, old), _flatten(prefix, new)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def changed_settings(saved: dict, now: dict) -> list[str]:
    """Dotted keys whose values differ between a saved checkpoint record and this run's.

    Args:
        saved, now: checkpoint records (``model``, ``variant``, ``train_settings``,
            ``param_map``, ``config``: the run's plain config).

    Returns:
        e.g. ``["data.corpus.seed", "train.batch_size", "train.lr"]``; empty when the
        run may resume.
    """
    changed = _differences("model", saved.get("model"), now.get("model"))
    changed += _differences("variant", saved.get("variant"), now.get("variant"))
    old_train = {k: v for k, v in (saved.get("train_settings") or {}).items() if k not in RESUMABLE}
    new_train = {k: v for k, v in (now.get("train_settings") or {}).items() if k not in RESUMABLE}
    if saved.get("train_settings") is not None:   # (absent in runs of earlier versions)
        changed += _differences("train", old_train, new_train)
        old_steps = saved["train_settings"].get("max_steps")
        if (now.get("train_settings") or {}).get("schedule") == "cosine" and "train.schedule" not in changed \
                and old_steps != (now.get("train_settings") or {}).get("max_steps"):
            changed.append("train.max_steps (the cosine schedule decays over it)")
    old_cfg, new_cfg = saved.get("config") or {}, now.get("config") or {}
    for key in _CONFIG_KEYS:
        old, new = old_cfg.get(key), new_cfg.get(key)
        if key == "data":
            old = {k: v for k, v in (old or {}).items() if k not in _DATA_IGNORED}
            new = {k: v for k, v in (new or {}).items() if k not in _DATA_IGNORED}
        elif key == "crossfit":   # absent in runs from before it: off
            old, new = bool(old), bool(new)
        changed += _differences(key, old, new)
    if saved.get("param_map") != now.get("param_map"):
        changed.append("the DSP fit (dsp_dir)")
    return sorted(dict.fromkeys(changed), key=changed.index)


def check_resumable(last: Path, saved: dict, now: dict) -> None:
    """UserError naming ``last`` and every changed setting, unless the run may resume."""
    changed = changed_settings(saved, now)
    if changed:
        raise UserError(f"{last}: was trained with other settings ({', '.join(changed)} changed); "
                        "rerun with the same settings to resume, or give resume=false to start over "
                        "(or another out_dir)")
