"""Check a Dynamics mapping against the environment's table definitions (``check_schema``).

One metadata request per table::

    GET EntityDefinitions(LogicalName='opportunity')?$select=LogicalName,EntitySetName
        &$expand=Attributes($select=LogicalName),
                 ManyToOneRelationships($select=ReferencingAttribute,ReferencedEntity,
                                        ReferencingEntityNavigationPropertyName),
                 OneToManyRelationships($select=ReferencedEntityNavigationPropertyName),
                 Keys($select=KeyAttributes)

and every mapped table, column, lookup (and the navigation property dealbridge uses for it),
relationship, entity set and alternate key is checked. Each problem is one line that starts
with the mapping key to fix (``deal.fields.contract_start: ...``).

Types and lengths are compared with what dealbridge puts in each column
(``crm/field_needs.py``). ``MaxLength`` is not a property of the base ``AttributeMetadata``
that ``Attributes`` lists, so, as Microsoft's "Query table definitions" documents, the text
columns' lengths come from the collection cast to the derived type, for a table with a sized
need on such a column only::

    GET EntityDefinitions(LogicalName='opportunity')/Attributes/
        Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength

(and ``MemoAttributeMetadata`` for multiple-lines-of-text columns).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.crm.base import CrmNotFound
from connector.crm.dynamics.client import DataverseClient
from connector.crm.dynamics.odata import quote_literal
from connector.crm.field_needs import NEEDS
from connector.mappings import CrmMapping

__all__ = ["TableDefinition", "check_mapping"]

FIX = "run `python -m connector.crm.dynamics.definitions --apply` or fix the mapping"


@dataclass
class TableDefinition:
    logical_name: str
    entity_set: str | None
    columns: set[str] = field(default_factory=set)
    #: column → its AttributeType (String, Money, DateTime, ...)
    types: dict[str, str] = field(default_factory=dict)
    #: lookup column → [(target table, navigation property)], several for customer lookups
    lookups: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    collections: set[str] = field(default_factory=set)
    keys: list[list[str]] = field(default_factory=list)


def fetch_table(client: DataverseClient, logical_name: str) -> TableDefinition | None:
    params = {
        "$select": "LogicalName,EntitySetName",
        "$expand": (
            "Attributes($select=LogicalName,AttributeType),"
            "ManyToOneRelationships($select=ReferencingAttribute,ReferencedEntity,"
            "ReferencingEntityNavigationPropertyName),"
            "OneToManyRelationships($select=ReferencedEntityNavigationPropertyName),"
            "Keys($select=KeyAttributes)"
        ),
    }
    try:
        data = client.get_json(
            f"EntityDefinitions(LogicalName={quote_literal(logical_name)})", params=params
        )
    except CrmNotFound:
        return None
    table = TableDefinition(
        logical_name=str(data.get("LogicalName") or logical_name),
        entity_set=data.get("EntitySetName"),
    )
    for attribute in data.get("Attributes") or []:
        if isinstance(attribute, Mapping) and attribute.get("LogicalName"):
            table.columns.add(str(attribute["LogicalName"]))
            if attribute.get("AttributeType"):
                table.types[str(attribute["LogicalName"])] = str(attribute["AttributeType"])
    for relation in data.get("ManyToOneRelationships") or []:
        if isinstance(relation, Mapping) and relation.get("ReferencingAttribute"):
            table.lookups.setdefault(str(relation["ReferencingAttribute"]), []).append(
                (
                    str(relation.get("ReferencedEntity") or ""),
                    str(relation.get("ReferencingEntityNavigationPropertyName") or ""),
                )
            )
    for relation in data.get("OneToManyRelationships") or []:
        if isinstance(relation, Mapping) and relation.get("ReferencedEntityNavigationPropertyName"):
            table.collections.add(str(relation["ReferencedEntityNavigationPropertyName"]))
    for key in data.get("Keys") or []:
        if isinstance(key, Mapping) and isinstance(key.get("KeyAttributes"), list):
            table.keys.append([str(a) for a in key["KeyAttributes"]])
    return table


def fetch_max_lengths(client: DataverseClient, logical_name: str, kind: str) -> dict[str, int]:
    """Column → ``MaxLength`` for the table's ``{kind}AttributeMetadata`` columns."""
    data = client.get_json(
        f"EntityDefinitions(LogicalName={quote_literal(logical_name)})/Attributes/"
        f"Microsoft.Dynamics.CRM.{kind}AttributeMetadata",
        params={"$select": "LogicalName,MaxLength"},
    )
    lengths: dict[str, int] = {}
    for attribute in data.get("value") or []:
        if not isinstance(attribute, Mapping):
            continue
        length = attribute.get("MaxLength")
        if (
            attribute.get("LogicalName")
            and isinstance(length, int)
            and not isinstance(length, bool)
        ):
            lengths[str(attribute["LogicalName"])] = length
    return lengths


class _Checker:
    def __init__(
        self,
        client: DataverseClient,
        navigation: Callable[[str, str], str],
    ) -> None:
        self.client = client
        self.navigation = navigation
        self.tables: dict[str, TableDefinition | None] = {}
        self.lengths: dict[tuple[str, str], Mapping[str, int]] = {}
        self.problems: list[str] = []

    def table(self, name: str) -> TableDefinition | None:
        if name not in self.tables:
            self.tables[name] = fetch_table(self.client, name)
        return self.tables[name]

    def max_lengths(self, table: str, kind: str) -> Mapping[str, int]:
        """``MaxLength`` of the table's columns of AttributeType ``kind`` (String, Memo)."""
        if (table, kind) not in self.lengths:
            self.lengths[(table, kind)] = fetch_max_lengths(self.client, table, kind)
        return self.lengths[(table, kind)]

    def column(self, key: str, table: TableDefinition, column: str) -> None:
        if column not in table.columns:
            self.problems.append(
                f"{key}: column {column!r} does not exist on table {table.logical_name!r}; {FIX}"
            )

    def lookup(
        self, key: str, table: TableDefinition, column: str, *, navigated: bool = True
    ) -> str | None:
        """Check a lookup column and, when dealbridge expands or binds it (``navigated``), its
        navigation property; returns the table it points at."""
        if column not in table.columns:
            self.column(key, table, column)
            return None
        if column not in table.lookups:
            self.problems.append(
                f"{key}: column {column!r} on table {table.logical_name!r} is not a lookup"
            )
            return None
        targets = table.lookups[column]
        used = self.navigation(table.logical_name, column)
        for target, actual in targets:
            if actual == used:
                return target
        target, actual = targets[0]
        if navigated and actual:
            self.problems.append(
                f"{key}: the lookup {column!r} has the navigation property {actual!r}, not "
                f"{used!r}; set options.navigation_properties.{table.logical_name}.{column}: "
                f"{actual}"
            )
        return target

    def path(self, key: str, table: TableDefinition, path: str) -> None:
        first, _, rest = path.partition(".")
        if not rest:
            self.column(key, table, first)
            return
        target = self.lookup(key, table, first)
        if not target:
            return
        target_table = self.table(target)
        if target_table is not None:
            self.path(key, target_table, rest)

    def key(self, key: str, table: TableDefinition, column: str) -> None:
        self.column(key, table, column)
        if column in table.columns and [column] not in table.keys:
            self.problems.append(
                f"{key}: table {table.logical_name!r} has no alternate key on {column!r}, which "
                f"upserts need; {FIX}"
            )


def _section_table(
    checker: _Checker, key: str, section: Mapping[str, Any]
) -> TableDefinition | None:
    name = str(section["object"])
    table = checker.table(name)
    if table is None:
        checker.problems.append(f"{key}.object: table {name!r} does not exist; {FIX}")
        return None
    configured = section.get("entity_set")
    if configured and table.entity_set and configured != table.entity_set:
        checker.problems.append(
            f"{key}.entity_set: is {configured!r} but table {name!r} has the entity set "
            f"{table.entity_set!r}"
        )
    return table


def _fields(section: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for name, path in (section.get("fields_") or {}).items():
        if path:
            yield str(name), str(path)


def check_mapping(
    client: DataverseClient, mapping: CrmMapping, navigation: Callable[[str, str], str]
) -> list[str]:
    checker = _Checker(client, navigation)
    options: Mapping[str, Any] = mapping.options or {}
    deal_lookups = {"account_id"}
    deal = _section_table(checker, "deal", mapping.deal)
    if deal is not None:
        for name, path in _fields(mapping.deal):
            if name in deal_lookups:
                checker.lookup(f"deal.fields.{name}", deal, path)
            else:
                checker.path(f"deal.fields.{name}", deal, path)
        checker.column("deal.closed_when.field", deal, str(mapping.deal["closed_when"]["field"]))
        lookup = mapping.deal["billing_contact"].get("lookup_field")
        if lookup:
            checker.lookup("deal.billing_contact.lookup_field", deal, str(lookup))
        for name, column in (mapping.deal["writeback"] or {}).items():
            if column:
                checker.column(f"deal.writeback.{name}", deal, str(column))
        relationship = str(mapping.line_item["relationship"])
        if relationship not in deal.collections:
            checker.problems.append(
                f"line_item.relationship: table {deal.logical_name!r} has no relationship "
                f"{relationship!r} to its line items"
            )
    line = _section_table(checker, "line_item", mapping.line_item)
    if line is not None:
        for name, path in _fields(mapping.line_item):
            if name == "product_id":
                checker.lookup(f"line_item.fields.{name}", line, path, navigated=False)
            else:
                checker.path(f"line_item.fields.{name}", line, path)
        write_in = options.get("write_in_product_field")
        if write_in:
            checker.column("options.write_in_product_field", line, str(write_in))
    account = _section_table(checker, "account", mapping.account)
    if account is not None:
        for name, path in _fields(mapping.account):
            checker.path(f"account.fields.{name}", account, path)
        for name, column in (mapping.account["writeback"] or {}).items():
            if column:
                checker.column(f"account.writeback.{name}", account, str(column))
        fallback = mapping.deal["billing_contact"].get("account_fallback_field")
        if fallback:
            checker.lookup("deal.billing_contact.account_fallback_field", account, str(fallback))
        currency = options.get("account_currency")
        if currency:
            checker.path("options.account_currency", account, str(currency))
    contact = _section_table(checker, "contact", mapping.contact)
    if contact is not None:
        for name, path in _fields(mapping.contact):
            checker.path(f"contact.fields.{name}", contact, path)
        link = options.get("contact_account_field")
        if link:
            checker.lookup("options.contact_account_field", contact, str(link), navigated=False)
    invoice = _section_table(checker, "invoice", mapping.invoice)
    if invoice is not None:
        checker.key("invoice.external_id", invoice, str(mapping.invoice["external_id"]))
        for name, path in _fields(mapping.invoice):
            if name in ("account", "deal", "record_currency"):
                checker.lookup(f"invoice.fields.{name}", invoice, path)
            else:
                checker.path(f"invoice.fields.{name}", invoice, path)
    tables = {"deal": deal, "account": account, "invoice": invoice}
    checker.problems.extend(_type_problems(mapping, tables, checker.max_lengths))
    if mapping.product:
        product = _section_table(checker, "product", mapping.product)
        if product is not None:
            if mapping.product.get("external_id"):
                checker.key("product.external_id", product, str(mapping.product["external_id"]))
            for name, path in _fields(mapping.product):
                checker.path(f"product.fields.{name}", product, path)
    return checker.problems


#: Dataverse AttributeTypes that can hold each kind of value (``crm/field_needs.py``).
_DATAVERSE_TYPES: dict[str, frozenset[str]] = {
    "text": frozenset({"String", "Memo", "Picklist", "State", "Status"}),
    "long_text": frozenset({"Memo", "String"}),
    "money": frozenset({"Money", "Decimal", "Double"}),
    "number": frozenset({"Integer", "BigInt", "Decimal", "Double", "Money"}),
    "date": frozenset({"DateTime"}),
    "boolean": frozenset({"Boolean"}),
    "url": frozenset({"String", "Memo"}),
}


#: AttributeTypes whose ``MaxLength`` limits the text (a choice's labels are the org's own).
_SIZED = ("String", "Memo")


def _type_problems(
    mapping: CrmMapping,
    tables: Mapping[str, TableDefinition | None],
    max_lengths: Callable[[str, str], Mapping[str, int]],
) -> list[str]:
    """Each mapped column whose type cannot hold what dealbridge puts there, or whose
    ``MaxLength`` is shorter than the longest value dealbridge writes to it."""
    sections: dict[str, tuple[str, Mapping[str, Any]]] = {
        "deal": ("deal", mapping.deal["fields_"]),
        "deal.writeback": ("deal", mapping.deal["writeback"] or {}),
        "account": ("account", mapping.account["fields_"]),
        "account.writeback": ("account", mapping.account["writeback"] or {}),
        "invoice": (
            "invoice",
            {**mapping.invoice["fields_"], "external_id": mapping.invoice["external_id"]},
        ),
    }
    problems: list[str] = []
    for (section, key), need in sorted(NEEDS.items()):
        table_key, paths = sections[section]
        table = tables.get(table_key)
        column = paths.get(key)
        if table is None or not column or "." in str(column):
            continue
        kind = table.types.get(str(column))
        if kind is None:
            continue
        label = f"{section}.{key}" if "writeback" in section else f"{section}.fields.{key}"
        if kind not in _DATAVERSE_TYPES[need.kind]:
            problems.append(
                f"{label}: column {table.logical_name}.{column} is a {kind} column; "
                f"it must be {need.describe()}"
            )
            continue
        if not need.min_length or kind not in _SIZED:
            continue
        length = max_lengths(table.logical_name, kind).get(str(column))
        if length is not None and 0 < length < need.min_length:
            problems.append(
                f"{label}: column {table.logical_name}.{column} holds {length} characters "
                f"(MaxLength); it must hold at least {need.min_length}"
            )
    return problems
