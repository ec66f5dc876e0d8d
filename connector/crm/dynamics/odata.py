"""Small OData helpers for the Dataverse Web API: literals, exact JSON, timestamps, GUIDs.

Dataverse answers money and decimal columns as JSON numbers (``1200.5``); reading them with
``json.loads`` would make floats, which dealbridge never uses for money. ``loads`` reads them as
``Decimal`` instead, and ``dumps`` writes ``Decimal`` back as a plain JSON number, exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "EMPTY_GUID",
    "dumps",
    "format_datetime",
    "guid_from_entity_url",
    "is_guid",
    "loads",
    "parse_datetime",
    "quote_literal",
    "record_ref",
]

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_GUID_IN_URL = re.compile(
    r"\(([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\)"
)


def is_guid(value: object) -> bool:
    return isinstance(value, str) and bool(_GUID.match(value))


def guid_from_entity_url(url: str | None) -> str | None:
    """The record id in an ``OData-EntityId`` URL (``.../accounts(<guid>)``), if it has one."""
    if not url:
        return None
    match = _GUID_IN_URL.search(url)
    return match.group(1).lower() if match else None


def quote_literal(value: str) -> str:
    """An OData string literal: single quotes, with embedded single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def record_ref(entity_set: str, record_id: str) -> str:
    """``/accounts(<guid>)``, the form ``@odata.bind`` takes; refuses anything but a GUID."""
    if not is_guid(record_id):
        raise ValueError(f"{record_id!r} is not a Dataverse record id (a GUID)")
    return f"/{entity_set}({record_id})"


def loads(content: bytes | str) -> Any:
    """Parse a Dataverse JSON body; decimals become ``Decimal``, never ``float``."""
    return json.loads(content, parse_float=Decimal)


def dumps(value: Any) -> str:
    """Serialise a request body; ``Decimal`` is written as a JSON number digit for digit."""
    return _encode(value)


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be sent to Dataverse")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("float is never sent to Dataverse; use Decimal")
    if isinstance(value, datetime):
        return json.dumps(format_datetime(value))
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__} for Dataverse")


def parse_datetime(value: object) -> datetime | None:
    """``2026-11-20T10:11:12Z`` → an aware UTC datetime; anything else → None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """An aware datetime as Dataverse writes it, ``2026-11-20T10:11:12Z``."""
    if value.tzinfo is None:
        raise ValueError("datetimes sent to Dataverse must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
