"""The command line of the Hydra entry scripts: ``--help``, ``--cfg job`` and checked keys.

``train_comp.py``, ``train_neural.py`` and ``compare.py`` call :func:`compose_cli`:

- ``--help`` / ``-h`` prints the script's usage (its docstring) and every setting of the
  composed config with its default and the one-line comment it carries in ``cfg/``;
- ``--cfg job`` prints the composed config as YAML;
- an override of a key the config does not have (``leves=[1]``, or ``+leves=[1]``, which
  Hydra would add and the job silently ignore) is an error with a "did you mean". A
  ``+key=`` is accepted only under an open table (an empty ``{}`` in the config, such as
  ``hyperparameters``).
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from common.config import CONFIG_DIR, load_config
from common.errors import UserError

__all__ = ["compose_cli", "config_help", "check_override_keys", "setting_comments"]

_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w]*)\s*:(.*)$")


def compose_cli(config_name: str, argv: list[str], doc: str, script: str) -> DictConfig | None:
    """The composed config, or None after answering ``--help`` or ``--cfg job`` (exit 0)."""
    args = list(argv)
    if {"-h", "--help"} & set(args):
        rest = [a for a in args if a not in ("-h", "--help")]
        print(config_help(config_name, rest, doc, script))
        return None
    show = _take_cfg_option(args)
    check_override_keys(config_name, args, script)
    cfg = load_config(config_name, args)
    if show:
        print(OmegaConf.to_yaml(cfg), end="")
        return None
    return cfg


def _take_cfg_option(args: list[str]) -> bool:
    """Remove ``--cfg job`` / ``--cfg=job`` from ``args``; True when it was there."""
    for i, a in enumerate(args):
        if a == "--cfg" or a.startswith("--cfg="):
            value = a.partition("=")[2] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            if value != "job":
                raise UserError(f"--cfg {value or '(nothing)'}: only --cfg job (print the composed config) is supported")
            del args[i: i + (1 if "=" in a else 2)]
            return True
    return False


def _compose_raw(config_name: str, overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"configuration: {' '.join(str(exc).split())}") from None


def _groups() -> set[str]:
    return {p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra"}   # hydra/: multirun only


def _flatten(node, prefix: str = "") -> dict:
    """Dotted key -> value for every key (tables included, so a table's name is a key too)."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}{k}"
            out[key] = v
            out.update(_flatten(v, key + "."))
    return out


def check_override_keys(config_name: str, overrides: list[str], script: str = "") -> None:
    """UserError with a "did you mean" for an override of a key the config lacks."""
    groups = _groups()
    chosen = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in groups]
    base = _compose_raw(config_name, chosen)
    plain = OmegaConf.to_container(base, resolve=False)
    plain.pop("hydra", None)
    keys = _flatten(plain)
    for o in overrides:
        if "=" not in o or o in chosen:
            continue
        raw = o.split("=", 1)[0]
        key = raw.lstrip("+~")
        if key in keys:
            continue
        parent = key.rpartition(".")[0]
        if raw.startswith("+") and parent and keys.get(parent) == {}:
            continue   # an open table (e.g. hyperparameters: {}) takes new keys
        raise UserError(f"{o}: unknown setting {key!r}{_did_you_mean(key, keys)}; "
                        f"`python {script or config_name} --help` lists the settings")


def _did_you_mean(key: str, keys) -> str:
    keys = [k for k in keys if not k.startswith("hydra")]
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not match:   # the last part alone: `align` -> data.align
        last = key.rpartition(".")[2]
        by_last = {}
        for k in keys:
            by_last.setdefault(k.rpartition(".")[2], k)
        near = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.75)
        match = [by_last[near[0]]] if near else []
    return f" (did you mean {match[0]}?)" if match else ""


def setting_comments(config_name: str, choices: dict) -> dict[str, str]:
    """Dotted key -> the one-line comment it carries in ``cfg/`` (trailing, or the comment
    line right above it). The chosen file of a group is read before the group's others."""
    files = [(CONFIG_DIR / f"{config_name}.yaml", "")]
    for group in sorted(_groups()):
        folder = CONFIG_DIR / group
        chain = _defaults_chain(folder, str(choices.get(group)))
        files += [(p, f"{group}.") for p in chain]
    files += [(p, "") for p in sorted(CONFIG_DIR.glob("*.yaml")) if p.stem != config_name]
    comments: dict[str, str] = {}
    for path, prefix in files:
        text = path.read_text()
        if "@package _global_" in text:
            prefix = ""
        for key, comment in _file_comments(text).items():
            comments.setdefault(prefix + key, comment)
    return comments


def _defaults_chain(folder: Path, name: str) -> list[Path]:
    """A group file and the files of its group it builds on (its ``defaults`` list), nearest first."""
    out, todo = [], [name]
    while todo:
        path = folder / f"{todo.pop(0)}.yaml"
        if not path.is_file() or path in out:
            continue
        out.append(path)
        try:
            defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults") or []
        except yaml.YAMLError:
            defaults = []
        todo += [d for d in reversed(defaults) if isinstance(d, str) and d != "_self_"]
    return out


def _file_comments(text: str) -> dict[str, str]:
    """Dotted key -> its trailing comment, or a single comment line right above it (a
    block of several lines above a key is a section's or the file's header)."""
    out, stack, above, block = {}, [], None, 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            above, block = None, 0
            continue
        if stripped.startswith("#"):
            block += 1
            above = stripped.lstrip("# ").strip() if block == 1 else None
            continue
        block = 0
        m = _KEY_LINE.match(line)
        if not m or line.lstrip().startswith("-"):
            above = None
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        trailing = rest.split(" #", 1)[1].strip(" #") if " #" in rest else ""
        if trailing or above:
            out[dotted] = trailing or above
        above = None
    return out


def _value_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return v
    return yaml.safe_dump(v, default_flow_style=True, width=10 ** 6).strip().removesuffix("...").strip()


def config_help(config_name: str, overrides: list[str], doc: str, script: str) -> str:
    """The usage (``doc``) and a table of every setting: key, default, meaning."""
    cfg = _compose_raw(config_name, [o for o in overrides if "=" in o])
    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items() if "/" not in k}
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    comments = setting_comments(config_name, choices)
    leaves = [(k, v) for k, v in _flatten(plain).items() if not isinstance(v, dict) or v == {}]
    width = max(len(k) for k, _ in leaves)
    lines = [doc.strip(), "",
             f"Settings (key=value overrides; defaults of cfg/{config_name}.yaml with "
             + ", ".join(f"{g}={c}" for g, c in sorted(choices.items())) + "):"]
    for key, value in leaves:
        text = _value_text(value)
        meaning = comments.get(key, "")
        lines.append(f"  {key:<{width}} = {text}" + (f"    # {meaning}" if meaning else ""))
    lines += ["", f"Config groups: " + ", ".join(
        f"{g}=" + "|".join(sorted(p.stem for p in (CONFIG_DIR / g).glob('*.yaml') if p.stem != 'base'))
        for g in sorted(_groups())),
              f"--cfg job prints the composed config; python {script} --help data=NAME shows another data file's settings."]
    return "\n".join(lines)
