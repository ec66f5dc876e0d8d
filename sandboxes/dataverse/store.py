"""Rows in memory, their row versions, and the business rules Dataverse applies on writes.

Every create, update and delete takes the next row version (``versionnumber``, which is also
the ETag and what change tracking compares), stamps ``createdon``/``modifiedon`` from the
injected clock and tells the listeners (webhook steps) what changed. A deleted row leaves a
tombstone with its version, for delta links.

``transaction()`` makes a group of writes atomic (a ``$batch`` change set): on an error the
rows, tombstones and version go back to where they were and no event is published.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from .errors import DataverseError, not_found
from .schema import Schema, Table
from .values import Ref, stamp


@dataclass(frozen=True)
class Change:
    """A message that ran on a row: ``Create``, ``Update``, ``Delete``, ``Win``, ``Lose``."""

    table: str
    message: str
    record_id: str
    #: Update: the columns the request wrote (changed or not, as a step's filtering
    #: attributes see them); other messages: the columns they changed.
    changed: Mapping[str, Any]
    image: Mapping[str, Any]  # the row afterwards (before, for Delete)
    inputs: Mapping[str, Any] = field(default_factory=dict)  # e.g. the OpportunityClose


Listener = Callable[[Change], None]


class Store:
    def __init__(self, schema: Schema, now: Callable[[], datetime]) -> None:
        self.schema = schema
        self.now = now
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in schema.tables}
        self.deleted: dict[str, dict[str, int]] = {name: {} for name in schema.tables}
        self.version = 1_000_000
        self.listeners: list[Listener] = []
        self.base_currency: str | None = None  # transactioncurrencyid of the organization
        self._pending: list[Change] | None = None

    # ------------------------------------------------------------------ reading

    def table(self, name: str) -> Table:
        table = self.schema.table(name)
        if table is None:
            raise DataverseError(
                404, "0x80040217", f"Could not find entity with logical name '{name}'."
            )
        self.rows.setdefault(name, {})
        self.deleted.setdefault(name, {})
        return table

    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        return self.rows.get(table, {}).get(record_id.lower())

    def require(self, table: str, record_id: str) -> dict[str, Any]:
        row = self.get(table, record_id)
        if row is None:
            raise not_found(table, record_id)
        return row

    def all(self, table: str) -> list[dict[str, Any]]:
        return list(self.rows.get(table, {}).values())

    def find(self, table: str, **values: Any) -> list[dict[str, Any]]:
        return [r for r in self.all(table) if all(r.get(k) == v for k, v in values.items())]

    def resolve(self, ref: Any) -> dict[str, Any] | None:
        return self.get(ref.table, ref.id) if isinstance(ref, Ref) else None

    def currency_of(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.resolve(row.get("transactioncurrencyid"))

    # ------------------------------------------------------------------ atomic groups

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing; events are published only once everything succeeded."""
        if self._pending is not None:  # nested: the outer group decides
            yield
            return
        saved = (copy.deepcopy(self.rows), copy.deepcopy(self.deleted), self.version)
        self._pending = []
        try:
            yield
        except BaseException:
            self.rows, self.deleted, self.version = saved
            self._pending = None
            raise
        pending, self._pending = self._pending, None
        for change in pending:
            self._publish(change)

    def _emit(self, change: Change) -> None:
        if self._pending is not None:
            self._pending.append(change)
        else:
            self._publish(change)

    def _publish(self, change: Change) -> None:
        for listener in self.listeners:
            listener(change)

    # ------------------------------------------------------------------ writing

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def insert(self, table_name: str, values: Mapping[str, Any], *, fire: bool = True) -> str:
        """Create a row from checked values (the Web API layer coerces them first)."""
        table = self.table(table_name)
        row = dict(values)
        record_id = str(row.get(table.primary_key) or uuid.uuid4()).lower()
        if record_id in self.rows[table_name]:
            raise DataverseError(412, "0x80040237", "Cannot insert duplicate key.")
        row[table.primary_key] = record_id
        for column in ("statecode", "statuscode"):
            if column in table.columns and row.get(column) is None:
                default = 0 if column == "statecode" else _first_status(table)
                row[column] = default
        if "transactioncurrencyid" in table.columns and row.get("transactioncurrencyid") is None:
            row["transactioncurrencyid"] = self._default_currency(table_name, row)
        row = self._rules(table, row, None)
        self._check_keys(table, row, record_id)
        row["createdon"] = row["modifiedon"] = stamp(self.now())
        row["versionnumber"] = self.next_version()
        self.rows[table_name][record_id] = row
        self._after_write(table, row)
        if fire:
            changed = {k: v for k, v in row.items() if v is not None}
            self._emit(Change(table_name, "Create", record_id, changed, dict(row)))
        return record_id

    def update(
        self,
        table_name: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        fire: bool = True,
        message: str = "Update",
        inputs: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Change a row; returns the columns whose value changed. Listeners hear of it unless
        ``fire`` is False (data written past the platform's plug-ins, e.g. by a data import)."""
        table = self.table(table_name)
        row = self.require(table_name, record_id)
        merged = self._rules(table, {**row, **values}, row)
        changed = {k: v for k, v in merged.items() if row.get(k) != v}
        self._check_keys(table, merged, row[table.primary_key])
        row.clear()
        row.update(merged)
        row["modifiedon"] = stamp(self.now())
        row["versionnumber"] = self.next_version()
        self._after_write(table, row)
        if fire:
            written = {k: merged.get(k) for k in values} if message == "Update" else changed
            change = Change(
                table_name, message, row[table.primary_key], written, dict(row), dict(inputs or {})
            )
            self._emit(change)
        return changed

    def delete(self, table_name: str, record_id: str, *, fire: bool = True) -> None:
        table = self.table(table_name)
        row = self.require(table_name, record_id)
        for relationship in self.schema.relationships.values():
            if relationship.referenced_entity != table_name:
                continue
            ref = Ref(table_name, row[table.primary_key])
            for child in self.all(relationship.referencing_entity):
                if child.get(relationship.referencing_attribute) == ref:
                    if relationship.referencing_entity == "opportunityproduct":
                        self.delete("opportunityproduct", child["opportunityproductid"])
                    else:  # RemoveLink, the default cascade for custom lookups
                        child[relationship.referencing_attribute] = None
        del self.rows[table_name][row[table.primary_key]]
        self.deleted[table_name][row[table.primary_key]] = self.next_version()
        if table_name == "opportunityproduct":
            self._recalculate(row.get("opportunityid"))
        if fire:
            self._emit(Change(table_name, "Delete", row[table.primary_key], {}, dict(row)))

    def touch(self, table_name: str, record_id: str) -> None:
        """A new row version without a column change (a recalculation)."""
        row = self.require(table_name, record_id)
        row["modifiedon"] = stamp(self.now())
        row["versionnumber"] = self.next_version()

    # ------------------------------------------------------------------ rules

    def _default_currency(self, table_name: str, row: Mapping[str, Any]) -> Ref | None:
        """Dataverse fills a row's currency: the opportunity's (its products), the price
        list's, else the organization's base currency."""
        for parent in ("opportunityid", "pricelevelid"):
            owner = self.resolve(row.get(parent))
            if owner is not None and isinstance(owner.get("transactioncurrencyid"), Ref):
                return Ref("transactioncurrency", owner["transactioncurrencyid"].id)
        if self.base_currency is None:
            return None
        return Ref("transactioncurrency", self.base_currency)

    def _rules(
        self, table: Table, row: dict[str, Any], before: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        name = table.logical_name
        if name in ("contact", "systemuser"):
            parts = (row.get("firstname"), row.get("lastname"))
            row["fullname"] = " ".join(p for p in parts if p) or None
        if name == "product" and before is None:
            if not isinstance(row.get("defaultuomscheduleid"), Ref):
                raise DataverseError(400, "0x80043b0a", "The unit schedule id is missing.")
            if not isinstance(row.get("defaultuomid"), Ref):
                raise DataverseError(400, "0x80040203", "Invalid argument: defaultuomid.")
            self._unit_in_group(row["defaultuomid"], row["defaultuomscheduleid"])
        if name == "productpricelevel":
            row = self._price_list_item(row, before)
        if name == "opportunityproduct":
            row = self._opportunity_product(row)
        return row

    def _unit_in_group(self, unit: Ref, group: Ref) -> None:
        found = self.resolve(unit)
        if found is None:
            raise not_found("uom", unit.id)
        if found.get("uomscheduleid") != group:
            raise DataverseError(
                400, "0x80040203", "Invalid argument: the unit does not belong to the unit group."
            )

    def _price_list_item(
        self, row: dict[str, Any], before: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """A price list item needs its price list, product and unit; it takes the product's
        unit group and the price list's currency, and is unique per list, product and unit."""
        for column in ("pricelevelid", "productid", "uomid"):
            if not isinstance(row.get(column), Ref):
                raise DataverseError(400, "0x80040203", f"Invalid argument: {column} is required.")
        product = self.resolve(row["productid"])
        price_list = self.resolve(row["pricelevelid"])
        if product is None:
            raise not_found("product", row["productid"].id)
        if price_list is None:
            raise not_found("pricelevel", row["pricelevelid"].id)
        group = product.get("defaultuomscheduleid")
        if isinstance(group, Ref):
            self._unit_in_group(row["uomid"], group)
        row["uomscheduleid"] = group
        row["transactioncurrencyid"] = price_list.get("transactioncurrencyid")
        if row.get("pricingmethodcode") is None:
            row["pricingmethodcode"] = 1
        own_id = row.get("productpricelevelid")
        for other in self.all("productpricelevel"):
            if other.get("productpricelevelid") == own_id:
                continue
            if all(other.get(c) == row[c] for c in ("pricelevelid", "productid", "uomid")):
                raise DataverseError(
                    412,
                    "0x80040237",
                    "This product and unit combination has a price for this price list.",
                )
        return row

    def _opportunity_product(self, row: dict[str, Any]) -> dict[str, Any]:
        """An opportunity product belongs to an opportunity, in its currency; Dynamics computes
        its amounts (``baseamount`` = quantity times price per unit, ``extendedamount`` less the
        manual discount)."""
        opportunity = self.resolve(row.get("opportunityid"))
        if opportunity is None:
            raise DataverseError(400, "0x80040203", "Invalid argument: opportunityid is required.")
        if not isinstance(row.get("productid"), Ref) and not row.get("isproductoverridden"):
            raise DataverseError(
                400,
                "0x80040203",
                "A product or a write-in product (isproductoverridden and productdescription) "
                "is required.",
            )
        row["transactioncurrencyid"] = opportunity.get("transactioncurrencyid")
        quantity = row.get("quantity") or Decimal(0)
        price = row.get("priceperunit") or Decimal(0)
        base = (Decimal(quantity) * Decimal(price)).quantize(Decimal("0.0001"))
        row["baseamount"] = base
        row["extendedamount"] = base - Decimal(row.get("manualdiscountamount") or 0)
        return row

    def _after_write(self, table: Table, row: Mapping[str, Any]) -> None:
        if table.logical_name == "opportunityproduct":
            self._recalculate(row.get("opportunityid"))

    def _recalculate(self, opportunity: Any) -> None:
        """Dynamics recalculates an opportunity's total when its products change: a new row
        version, which change tracking sees."""
        row = self.resolve(opportunity)
        if row is None:
            return
        total = sum(
            (
                Decimal(line.get("extendedamount") or 0)
                for line in self.find("opportunityproduct", opportunityid=opportunity)
            ),
            Decimal(0),
        )
        row["totalamount"] = total.quantize(Decimal("0.0001"))
        self.touch("opportunity", row["opportunityid"])

    def _check_keys(self, table: Table, row: Mapping[str, Any], record_id: str) -> None:
        for key in table.keys:
            values = [row.get(column) for column in key.attributes]
            if any(v is None for v in values):
                continue
            for other in self.all(table.logical_name):
                if other[table.primary_key] == record_id:
                    continue
                if [other.get(c) for c in key.attributes] == values:
                    raise DataverseError(
                        412,
                        "0x80060892",
                        f"A record that has the attribute values {', '.join(map(str, values))} "
                        "already exists. The entity key "
                        f"{key.schema_name} requires that this set of attributes contains unique "
                        "values. Select unique values and try again.",
                    )


def _first_status(table: Table) -> int:
    column = table.columns.get("statuscode")
    if column is None or not column.options:
        return 1
    return 1 if 1 in column.options else min(column.options)
