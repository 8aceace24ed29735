"""Outputs apart from inputs: no output path may equal, contain or lie inside an input path,
so a run never writes over (or into) what it reads."""
from __future__ import annotations

import os
from pathlib import Path

from common.errors import UserError

__all__ = ["check_apart"]


def _resolved(path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def check_apart(outputs: dict, inputs: dict) -> None:
    """UserError naming both when an output (``{what: path}``) equals, contains or is contained
    in an input (``{what: path}``); None paths are skipped."""
    for out_name, out in outputs.items():
        if out is None:
            continue
        o = _resolved(out)
        for in_name, inp in inputs.items():
            if inp is None:
                continue
            i = _resolved(inp)
            if o == i:
                relation = "is"
            elif i in o.parents:
                relation = "lies inside"
            elif o in i.parents:
                relation = "contains"
            else:
                continue
            raise UserError(f"{out}: the output ({out_name}) {relation} the input {inp} ({in_name}); "
                            "choose an output apart from what the run reads")
