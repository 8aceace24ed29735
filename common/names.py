"""Names that become parts of paths (a manifest's knob columns, model and variant names): a
plain identifier or refused with one line, so no name can reach outside its output folder."""
from __future__ import annotations

import re

from common.errors import UserError

__all__ = ["PLAIN_NAME", "plain_name"]

PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def plain_name(value, what: str, where: str = "") -> str:
    """``value`` if it is a plain identifier (letters, digits, underscores; not starting with a
    digit); a UserError naming ``where`` and ``what`` otherwise."""
    text = str(value)
    if not PLAIN_NAME.match(text):
        prefix = f"{where}: " if where else ""
        raise UserError(f"{prefix}{what} {text!r} is not a plain name (letters, digits and underscores, "
                        "not starting with a digit): it would be part of a file path")
    return text
