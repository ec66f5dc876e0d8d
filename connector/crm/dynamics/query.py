"""Build ``$select``/``$expand`` from mapping field paths, and read the values back.

Mapping paths are column logical names; a dotted path follows a lookup (``productid.name``).
The Web API spells these differently depending on the column kind:

* a plain column is selected and read by its logical name (``quantity``);
* a lookup's own value (the related record's id) is ``_productid_value``;
* a lookup is expanded through its *navigation property* (usually the logical name for
  system lookups, the SchemaName for lookups made by hand), and the related record's
  columns are read from the nested object: ``productid($select=name)`` → ``{"productid":
  {"name": ...}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FORMATTED", "Shape", "formatted", "lookup_value", "read_path"]

FORMATTED = "@OData.Community.Display.V1.FormattedValue"

NavigationOf = Callable[[str, str], str]


class Shape:
    """The columns and nested expansions to ask for on one table."""

    def __init__(self, entity: str, navigation_of: NavigationOf) -> None:
        self.entity = entity
        self._navigation_of = navigation_of
        self._select: list[str] = []
        self._expand: dict[str, Shape] = {}

    def column(self, name: str) -> None:
        if name not in self._select:
            self._select.append(name)

    def lookup(self, name: str) -> None:
        """Select a lookup's id, ``_<name>_value``."""
        self.column(f"_{name}_value")

    def expand(self, lookup: str, target_entity: str | None = None) -> Shape:
        """The shape of the record a lookup points at (created on first use)."""
        navigation = self._navigation_of(self.entity, lookup)
        shape = self._expand.get(navigation)
        if shape is None:
            shape = self._expand[navigation] = Shape(target_entity or lookup, self._navigation_of)
        return shape

    def path(self, path: str) -> None:
        """A mapping path: a column, or ``lookup.column`` (any depth)."""
        first, _, rest = path.partition(".")
        if rest:
            self.expand(first).path(rest)
        else:
            self.column(first)

    def params(self) -> dict[str, str]:
        """Top-level query options."""
        out: dict[str, str] = {}
        if self._select:
            out["$select"] = ",".join(self._select)
        if self._expand:
            out["$expand"] = ",".join(f"{nav}({s.options()})" for nav, s in self._expand.items())
        return out

    def options(self) -> str:
        """Nested query options, ``$select=...;$expand=...``."""
        return ";".join(f"{key}={value}" for key, value in self.params().items())


def read_path(
    record: Mapping[str, Any] | None, path: str, navigation: NavigationOf, entity: str
) -> Any:
    """The value at a mapping path in a record returned for a ``Shape``."""
    if not isinstance(record, Mapping):
        return None
    first, _, rest = path.partition(".")
    if rest:
        nested = record.get(navigation(entity, first))
        return read_path(nested, rest, navigation, first)
    return record.get(first)


def lookup_value(record: Mapping[str, Any] | None, name: str) -> Any:
    """A lookup's id (``_<name>_value``)."""
    if not isinstance(record, Mapping):
        return None
    return record.get(f"_{name}_value")


def formatted(record: Mapping[str, Any] | None, column: str) -> str | None:
    """The label Dataverse formatted for a column (choices, Yes/No, money), if sent."""
    if not isinstance(record, Mapping):
        return None
    value = record.get(f"{column}{FORMATTED}")
    return value if isinstance(value, str) else None
