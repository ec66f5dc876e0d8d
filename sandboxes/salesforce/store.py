"""In-memory records with Salesforce's write rules: validation, defaults, derived fields, deletes.

Not thread-safe by itself: the sandbox serialises every API call behind one lock. Writes are
validated completely before anything changes, so a failed single write never leaves partial
state; :meth:`Store.atomic` adds all-or-none groups (composite and collections ``allOrNone``).
Committed changes are reported to listeners (outbound messages) when the outermost group ends.

Cost: a write is O(1) in the size of its table (but for the standard objects' own rules:
price book entries, line item roll-ups, deletes of parents). Fields looked up by value
(external ids, unique fields, ``idLookup`` fields: upserts, foreign keys by external id,
duplicate checks) have an index by value, kept in step by every change of a stored record
(``_touch`` before, ``_remember`` after); ``atomic`` keeps an undo log of the records it
changed instead of copying the tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import ids
from .errors import ApiError, invalid_field, not_found, not_found_sobject
from .ids import IdGenerator
from .schema import FieldDef, ObjectDef, PicklistValue, Schema
from .standard_objects import OPPORTUNITY_STAGES
from .values import coerce, render, truncate_ms

Record = dict[str, Any]
#: One undo-log entry: table, record id, the record as it was (None: it did not exist).
UndoEntry = tuple[str, str, Record | None]

AUDIT_FIELDS = ("CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById")


@dataclass(frozen=True)
class Change:
    """One committed write: ``before`` is None for creates, ``after`` is None for deletes."""

    sobject: str
    record_id: str
    before: Record | None
    after: Record | None


ChangeListener = Callable[[list[Change]], None]


def same_value(field: FieldDef, a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str) and not field.case_sensitive:
        return a.lower() == b.lower()
    return bool(a == b)


def index_key(field: FieldDef, value: Any) -> Any:
    """The key under which ``value`` is indexed: equal keys iff :func:`same_value`."""
    if isinstance(value, str) and not field.case_sensitive:
        return value.lower()
    return value


def _indexed(obj: ObjectDef) -> list[FieldDef]:
    return [f for f in obj.fields.values() if f.external_id or f.unique or f.id_lookup]


class Store:
    def __init__(
        self,
        schema: Schema,
        id_generator: IdGenerator,
        now: Callable[[], datetime],
        user_id: str,
    ) -> None:
        self.schema = schema
        self._ids = id_generator
        self._now = now
        self.user_id = user_id
        self._tables: dict[str, dict[str, Record]] = {name: {} for name in schema.objects}
        self._pending: list[Change] = []
        self._depth = 0
        self._undo: list[UndoEntry] = []
        # table -> field -> index_key(value) -> ids of the live records holding that value
        self._indexed_fields = {name: _indexed(obj) for name, obj in schema.objects.items()}
        self._index: dict[str, dict[str, dict[Any, set[str]]]] = {
            name: {f.name: {} for f in fields} for name, fields in self._indexed_fields.items()
        }
        self.listeners: list[ChangeListener] = []

    # ----------------------------------------------------------------- lookups

    def object(self, name: str) -> ObjectDef:
        obj = self.schema.get(name)
        if obj is None:
            raise not_found_sobject(name)
        return obj

    def object_for_id(self, record_id: str) -> ObjectDef | None:
        return self.schema.by_prefix(ids.prefix_of(record_id))

    def rows(self, sobject: str, *, include_deleted: bool = False) -> list[Record]:
        table = self._tables[self.object(sobject).name]
        return [r for r in table.values() if include_deleted or not r["IsDeleted"]]

    def get(self, sobject: str, record_id: str, *, include_deleted: bool = False) -> Record | None:
        obj = self.object(sobject)
        try:
            key = ids.to18(record_id)
        except ValueError:
            return None
        record = self._tables[obj.name].get(key)
        if record is None or (record["IsDeleted"] and not include_deleted):
            return None
        return record

    def find_by(self, sobject: str, field_name: str, value: Any) -> list[Record]:
        obj = self.object(sobject)
        field = obj.field(field_name)
        if field is None:
            return []
        if field.type in ("id", "reference") and isinstance(value, str):
            try:
                value = ids.to18(value)
            except ValueError:
                return []
        table = self._tables[obj.name]
        index = self._index[obj.name].get(field.name)
        if index is not None and value is not None:
            try:
                found = index.get(index_key(field, value))
            except TypeError:  # unhashable: no stored (hashable) value can equal it
                found = None
            else:
                if not found:
                    return []
                if len(found) == 1:
                    return [table[next(iter(found))]]
                return [r for r in table.values() if r["Id"] in found]  # in table order
        return [
            r
            for r in table.values()
            if not r["IsDeleted"]
            and r.get(field.name) is not None
            and same_value(field, r[field.name], value)
        ]

    def put_raw(self, sobject: str, values: Record) -> None:
        """Write fields without validation or side effects (org bootstrap only)."""
        obj = self.object(sobject)
        table = self._tables[obj.name]
        self._touch(obj.name, values["Id"])
        record = table.setdefault(values["Id"], {name: None for name in obj.fields})
        record.update(values)
        self._remember(obj.name, record)

    # ------------------------------------------------------------------ indexes

    def _touch(self, table: str, record_id: str) -> None:
        """Call before a stored record changes (or is added): logs its state for ``atomic``
        and takes it out of the indexes until :meth:`_remember` puts it back."""
        record = self._tables[table].get(record_id)
        if self._depth:
            self._undo.append((table, record_id, None if record is None else dict(record)))
        if record is not None:
            self._forget(table, record)

    def _forget(self, table: str, record: Record) -> None:
        index = self._index[table]
        for field in self._indexed_fields[table]:
            value = record.get(field.name)
            if value is None:
                continue
            try:
                key = index_key(field, value)
                holders = index[field.name].get(key)
            except TypeError:
                continue
            if holders is not None:
                holders.discard(record["Id"])
                if not holders:
                    del index[field.name][key]

    def _remember(self, table: str, record: Record) -> None:
        if record.get("IsDeleted"):
            return
        index = self._index[table]
        for field in self._indexed_fields[table]:
            value = record.get(field.name)
            if value is None:
                continue
            try:
                index[field.name].setdefault(index_key(field, value), set()).add(record["Id"])
            except TypeError:  # unhashable (raw bootstrap data): found by no lookup
                continue

    # ----------------------------------------------------------- transactions

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """All-or-none: any exception restores every table as it was; changes then vanish.

        Records changed inside are logged (as they were) when first touched; a rollback
        replays that log backwards, so its cost is the group's writes, not the org's size.
        """
        undo_mark = len(self._undo)
        pending_mark = len(self._pending)
        self._depth += 1
        try:
            yield
        except BaseException:
            self._rollback(undo_mark)
            del self._pending[pending_mark:]
            raise
        finally:
            self._depth -= 1
            if not self._depth:
                self._undo.clear()
        self._flush()

    def _rollback(self, undo_mark: int) -> None:
        while len(self._undo) > undo_mark:
            table_name, record_id, before = self._undo.pop()
            table = self._tables[table_name]
            current = table.get(record_id)
            if current is not None:
                self._forget(table_name, current)
            if before is None:
                table.pop(record_id, None)
            else:
                table[record_id] = before
                self._remember(table_name, before)

    def _emit(self, change: Change) -> None:
        self._pending.append(change)
        self._flush()

    def _flush(self) -> None:
        if self._depth or not self._pending:
            return
        changes, self._pending = self._pending, []
        for listener in self.listeners:
            listener(changes)

    # ------------------------------------------------------------------ writes

    def create(self, sobject: str, body: dict[str, Any], *, seed: bool = False) -> str:
        obj = self.object(sobject)
        if not obj.createable:
            raise ApiError(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", f"cannot insert {obj.name}")
        values = self._coerce_body(obj, body, creating=True, seed=seed)
        record: Record = {name: None for name in obj.fields}
        for f in obj.fields.values():
            if f.defaulted_on_create and f.default_value is not None:
                record[f.name] = f.default_value
        record.update(values)
        record["IsDeleted"] = False
        if "OwnerId" in obj.fields and record.get("OwnerId") is None:
            record["OwnerId"] = self.user_id
        self._check_required(obj, record, creating=True)
        self._check_references(obj, values)
        self._apply_rules(obj, record, values, None)
        self._check_unique(obj, record, None)
        record_id = self._ids.new(obj.key_prefix)
        stamp = truncate_ms(self._now())
        record["Id"] = record_id
        record.setdefault("CreatedDate", None)
        for audit in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
            if record.get(audit) is None:
                record[audit] = stamp
        if record.get("CreatedById") is None:
            record["CreatedById"] = self.user_id
        record["LastModifiedById"] = self.user_id
        if obj.custom and record.get("Name") is None and "Name" in obj.fields:
            record["Name"] = record_id
        self._derive(obj, record)
        self._touch(obj.name, record_id)
        self._tables[obj.name][record_id] = record
        self._remember(obj.name, record)
        self._after_write(obj, record)
        self._emit(Change(obj.name, record_id, None, dict(record)))
        return record_id

    def update(self, sobject: str, record_id: str, body: dict[str, Any]) -> None:
        obj = self.object(sobject)
        record = self._existing(obj, record_id)
        values = self._coerce_body(obj, body, creating=False, seed=False)
        candidate = {**record, **values}
        self._check_required(obj, candidate, creating=False)
        self._check_references(obj, values)
        self._apply_rules(obj, candidate, values, record)
        self._check_unique(obj, candidate, record["Id"])
        before = dict(record)
        stamp = truncate_ms(self._now())
        candidate["LastModifiedDate"] = stamp
        candidate["SystemModstamp"] = stamp
        candidate["LastModifiedById"] = self.user_id
        self._derive(obj, candidate)
        self._touch(obj.name, record["Id"])
        record.clear()
        record.update(candidate)
        self._remember(obj.name, record)
        self._after_write(obj, record)
        self._emit(Change(obj.name, record["Id"], before, dict(record)))

    def upsert(
        self, sobject: str, field_name: str, value: str, body: dict[str, Any]
    ) -> tuple[str, bool]:
        """Create or update by an external id (or ``Id``); returns ``(id, created)``."""
        obj = self.object(sobject)
        field = obj.field(field_name)
        if field is None or not (field.external_id or field.id_lookup or field.type == "id"):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        body = dict(body)
        for key in list(body):
            if key.lower() == field.name.lower():
                given = body.pop(key)
                if given is not None and str(given).lower() != str(value).lower():
                    raise invalid_field(
                        f"The value of the external ID field {field.name} in the request body "
                        f"doesn't match the value in the URL: {given}"
                    )
        if field.type == "id":
            if not value:
                return self.create(obj.name, body), True
            self.update(obj.name, value, body)
            return ids.to18(value), False
        matches = self.find_by(obj.name, field.name, value)
        if len(matches) > 1:
            raise ApiError(
                300,
                "MULTIPLE_CHOICES",
                f"More than one record found for external id field {field.name}",
                raw_body=[
                    f"/services/data/v{{version}}/sobjects/{obj.name}/{m['Id']}" for m in matches
                ],
            )
        if matches:
            self.update(obj.name, matches[0]["Id"], body)
            return str(matches[0]["Id"]), False
        return self.create(obj.name, {**body, field.name: value}), True

    def delete(self, sobject: str | None, record_id: str) -> None:
        obj = self.object(sobject) if sobject else self.object_for_id(record_id)
        if obj is None:
            raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}")
        if not obj.deletable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", "entity type cannot be deleted")
        record = self._existing(obj, record_id)
        self._delete_record(obj, record)

    def sync_currencies(self) -> None:
        """Every ``CurrencyIsoCode`` picklist lists the org's currencies, active or not."""
        currencies = sorted(
            self._tables.get("CurrencyType", {}).values(), key=lambda c: c["IsoCode"]
        )
        values = [
            PicklistValue(
                value=c["IsoCode"],
                label=c["IsoCode"],
                default=bool(c.get("IsCorporate")),
                active=bool(c.get("IsActive")),
            )
            for c in currencies
        ]
        for other in self.schema.objects.values():
            field = other.fields.get("CurrencyIsoCode")
            if field is not None:
                field.picklist_values = list(values)

    def _delete_record(self, obj: ObjectDef, record: Record) -> None:
        record_id = record["Id"]
        before = dict(record)
        stamp = truncate_ms(self._now())
        self._touch(obj.name, record_id)
        record["IsDeleted"] = True
        record["SystemModstamp"] = stamp
        for rel in obj.child_relationships:
            child_obj = self.object(rel.child_sobject)
            for child in list(self._tables[child_obj.name].values()):
                if child["IsDeleted"] or child.get(rel.field) != record_id:
                    continue
                if rel.cascade_delete:
                    self._delete_record(child_obj, child)
                else:
                    self._touch(child_obj.name, child["Id"])
                    child[rel.field] = None
                    child["SystemModstamp"] = stamp
                    self._remember(child_obj.name, child)
        self._after_write(obj, record)
        self._emit(Change(obj.name, record_id, before, None))

    def _existing(self, obj: ObjectDef, record_id: str) -> Record:
        try:
            key = ids.to18(record_id)
        except ValueError:
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {record_id}"
            ) from None
        record = self._tables[obj.name].get(key)
        if record is None:
            raise not_found()
        if record["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return record

    # -------------------------------------------------------------- validation

    def _coerce_body(
        self, obj: ObjectDef, body: dict[str, Any], *, creating: bool, seed: bool
    ) -> Record:
        if not isinstance(body, dict):
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of sobject from non-object value",
            )
        values: Record = {}
        readonly: list[str] = []
        for key, raw in body.items():
            if key == "attributes":
                continue
            field = obj.field(key)
            if field is None:
                relation = obj.relationship(key)
                if relation is not None and isinstance(raw, dict):
                    values[relation.name] = self._resolve_by_external_id(relation, raw)
                    continue
                raise invalid_field(f"No such column '{key}' on sobject of type {obj.name}")
            writable = field.createable if creating else field.updateable
            if seed and creating and field.name in AUDIT_FIELDS:
                writable = True
            if not writable:
                readonly.append(field.name)
                continue
            values[field.name] = coerce(field, raw)
        if readonly:
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.",
                readonly,
            )
        for name, value in list(values.items()):
            if value == "" and obj.fields[name].type in ("id", "reference"):
                values[name] = None
        return values

    def _resolve_by_external_id(self, relation: FieldDef, raw: dict[str, Any]) -> str:
        target = self.object(relation.reference_to[0])
        keys = [k for k in raw if k != "attributes"]
        if len(keys) != 1:
            raise invalid_field(
                f"{relation.relationship_name}: a foreign key reference must name exactly one "
                "external ID field"
            )
        key_field = target.field(keys[0])
        if key_field is None or not (key_field.external_id or key_field.id_lookup):
            raise invalid_field(f"No such column '{keys[0]}' on sobject of type {target.name}")
        matches = self.find_by(target.name, key_field.name, raw[keys[0]])
        if not matches:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {raw[keys[0]]} not found for field {key_field.name} "
                f"in entity {target.name}",
            )
        if len(matches) > 1:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {raw[keys[0]]} matches more than one record",
            )
        return str(matches[0]["Id"])

    def _check_required(self, obj: ObjectDef, record: Record, *, creating: bool) -> None:
        missing = [
            f.name
            for f in obj.fields.values()
            if not f.nillable
            and (f.createable if creating else f.updateable)
            and not f.defaulted_on_create
            and record.get(f.name) is None
        ]
        if missing:
            raise ApiError(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )

    def _check_references(self, obj: ObjectDef, values: Record) -> None:
        for name, value in values.items():
            field = obj.fields[name]
            if field.type != "reference" or value is None:
                continue
            targets = [self.object(t) for t in field.reference_to]
            target = next((t for t in targets if t.key_prefix == ids.prefix_of(value)), None)
            if target is None:
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{field.label}: id value of incorrect type: {value}",
                    [field.name],
                )
            parent = self._tables[target.name].get(value)
            if parent is None:
                raise ApiError(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field.name]
                )
            if parent["IsDeleted"]:
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [field.name])

    def _check_unique(self, obj: ObjectDef, record: Record, own_id: str | None) -> None:
        for field in obj.fields.values():
            if not field.unique or field.type == "id" or record.get(field.name) is None:
                continue
            for other in self.find_by(obj.name, field.name, record[field.name]):
                if other["Id"] != own_id:
                    raise ApiError(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {field.name} duplicates value on record "
                        f"with id: {other['Id']}",
                        [],
                    )

    # ------------------------------------------------- object-specific behaviour

    def _apply_rules(
        self, obj: ObjectDef, record: Record, values: Record, before: Record | None
    ) -> None:
        """Standard-object rules Salesforce enforces on writes (pricebooks, products...)."""
        if obj.name == "Opportunity":
            stage = record.get("StageName")
            stage_changed = before is None or before.get("StageName") != stage
            if stage_changed and "Probability" not in values and stage in OPPORTUNITY_STAGES:
                record["Probability"] = Decimal(OPPORTUNITY_STAGES[stage])
        elif obj.name == "PricebookEntry" and before is None:
            self._check_pricebook_entry(record)
        elif obj.name == "OpportunityLineItem":
            self._check_line_item(record, values, before)

    def _check_pricebook_entry(self, record: Record) -> None:
        pricebook = self._tables["Pricebook2"][record["Pricebook2Id"]]
        same_product = [
            e
            for e in self._tables["PricebookEntry"].values()
            if not e["IsDeleted"]
            and e["Product2Id"] == record["Product2Id"]
            and e["CurrencyIsoCode"] == record["CurrencyIsoCode"]
        ]
        if any(e["Pricebook2Id"] == record["Pricebook2Id"] for e in same_product):
            raise ApiError(
                400,
                "DUPLICATE_VALUE",
                "This price definition already exists in this price book",
                [],
            )
        if not pricebook["IsStandard"]:
            standard_ids = {p["Id"] for p in self._tables["Pricebook2"].values() if p["IsStandard"]}
            if not any(e["Pricebook2Id"] in standard_ids for e in same_product):
                raise ApiError(
                    400,
                    "STANDARD_PRICE_NOT_DEFINED",
                    "Before creating a custom price, create a standard price.",
                    [],
                )

    def _check_line_item(self, record: Record, values: Record, before: Record | None) -> None:
        if before is None:
            entry_id = record.get("PricebookEntryId")
            if entry_id is None:
                raise ApiError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [PricebookEntryId]",
                    ["PricebookEntryId"],
                )
            entry = self._tables["PricebookEntry"][entry_id]
            opportunity = self._tables["Opportunity"][record["OpportunityId"]]
            if not entry["IsActive"]:
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "field integrity exception: PricebookEntryId (pricebook entry is inactive)",
                    ["PricebookEntryId"],
                )
            if entry["CurrencyIsoCode"] != opportunity["CurrencyIsoCode"]:
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "field integrity exception: PricebookEntryId (pricebook entry currency code "
                    "does not match opportunity currency code)",
                    ["PricebookEntryId"],
                )
            pricebook_id = opportunity.get("Pricebook2Id")
            if pricebook_id is not None and pricebook_id != entry["Pricebook2Id"]:
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "field integrity exception: PricebookEntryId (pricebook entry is in a "
                    "different pricebook than the one assigned to the opportunity)",
                    ["PricebookEntryId"],
                )
            given_unit, given_total = "UnitPrice" in values, "TotalPrice" in values
            if given_unit and given_total:
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "field integrity exception: TotalPrice (cannot specify both unit price and "
                    "total price)",
                    ["TotalPrice"],
                )
            if not given_unit and not given_total:
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "field integrity exception: unknown (must specify either TotalPrice or "
                    "UnitPrice)",
                    [],
                )
        quantity = record.get("Quantity") or Decimal(0)
        if "TotalPrice" in values and values["TotalPrice"] is not None and quantity:
            record["UnitPrice"] = (Decimal(values["TotalPrice"]) / Decimal(quantity)).quantize(
                Decimal("0.01")
            )

    def _derive(self, obj: ObjectDef, record: Record) -> None:
        """Fields Salesforce computes: names, opportunity flags, line item prices."""
        if obj.name in ("Contact", "User"):
            record["Name"] = " ".join(
                p for p in (record.get("FirstName"), record.get("LastName")) if p
            )
        elif obj.name == "Opportunity":
            stage = record.get("StageName")
            record["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            record["IsWon"] = stage == "Closed Won"
        elif obj.name == "PricebookEntry":
            product = self._tables["Product2"][record["Product2Id"]]
            record["Name"] = product["Name"]
            record["ProductCode"] = product.get("ProductCode")
        elif obj.name == "OpportunityLineItem":
            entry = self._tables["PricebookEntry"][record["PricebookEntryId"]]
            opportunity = self._tables["Opportunity"][record["OpportunityId"]]
            product = self._tables["Product2"][entry["Product2Id"]]
            record["Product2Id"] = entry["Product2Id"]
            record["ListPrice"] = entry["UnitPrice"]
            record["CurrencyIsoCode"] = opportunity["CurrencyIsoCode"]
            record["Name"] = f"{opportunity['Name']} {product['Name']}"
            record["ProductCode"] = product.get("ProductCode")
            if record.get("UnitPrice") is None:
                record["UnitPrice"] = entry["UnitPrice"]
            discount = Decimal(record.get("Discount") or 0)
            total = Decimal(record["UnitPrice"]) * Decimal(record["Quantity"])
            record["TotalPrice"] = (total * (1 - discount / 100)).quantize(Decimal("0.01"))

    def _after_write(self, obj: ObjectDef, record: Record) -> None:
        """Roll line item totals up to the opportunity, as Salesforce does; a currency the org
        adds or (de)activates becomes (or stops being) a ``CurrencyIsoCode`` value."""
        if obj.name == "CurrencyType":
            self.sync_currencies()
        if obj.name == "OpportunityLineItem":
            opportunity = self._tables["Opportunity"][record["OpportunityId"]]
            self._touch("Opportunity", opportunity["Id"])
            if opportunity["Pricebook2Id"] is None and not record["IsDeleted"]:
                entry = self._tables["PricebookEntry"][record["PricebookEntryId"]]
                opportunity["Pricebook2Id"] = entry["Pricebook2Id"]
            items = [
                i
                for i in self._tables["OpportunityLineItem"].values()
                if i["OpportunityId"] == opportunity["Id"] and not i["IsDeleted"]
            ]
            opportunity["HasOpportunityLineItem"] = bool(items)
            if items:
                opportunity["Amount"] = sum((Decimal(i["TotalPrice"]) for i in items), Decimal(0))
            opportunity["SystemModstamp"] = truncate_ms(self._now())
            self._remember("Opportunity", opportunity)


def to_json(
    obj: ObjectDef,
    record: Record,
    version: str,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """A record as ``GET /sobjects/X/ID`` returns it: ``attributes`` then the fields."""
    out: dict[str, Any] = {
        "attributes": {
            "type": obj.name,
            "url": f"/services/data/v{version}/sobjects/{obj.name}/{record['Id']}",
        }
    }
    names = fields if fields is not None else list(obj.fields)
    for name in names:
        field = obj.fields[name]
        out[field.name] = render(field, record.get(field.name))
    return out
