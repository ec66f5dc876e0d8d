"""JSON in and out without floats: numbers parse to ``Decimal`` and ``Decimal`` prints as a number.

Salesforce's REST API renders every double, currency and percent value the way Java prints a
double (``15000.0``, ``1200.5``); integers (``int`` fields, counts) print without a fraction.
Money never passes through ``float`` here.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def loads(text: str | bytes) -> Any:
    """Parse JSON with every non-integer number as ``Decimal``."""
    return json.loads(text, parse_float=Decimal)


def format_decimal(value: Decimal) -> str:
    """Render like Salesforce: plain notation, at least one fractional digit."""
    if not value.is_finite():
        raise ValueError(f"cannot render {value} as JSON")
    text = format(value.normalize(), "f")
    if "." not in text:
        text += ".0"
    return text


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Serialise ``value``; ``Decimal`` becomes a JSON number, never a string or float."""
    parts: list[str] = []
    _write(value, parts, indent, 0)
    return "".join(parts)


def _write(value: Any, out: list[str], indent: int | None, level: int) -> None:
    if value is None or isinstance(value, bool | str):
        out.append(json.dumps(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        out.append(format_decimal(value))
    elif isinstance(value, float):
        raise TypeError("floats are not allowed in sandbox JSON; use Decimal")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for position, (key, item) in enumerate(value.items()):
            if position:
                out.append(",")
            _newline(out, indent, level + 1)
            out.append(json.dumps(str(key)))
            out.append(" : " if indent is not None else ":")
            _write(item, out, indent, level + 1)
        _newline(out, indent, level)
        out.append("}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[ ]" if indent is not None else "[]")
            return
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            _newline(out, indent, level + 1)
            _write(item, out, indent, level + 1)
        _newline(out, indent, level)
        out.append("]")
    else:
        raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def _newline(out: list[str], indent: int | None, level: int) -> None:
    if indent is not None:
        out.append("\n" + " " * (indent * level))
