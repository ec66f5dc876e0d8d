"""SOQL literals: values are escaped, never pasted, so a deal id can't change a query."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"'}


def literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return datetime_literal(value)
    if isinstance(value, date):
        return value.isoformat()
    text = "".join(_ESCAPES.get(ch, ch) for ch in str(value))
    return f"'{text}'"


def datetime_literal(value: datetime) -> str:
    """SOQL date-time literal in UTC, e.g. 2026-11-21T05:50:16Z."""
    if value.tzinfo is None:
        raise ValueError("SOQL date-times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
