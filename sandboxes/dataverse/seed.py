"""Seed data: rows from YAML/JSON (or a dict), linked by symbolic refs, dated relative to today.

Format::

    records:                          # table logical name -> rows, loaded in file order
      account:
        - ref: acme                   # symbolic key; the row id is derived from it
          name: Acme Corp
          creditlimit: "10000.00"     # Decimal and Money as strings (or numbers)
          transactioncurrencyid: {ref: usd}
      opportunity:
        - ref: acme_renewal
          parentaccountid: {ref: acme}
          statecode: 1                # rows may be loaded closed (no WinOpportunity needed)
          actualclosedate: today-3d   # today, today+14d, today-1m, today+2w, today+1y; now-3h
          db_paymentterms: {label: Net 30}   # a choice by its label
    updates:                          # applied once every row exists (circular references)
      account:
        - {ref: acme, primarycontactid: {ref: acme_ap}}

Every value goes through the same checks as the Web API's; rows are written past the webhook
steps (a data import), so loading a seed notifies nobody. Predefined refs: ``base_currency``,
``application_user``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._seed import SeedError as SeedError  # re-exported: the loader raises it
from .._seed import read, relative
from .errors import DataverseError
from .schema import LOOKUP_KINDS, Table
from .store import Store
from .values import Ref, coerce

NAMESPACE = uuid.UUID("6f3c2d1e-8b7a-4c5d-9e0f-1a2b3c4d5e6f")


def guid_for(ref: str) -> str:
    """The row id a seed gives the row named ``ref`` (stable from run to run)."""
    return str(uuid.uuid5(NAMESPACE, ref))


class SeedLoader:
    def __init__(self, store: Store, now: Callable[[], datetime], refs: dict[str, Ref]) -> None:
        self.store = store
        self.now = now
        self.refs = refs

    def load(self, source: str | Path | Mapping[str, Any]) -> dict[str, Ref]:
        data = read(source)
        records = data.get("records") or {}
        if not isinstance(records, Mapping):
            raise SeedError("'records' must map table names to lists of rows")
        with self.store.transaction():
            for table_name, rows in records.items():
                table = self._table(table_name)
                for row in rows or []:
                    self._insert(table, row)
            for table_name, rows in (data.get("updates") or {}).items():
                table = self._table(table_name)
                for row in rows or []:
                    ref = row.get("ref") if isinstance(row, Mapping) else None
                    if ref not in self.refs:
                        raise SeedError(f"updates.{table_name}: unknown ref {ref!r}")
                    values = self._values(table, {k: v for k, v in row.items() if k != "ref"}, None)
                    self.store.update(table.logical_name, self.refs[ref].id, values, fire=False)
        return dict(self.refs)

    def _table(self, name: str) -> Table:
        table = self.store.schema.table(str(name))
        if table is None:
            raise SeedError(f"records.{name}: no such table")
        return table

    def _insert(self, table: Table, row: Any) -> None:
        if not isinstance(row, Mapping):
            raise SeedError(f"records.{table.logical_name}: each row must be a mapping")
        ref = row.get("ref")
        body = {k: v for k, v in row.items() if k != "ref"}
        record_id = str(
            body.pop(table.primary_key, None) or (guid_for(ref) if ref else uuid.uuid4())
        )
        values = self._values(table, body, ref)
        try:
            record_id = self.store.insert(
                table.logical_name, {table.primary_key: record_id, **values}, fire=False
            )
        except DataverseError as exc:
            raise SeedError(f"records.{table.logical_name} {ref or ''}: {exc.message}") from exc
        if ref:
            self.refs[str(ref)] = Ref(table.logical_name, record_id)

    def _values(self, table: Table, body: Mapping[str, Any], ref: Any) -> dict[str, Any]:
        where = f"records.{table.logical_name} {ref or ''}".strip()
        values: dict[str, Any] = {}
        currency = None
        for name, value in body.items():
            column = table.column(str(name))
            if column is None:
                raise SeedError(f"{where}: {table.logical_name} has no column {name!r}")
            if column.kind in LOOKUP_KINDS:
                values[name] = self._ref(where, name, value, table)
                if name == "transactioncurrencyid" and isinstance(values[name], Ref):
                    currency = self.store.resolve(values[name])
        precision = currency.get("currencyprecision") if currency else None
        for name, value in body.items():
            column = table.columns[str(name)]
            if column.kind in LOOKUP_KINDS:
                continue
            if isinstance(value, Mapping) and "label" in value:
                value = self._choice(where, column.options, str(value["label"]), column.kind)
            elif isinstance(value, str) and column.kind == "DateTime":
                moment = relative(value, self.now())
                if isinstance(moment, (datetime, date)):
                    value = moment.isoformat()
            elif isinstance(value, date | datetime):
                value = value.isoformat()
            elif isinstance(value, str | float) and column.kind in ("Decimal", "Money", "Double"):
                value = Decimal(str(value))
            try:
                values[str(name)] = coerce(table, column, value, precision)
            except DataverseError as exc:
                raise SeedError(f"{where}: {exc.message}") from exc
        return values

    def _ref(self, where: str, name: str, value: Any, table: Table) -> Ref | None:
        if value is None:
            return None
        if not isinstance(value, Mapping) or "ref" not in value:
            raise SeedError(f"{where}: {name} must be {{ref: <name>}}")
        found = self.refs.get(str(value["ref"]))
        if found is None:
            raise SeedError(f"{where}: {name} names an unknown ref {value['ref']!r}")
        targets = self.store.schema.targets(table.logical_name, name)
        if found.table not in targets:
            raise SeedError(f"{where}: {name} cannot point at a {found.table}")
        return found

    @staticmethod
    def _choice(where: str, options: Mapping[int, str], label: str, kind: str) -> Any:
        labels = (
            [part.strip() for part in label.split(";")]
            if kind == "MultiSelectPicklist"
            else [label]
        )
        values = []
        for text in labels:
            match = [v for v, t in options.items() if t == text]
            if not match:
                raise SeedError(f"{where}: no choice labelled {text!r}")
            values.append(match[0])
        if kind == "MultiSelectPicklist":
            return ",".join(str(v) for v in values)
        return values[0]
