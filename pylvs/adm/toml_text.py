"""A pylvs config dict (strings, numbers, booleans, lists and tables) written as TOML text that
``tomllib`` reads back to the same dict: scalars first, then sub-tables, then arrays of tables;
a small table in an array of tables (a real server's check, an instance's authentication) stays
inline, as the hand-written examples have it."""

from __future__ import annotations

import json
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
INLINE_WIDTH = 100


def dumps(data: dict[str, Any]) -> str:
    lines = _table(data, [], "", False)
    return "\n".join(lines).strip("\n") + "\n"


def _table(data: dict[str, Any], path: list[str], indent: str, in_array: bool) -> list[str]:
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    for key, value in data.items():
        text = _inline_or_none(value)
        if text is None or (isinstance(value, dict) and (not in_array
                                                         or len(text) > INLINE_WIDTH)):
            nested.append((key, value))
        else:
            lines.append(f"{indent}{_key(key)} = {text}")
    for key, value in nested:
        inner = [*path, key]
        header = ".".join(_key(k) for k in inner)
        child_indent = "  " * (len(inner) - 1)
        if isinstance(value, dict):
            lines += ["", f"{child_indent}[{header}]",
                      *_table(value, inner, child_indent, False)]
        else:
            for item in value:
                lines += ["", f"{child_indent}[[{header}]]",
                          *_table(item, inner, child_indent, True)]
    return lines


def _inline_or_none(value: Any) -> str | None:
    """The value as inline TOML; None for an array of tables (written as [[...]])."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return None
    return _inline(value)


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + " }" \
            if value else "{}"
    raise TypeError(f"no TOML for {value!r}")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)
