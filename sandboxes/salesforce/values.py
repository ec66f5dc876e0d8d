"""Field values: JSON input → stored Python value (with Salesforce's validation), and back.

Stored values: ``str`` for text and ids, ``bool``, ``Decimal`` for currency/double/percent,
``int`` for int, ``date``, timezone-aware UTC ``datetime`` (millisecond precision), ``None``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from . import ids
from .errors import ApiError, json_parser_error
from .jsonio import format_decimal
from .schema import FieldDef

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def format_datetime(value: datetime) -> str:
    """``2026-11-21T05:50:16.000+0000``, the form Salesforce's REST API returns."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """Parse the datetime forms Salesforce accepts; raise ValueError otherwise."""
    match = _DATETIME.match(text.strip())
    if not match:
        raise ValueError(text)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    result = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    if zone in (None, "Z"):
        aware = result.replace(tzinfo=UTC)
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset_minutes = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        aware = result.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    return truncate_ms(aware.astimezone(UTC))


def truncate_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def parse_date(text: str) -> date:
    if not _DATE.match(text.strip()):
        raise ValueError(text)
    return date.fromisoformat(text.strip())


def _type_name(field: FieldDef) -> str:
    return {"datetime": "datetime", "date": "date", "boolean": "boolean"}.get(
        field.type, "double" if field.is_numeric else "string"
    )


def _cannot_deserialize(field: FieldDef, raw: Any) -> ApiError:
    kind = {
        str: "VALUE_STRING",
        bool: "VALUE_TRUE" if raw is True else "VALUE_FALSE",
        int: "VALUE_NUMBER_INT",
        Decimal: "VALUE_NUMBER_FLOAT",
        dict: "START_OBJECT",
        list: "START_ARRAY",
    }.get(type(raw), "VALUE_STRING")
    shown = raw if isinstance(raw, str | int | Decimal) else kind
    return json_parser_error(
        f"Cannot deserialize instance of {_type_name(field)} from {kind} value {shown} "
        "or request may be missing a required field"
    )


def coerce(field: FieldDef, raw: Any) -> Any:
    """Convert one JSON value for ``field`` as Salesforce would, or raise its error.

    Type mismatches the JSON layer rejects answer ``JSON_PARSER_ERROR``; values of the right
    JSON type that the field rejects answer the field-level codes (``STRING_TOO_LONG``...).
    """
    if raw is None:
        return None
    if isinstance(raw, dict | list):
        raise _cannot_deserialize(field, raw)
    kind = field.type
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise _cannot_deserialize(field, raw)
    if field.is_numeric:
        return _coerce_number(field, raw)
    if kind == "date":
        if not isinstance(raw, str):
            raise _cannot_deserialize(field, raw)
        try:
            return parse_date(raw)
        except ValueError:
            raise _cannot_deserialize(field, raw) from None
    if kind == "datetime":
        if not isinstance(raw, str):
            raise _cannot_deserialize(field, raw)
        try:
            return parse_datetime(raw)
        except ValueError:
            raise _cannot_deserialize(field, raw) from None
    # Text-like and reference fields: Jackson turns scalars into strings.
    text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    if isinstance(raw, Decimal):
        text = format_decimal(raw)
    if kind in ("id", "reference"):
        return _coerce_id(field, text)
    return _coerce_text(field, text)


def _coerce_number(field: FieldDef, raw: Any) -> Decimal | int:
    if isinstance(raw, bool):
        raise ApiError(
            400,
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            f"{field.label}: value not of required type: {str(raw).lower()}",
            [field.name],
        )
    try:
        number = Decimal(str(raw).strip()) if isinstance(raw, str) else Decimal(raw)
    except InvalidOperation:
        raise _cannot_deserialize(field, raw) from None
    if not number.is_finite():
        raise _cannot_deserialize(field, raw)
    if field.type == "int":
        if number != number.to_integral_value():
            raise ApiError(
                400,
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{field.label}: value not of required type: {raw}",
                [field.name],
            )
        limit = 10 ** (field.digits or 9)
        if abs(number) >= limit:
            raise _out_of_range(field, number)
        return int(number)
    quantum = Decimal(1).scaleb(-field.scale)
    rounded = number.quantize(quantum, rounding=ROUND_HALF_UP)
    precision = field.precision or 18
    if abs(rounded) >= Decimal(10) ** (precision - field.scale):
        raise _out_of_range(field, number)
    return rounded


def _out_of_range(field: FieldDef, number: Decimal) -> ApiError:
    return ApiError(
        400,
        "NUMBER_OUTSIDE_VALID_RANGE",
        f"{field.label}: value outside of valid range on numeric field: {number}",
        [field.name],
    )


def _coerce_id(field: FieldDef, text: str) -> str:
    if text == "":
        return ""
    try:
        return ids.to18(text)
    except ValueError:
        raise ApiError(
            400,
            "MALFORMED_ID",
            f"{field.label}: id value of incorrect type: {text}",
            [field.name],
        ) from None


def _coerce_text(field: FieldDef, text: str) -> str | None:
    if text == "" and field.type != "textarea":
        return None
    if field.type == "email" and not _EMAIL.match(text):
        raise ApiError(
            400,
            "INVALID_EMAIL_ADDRESS",
            f"{field.label}: invalid email address: {text}",
            [field.name],
        )
    if field.type == "picklist" and field.restricted_picklist:
        text = _restricted_value(field, text)
    if field.type == "multipicklist":
        chosen = [v.strip() for v in text.split(";") if v.strip()]
        if field.restricted_picklist:
            chosen = [_restricted_value(field, v) for v in chosen]
        text = ";".join(dict.fromkeys(chosen))
        if not text:
            return None
    if field.length and len(text) > field.length:
        raise ApiError(
            400,
            "STRING_TOO_LONG",
            f"{field.label}: data value too large: {text[:40]} (max length={field.length})",
            [field.name],
        )
    return text


def _restricted_value(field: FieldDef, text: str) -> str:
    for option in field.picklist_values:
        if option.active and option.value == text:
            return option.value
    raise ApiError(
        400,
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        f"{field.label}: bad value for restricted picklist field: {text}",
        [field.name],
    )


def render(field: FieldDef, value: Any) -> Any:
    """The JSON value Salesforce returns for a stored value."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def xml_text(value: Any) -> str:
    """A stored value as SOAP/XML text (outbound messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format_decimal(value)
    return str(value)
