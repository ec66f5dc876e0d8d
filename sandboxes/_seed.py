"""What the Salesforce and Dataverse sandboxes' seed files share: reading one (YAML or JSON,
or a mapping already loaded) and dates relative to the sandbox's clock (``today+14d``,
``now-2h``), so a demo seed stays current whenever it is loaded."""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

_RELATIVE = re.compile(r"^(today|now)\s*(?:([+-])\s*(\d+)\s*([dwmyh]))?$", re.IGNORECASE)


class SeedError(ValueError):
    """The seed is malformed or one of its records is refused."""


def read(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SeedError(f"{path}: the seed must be a mapping with a 'records' key")
    return data


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def relative(text: str, now: datetime) -> date | datetime | None:
    """``today+14d`` → a date; ``now-2h`` → a datetime; None if ``text`` is not relative."""
    found = _RELATIVE.match(text.strip())
    if not found:
        return None
    base_word, sign, amount, unit = found.groups()
    base: date | datetime = now if base_word.lower() == "now" else now.date()
    if not sign:
        return base
    n = int(amount) * (1 if sign == "+" else -1)
    unit = unit.lower()
    if unit == "m":
        if isinstance(base, datetime):
            return datetime.combine(add_months(base.date(), n), base.timetz())
        return add_months(base, n)
    if unit == "y":
        if isinstance(base, datetime):
            return datetime.combine(add_months(base.date(), 12 * n), base.timetz())
        return add_months(base, 12 * n)
    if unit == "h":
        if not isinstance(base, datetime):
            raise SeedError(f"{text!r}: hours only apply to 'now'")
        return base + timedelta(hours=n)
    return base + timedelta(days=n * (7 if unit == "w" else 1))
