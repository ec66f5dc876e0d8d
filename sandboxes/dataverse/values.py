"""Column values: what a write may hold for each column type, and how a value is formatted.

Stored values: ``str`` (text, choices as ``"1,2"`` for multi-select, dates ``2026-01-31``,
date-times ``2026-01-31T09:00:00Z``), ``int``, ``bool``, ``Decimal`` (Decimal and Money,
never ``float``) and :class:`Ref` for lookups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .errors import DataverseError
from .schema import Column, Table

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
FOUR_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Ref:
    """A lookup value: the related row's table and id."""

    table: str
    id: str


def is_guid(text: str) -> bool:
    return bool(GUID.match(text))


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refuse(table: Table, column: Column, value: Any) -> DataverseError:
    return DataverseError(
        400,
        "0x80060888",
        f"Cannot convert the literal '{value}' to the expected type of "
        f"'{column.logical_name}' ({column.kind}) on '{table.logical_name}'.",
    )


def _out_of_range(table: Table, column: Column, value: Any) -> DataverseError:
    return DataverseError(
        400,
        "0x8004431a",
        f"A validation error occurred. The value {value} of '{column.logical_name}' on record "
        f"of type '{table.logical_name}' is outside the valid range.",
    )


def coerce(table: Table, column: Column, value: Any, currency_precision: int | None) -> Any:
    """A written JSON value checked against its column, as Dataverse converts it.

    ``currency_precision`` is the precision of the row's currency, for Money columns whose
    precision comes from the currency.
    """
    if value is None:
        return None
    kind = column.kind
    if kind in ("String", "Memo"):
        if not isinstance(value, str):
            raise _refuse(table, column, value)
        if column.max_length is not None and len(value) > column.max_length:
            raise DataverseError(
                400,
                "0x80044331",
                f"A validation error occurred.  The length of the '{column.logical_name}' "
                f"attribute of the '{table.logical_name}' entity exceeded the maximum allowed "
                f"length of '{column.max_length}'.",
            )
        return value
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise _refuse(table, column, value)
        return value
    if kind in ("Integer", "BigInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _refuse(table, column, value)
        _check_range(table, column, Decimal(value))
        return value
    if kind in ("Decimal", "Money", "Double"):
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise _refuse(table, column, value)
        number = Decimal(value)
        _check_range(table, column, number)
        if kind == "Decimal":
            places = column.precision if column.precision is not None else 2
            return number.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
        if kind == "Money":
            places = money_places(column, currency_precision)
            rounded = number.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
            return rounded.quantize(FOUR_PLACES)
        return number
    if kind in ("Picklist", "State", "Status"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _refuse(table, column, value)
        if column.options and value not in column.options:
            raise _out_of_range(table, column, value)
        return value
    if kind == "MultiSelectPicklist":
        if not isinstance(value, str):
            raise _refuse(table, column, value)
        chosen: list[int] = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            if not part.lstrip("-").isdigit() or int(part) not in column.options:
                raise _out_of_range(table, column, part)
            chosen.append(int(part))
        return ",".join(str(v) for v in chosen) or None
    if kind == "DateTime":
        if not isinstance(value, str):
            raise _refuse(table, column, value)
        try:
            if column.date_only:
                return date.fromisoformat(value[:10]).isoformat()
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise _refuse(table, column, value) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return stamp(parsed)
    if kind == "Uniqueidentifier":
        if not isinstance(value, str) or not is_guid(value):
            raise _refuse(table, column, value)
        return value.lower()
    raise _refuse(table, column, value)


def money_places(column: Column, currency_precision: int | None) -> int:
    if column.precision_source == 0 and column.precision is not None:
        return column.precision
    if column.precision_source == 2 and currency_precision is not None:
        return currency_precision
    return 2  # the organization's pricing decimal precision (default 2)


def _check_range(table: Table, column: Column, number: Decimal) -> None:
    if (column.min_value is not None and number < column.min_value) or (
        column.max_value is not None and number > column.max_value
    ):
        raise _out_of_range(table, column, number)


def formatted(
    table: Table, column: Column, value: Any, *, symbol: str = "$", currency_precision: int = 2
) -> str | None:
    """``OData.Community.Display.V1.FormattedValue`` as an en-US user sees the value."""
    if value is None:
        return None
    kind = column.kind
    if kind in ("Picklist", "State", "Status"):
        return column.options.get(int(value))
    if kind == "MultiSelectPicklist":
        return "; ".join(column.options.get(int(v), v) for v in str(value).split(","))
    if kind == "Boolean":
        return column.options.get(1 if value else 0, "Yes" if value else "No")
    if kind == "Money":
        places = money_places(column, currency_precision)
        amount = Decimal(value).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
        sign = "-" if amount < 0 else ""
        return f"{sign}{symbol}{abs(amount):,.{places}f}"
    if kind in ("Integer", "BigInt"):
        return f"{int(value):,}"
    if kind == "Decimal":
        places = column.precision if column.precision is not None else 2
        try:
            return f"{Decimal(value):,.{places}f}"
        except InvalidOperation:
            return str(value)
    if kind == "DateTime" and isinstance(value, str):
        if column.date_only:
            day = date.fromisoformat(value[:10])
            return f"{day.month}/{day.day}/{day.year}"
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        clock = moment.strftime("%I:%M %p").lstrip("0")
        return f"{moment.month}/{moment.day}/{moment.year} {clock}"
    return None
