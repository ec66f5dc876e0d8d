"""SOQL literals: values are escaped, never pasted, so a deal id can't change a query."""

from __future__ import annotations

import re
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


_ID = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def is_record_id(value: str) -> bool:
    """A well-formed Salesforce record id: 15 case-sensitive characters, or 18 whose last
    three are the checksum of the first 15 (a bit per uppercase letter in each group of
    five). Salesforce refuses a whole ``Id IN (...)`` query over one malformed id, so
    a batch of ids is checked before it is sent."""
    if not _ID.fullmatch(value):
        return False
    if len(value) == 15:
        return True
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, ch in enumerate(value[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM[bits]
    return value[15:].upper() == suffix
