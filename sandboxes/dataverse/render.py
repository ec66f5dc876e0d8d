"""Rows as the Web API returns them: ``$select``ed columns, ``_<lookup>_value``, ``$expand``ed
navigation properties and the annotations ``Prefer: odata.include-annotations`` asks for."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import no_property
from .query import Options, compile_filter
from .schema import LOOKUP_KINDS, Table
from .store import Store
from .values import Ref, formatted

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_TABLE = "Microsoft.Dynamics.CRM.lookuplogicalname"
LOOKUP_NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
ALL_ANNOTATIONS = frozenset({FORMATTED, LOOKUP_TABLE, LOOKUP_NAVIGATION})


def wanted_annotations(prefer: str) -> frozenset[str]:
    found = re.search(r'odata\.include-annotations="?([^";]*)"?', prefer)
    if not found:
        return frozenset()
    names = {a.strip() for a in found.group(1).split(",") if a.strip()}
    if "*" in names:
        return ALL_ANNOTATIONS
    out = set()
    for name in names:
        if name.endswith(".*"):
            out |= {a for a in ALL_ANNOTATIONS if a.startswith(name[:-1])}
        else:
            out.add(name)
    return frozenset(out)


def sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, Ref):
        return (1, value.id)
    if isinstance(value, str):
        return (1, value.casefold())
    return (1, value)


class Renderer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def resolver(self, table: Table, row: Mapping[str, Any]) -> Callable[[str], Any]:
        """A ``$filter`` path (``name``, ``_parentaccountid_value``, ``parentaccountid/name``)
        → its value on ``row``."""
        schema = self.store.schema

        def resolve(path: str) -> Any:
            first, _, rest = path.partition("/")
            if rest:
                navigation = schema.navigation(table.logical_name, first)
                if navigation is None:
                    raise no_property(first, table.logical_name)
                lookup_name, target = navigation
                ref = row.get(lookup_name)
                related = (
                    self.store.resolve(ref)
                    if isinstance(ref, Ref) and ref.table == target
                    else None
                )
                if related is None:
                    return None
                return self.resolver(self.store.table(target), related)(rest)
            if first.startswith("_") and first.endswith("_value"):
                column = table.column(first[1:-6])
                if column is None or column.kind not in LOOKUP_KINDS:
                    raise no_property(first, table.logical_name)
                return row.get(column.logical_name)
            column = table.column(first)
            if column is None or column.kind in LOOKUP_KINDS:
                raise no_property(first, table.logical_name)
            return row.get(first)

        return resolve

    def filtered(
        self, table: Table, rows: list[dict[str, Any]], options: Options
    ) -> list[dict[str, Any]]:
        if options.filter:
            predicate = compile_filter(options.filter)
            rows = [r for r in rows if predicate(self.resolver(table, r))]
        for column, descending in reversed(options.orderby):
            resolve_column = column
            rows.sort(
                key=lambda r: sort_key(self.resolver(table, r)(resolve_column)), reverse=descending
            )
        if options.top is not None:
            rows = rows[: options.top]
        return rows

    def _currency(self, row: Mapping[str, Any]) -> tuple[str, int]:
        currency = self.store.currency_of(row)
        if currency is None:
            return "$", 2
        precision = currency.get("currencyprecision")
        return str(currency.get("currencysymbol") or "$"), int(
            2 if precision is None else precision
        )

    def row(
        self,
        table: Table,
        row: Mapping[str, Any],
        options: Options,
        annotations: frozenset[str],
    ) -> dict[str, Any]:
        """One row; ``$select`` names columns and ``_<lookup>_value``s, never navigation
        properties (those are ``$expand``ed)."""
        schema = self.store.schema
        out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        names = options.select or [
            f"_{c.logical_name}_value" if c.kind in LOOKUP_KINDS else c.logical_name
            for c in table.columns.values()
        ]
        symbol, precision = self._currency(row)
        for name in names:
            if name.startswith("_") and name.endswith("_value"):
                column = table.column(name[1:-6])
                if column is None or column.kind not in LOOKUP_KINDS:
                    raise no_property(name, table.logical_name)
                ref = row.get(column.logical_name)
                if isinstance(ref, Ref):
                    target = self.store.resolve(ref) or {}
                    target_table = schema.table(ref.table)
                    label = (
                        target.get(target_table.primary_name)
                        if target_table is not None and target_table.primary_name
                        else None
                    )
                    if FORMATTED in annotations and label is not None:
                        out[f"{name}@{FORMATTED}"] = label
                    if LOOKUP_NAVIGATION in annotations:
                        targets = schema.targets(table.logical_name, column.logical_name)
                        out[f"{name}@{LOOKUP_NAVIGATION}"] = targets.get(ref.table)
                    if LOOKUP_TABLE in annotations:
                        out[f"{name}@{LOOKUP_TABLE}"] = ref.table
                out[name] = ref.id if isinstance(ref, Ref) else None
                continue
            column = table.column(name)
            if column is None or column.kind in LOOKUP_KINDS:
                raise no_property(name, table.logical_name)
            value = row.get(name)
            if FORMATTED in annotations:
                label = formatted(table, column, value, symbol=symbol, currency_precision=precision)
                if label is not None:
                    out[f"{name}@{FORMATTED}"] = label
            out[name] = value
        out[table.primary_key] = row[table.primary_key]
        for expanded, nested in options.expand.items():
            out[expanded] = self._expanded(table, row, expanded, nested, annotations)
        return out

    def _expanded(
        self,
        table: Table,
        row: Mapping[str, Any],
        navigation: str,
        nested: Options,
        annotations: frozenset[str],
    ) -> Any:
        schema = self.store.schema
        single = schema.navigation(table.logical_name, navigation)
        if single is not None:
            column, target = single
            ref = row.get(column)
            related = (
                self.store.resolve(ref) if isinstance(ref, Ref) and ref.table == target else None
            )
            if related is None:
                return None
            return self.row(self.store.table(target), related, nested, annotations)
        many = schema.collection(table.logical_name, navigation)
        if many is None:
            raise no_property(navigation, table.logical_name)
        other_name, lookup = many
        other = self.store.table(other_name)
        me = Ref(table.logical_name, row[table.primary_key])
        children = [r for r in self.store.all(other_name) if r.get(lookup) == me]
        children = self.filtered(other, children, nested)
        return [self.row(other, r, nested, annotations) for r in children]
