"""JSON in and out as Dataverse writes it: numbers are ``Decimal`` (never ``float``), printed
digit for digit (``1200.0000``), because money must stay exact."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def dumps(value: Any) -> str:
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def loads(raw: bytes | str) -> Any:
    """Numbers with a fraction or exponent become ``Decimal``; whole numbers stay ``int``."""
    return json.loads(raw, parse_float=Decimal)
