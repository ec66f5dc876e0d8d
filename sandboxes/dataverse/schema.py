"""Tables, columns, relationships and alternate keys: the environment's metadata.

One ``Schema`` holds what ``EntityDefinitions`` and ``RelationshipDefinitions`` describe. The
standard tables come from :mod:`.standard_tables`; customizations (a publisher's tables,
columns, lookups and keys) are added through the same Web API calls an admin makes
(``POST EntityDefinitions``, ``…/Attributes``, ``RelationshipDefinitions``, ``…/Keys``), so
the sandbox knows nothing of any one product's columns.

Lookups are relationships: a one-to-many relationship names the lookup column on the
referencing table, its single-valued navigation property (``parentaccountid``) and the
collection-valued one on the referenced table (``opportunity_parent_account``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import DataverseError

NAMESPACE = uuid.UUID("0b7c3f5e-2d41-4c86-9a1e-5f6d7c8b9a01")
LANGUAGE = 1033

#: AttributeType → (metadata type, AttributeTypeName)
ATTRIBUTE_TYPES: dict[str, tuple[str, str]] = {
    "String": ("StringAttributeMetadata", "StringType"),
    "Memo": ("MemoAttributeMetadata", "MemoType"),
    "Integer": ("IntegerAttributeMetadata", "IntegerType"),
    "BigInt": ("BigIntAttributeMetadata", "BigIntType"),
    "Decimal": ("DecimalAttributeMetadata", "DecimalType"),
    "Double": ("DoubleAttributeMetadata", "DoubleType"),
    "Money": ("MoneyAttributeMetadata", "MoneyType"),
    "Boolean": ("BooleanAttributeMetadata", "BooleanType"),
    "DateTime": ("DateTimeAttributeMetadata", "DateTimeType"),
    "Picklist": ("PicklistAttributeMetadata", "PicklistType"),
    "State": ("StateAttributeMetadata", "StateType"),
    "Status": ("StatusAttributeMetadata", "StatusType"),
    "MultiSelectPicklist": ("MultiSelectPicklistAttributeMetadata", "MultiSelectPicklistType"),
    "Lookup": ("LookupAttributeMetadata", "LookupType"),
    "Customer": ("LookupAttributeMetadata", "CustomerType"),
    "Owner": ("LookupAttributeMetadata", "OwnerType"),
    "Uniqueidentifier": ("UniqueIdentifierAttributeMetadata", "UniqueidentifierType"),
    "EntityName": ("EntityNameAttributeMetadata", "EntityNameType"),
}
LOOKUP_KINDS = frozenset({"Lookup", "Customer", "Owner"})
CHOICE_KINDS = frozenset({"Picklist", "State", "Status"})
#: Metadata types a client may create with ``POST …/Attributes`` (lookups go through
#: ``RelationshipDefinitions``, as in Dataverse).
CREATABLE = {
    metadata: kind
    for kind, (metadata, _) in ATTRIBUTE_TYPES.items()
    if kind
    in (
        "String",
        "Memo",
        "Integer",
        "BigInt",
        "Decimal",
        "Double",
        "Money",
        "Boolean",
        "DateTime",
        "Picklist",
        "MultiSelectPicklist",
    )
}
#: Columns Dataverse maintains itself on every table that has them.
SYSTEM_COLUMNS = frozenset({"createdon", "modifiedon", "versionnumber", "createdby", "modifiedby"})


def metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def label(text: str | None) -> dict[str, Any]:
    localized = (
        [
            {
                "@odata.type": "#Microsoft.Dynamics.CRM.LocalizedLabel",
                "Label": text,
                "LanguageCode": LANGUAGE,
            }
        ]
        if text
        else []
    )
    return {
        "LocalizedLabels": localized,
        "UserLocalizedLabel": localized[0] if localized else None,
    }


def label_text(value: Any) -> str | None:
    """The first localized label of a ``Label`` body, or None."""
    if isinstance(value, Mapping):
        labels = value.get("LocalizedLabels")
        if isinstance(labels, list) and labels and isinstance(labels[0], Mapping):
            text = labels[0].get("Label")
            return str(text) if text is not None else None
    return None


@dataclass
class Column:
    logical_name: str
    kind: str
    schema_name: str = ""
    display_name: str = ""
    max_length: int | None = None
    precision: int | None = None  # decimal places (Decimal; Money when precision_source 0)
    #: Money: 0 = ``precision``, 1 = the organization's pricing precision, 2 = the row's
    #: currency's precision (``transactioncurrency.currencyprecision``).
    precision_source: int | None = None
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    date_only: bool = False
    options: dict[int, str] = field(default_factory=dict)  # choices (and Yes/No labels)
    required: bool = False
    valid_for_create: bool = True
    valid_for_update: bool = True
    custom: bool = False
    format: str | None = None  # String: Text, Email, Url, Phone

    def __post_init__(self) -> None:
        if not self.schema_name:
            self.schema_name = self.logical_name


@dataclass
class Relationship:
    """One-to-many: rows of ``referencing_entity`` point at one ``referenced_entity`` row."""

    schema_name: str
    referenced_entity: str
    referenced_attribute: str
    referencing_entity: str
    referencing_attribute: str
    referenced_navigation: str  # collection on the referenced table
    referencing_navigation: str  # single-valued, on the referencing table
    custom: bool = False


@dataclass
class Key:
    logical_name: str
    schema_name: str
    attributes: list[str]
    display_name: str = ""


@dataclass
class Table:
    logical_name: str
    entity_set: str
    primary_name: str | None
    schema_name: str = ""
    display_name: str = ""
    display_collection_name: str = ""
    ownership: str = "UserOwned"
    custom: bool = False
    change_tracking: bool = True
    columns: dict[str, Column] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.schema_name:
            self.schema_name = self.logical_name

    @property
    def primary_key(self) -> str:
        return f"{self.logical_name}id"

    def column(self, name: str) -> Column | None:
        return self.columns.get(name)

    def add(self, column: Column) -> None:
        self.columns[column.logical_name] = column


class Schema:
    def __init__(self, tables: Iterable[Table], relationships: Iterable[Relationship]) -> None:
        self.tables: dict[str, Table] = {t.logical_name: t for t in tables}
        self.relationships: dict[str, Relationship] = {r.schema_name: r for r in relationships}

    # ------------------------------------------------------------------ look-ups

    def table(self, logical_name: str) -> Table | None:
        return self.tables.get(logical_name)

    def by_entity_set(self, entity_set: str) -> Table | None:
        return next((t for t in self.tables.values() if t.entity_set == entity_set), None)

    def targets(self, table: str, column: str) -> dict[str, str]:
        """A lookup column's target tables → the navigation property to each."""
        return {
            r.referenced_entity: r.referencing_navigation
            for r in self.relationships.values()
            if r.referencing_entity == table and r.referencing_attribute == column
        }

    def navigation(self, table: str, name: str) -> tuple[str, str] | None:
        """``(lookup column, target table)`` of a single-valued navigation property."""
        for r in self.relationships.values():
            if r.referencing_entity == table and r.referencing_navigation == name:
                return r.referencing_attribute, r.referenced_entity
        return None

    def collection(self, table: str, name: str) -> tuple[str, str] | None:
        """``(related table, its lookup column)`` of a collection-valued navigation property."""
        for r in self.relationships.values():
            if r.referenced_entity == table and r.referenced_navigation == name:
                return r.referencing_entity, r.referencing_attribute
        return None

    # ------------------------------------------------------------------ customizations

    def _check_prefix(self, schema_name: str, prefixes: Iterable[str]) -> None:
        prefix = schema_name.split("_", 1)[0].lower() if "_" in schema_name else ""
        if prefix not in {p.lower() for p in prefixes}:
            raise DataverseError(
                400,
                "0x80044363",
                f"The schema name {schema_name} must start with the customization prefix of a "
                "publisher (prefix_Name)",
            )

    def create_table(self, body: Mapping[str, Any], prefixes: Iterable[str]) -> Table:
        schema_name = _text(body, "SchemaName")
        self._check_prefix(schema_name, prefixes)
        logical = schema_name.lower()
        if logical in self.tables:
            raise DataverseError(
                400,
                "0x80044363",
                f"An entity with the specified name {logical} already exists. Specify a unique "
                "name.",
            )
        attributes = body.get("Attributes") or []
        primary = [a for a in attributes if isinstance(a, Mapping) and a.get("IsPrimaryName")]
        if len(primary) != 1:
            raise DataverseError(
                400, "0x80040203", "A new table needs exactly one attribute with IsPrimaryName."
            )
        ownership = str(body.get("OwnershipType") or "UserOwned")
        table = Table(
            logical_name=logical,
            entity_set=plural(logical),
            primary_name=_text(primary[0], "SchemaName").lower(),
            schema_name=schema_name,
            display_name=label_text(body.get("DisplayName")) or schema_name,
            display_collection_name=label_text(body.get("DisplayCollectionName")) or "",
            ownership=ownership,
            custom=True,
            change_tracking=bool(body.get("ChangeTrackingEnabled", False)),
        )
        table.add(Column(table.primary_key, "Uniqueidentifier", valid_for_update=False))
        for attribute in attributes:
            table.add(column_from_body(attribute))
        for column in system_columns(table.ownership):
            table.add(column)
        self.tables[logical] = table
        if ownership == "UserOwned":
            self.relationships[f"user_{logical}"] = Relationship(
                f"user_{logical}", "systemuser", "systemuserid", logical, "ownerid",
                f"user_{logical}", "owninguser",
            )  # fmt: skip
        return table

    def create_column(
        self, table: Table, body: Mapping[str, Any], prefixes: Iterable[str]
    ) -> Column:
        column = column_from_body(body)
        self._check_prefix(column.schema_name, prefixes)
        if column.logical_name in table.columns:
            raise DataverseError(
                400,
                "0x80044363",
                f"An attribute with the specified name {column.logical_name} already exists on "
                f"{table.logical_name}.",
            )
        table.add(column)
        if column.kind == "Money":
            self._add_currency(table)
        return column

    def _add_currency(self, table: Table) -> None:
        """What Dataverse adds to a table with its first Currency (Money) column: the row's
        currency, the ``transactioncurrencyid`` lookup to ``transactioncurrency`` (navigation
        property ``transactioncurrencyid``, relationship ``TransactionCurrency_<table>``), so
        every Money column of the row is in that currency. (Dataverse also adds
        ``exchangerate`` and a ``<column>_base`` per Money column; the sandbox models neither,
        on any table: docs/sandboxes.md.)"""
        if "transactioncurrencyid" in table.columns or "transactioncurrency" not in self.tables:
            return
        table.add(Column("transactioncurrencyid", "Lookup", schema_name="TransactionCurrencyId"))
        name = f"TransactionCurrency_{table.logical_name}"
        self.relationships[name] = Relationship(
            name, "transactioncurrency", "transactioncurrencyid", table.logical_name,
            "transactioncurrencyid", name, "transactioncurrencyid",
        )  # fmt: skip

    def create_relationship(self, body: Mapping[str, Any], prefixes: Iterable[str]) -> Relationship:
        kind = str(body.get("@odata.type", "")).rsplit(".", 1)[-1]
        if kind != "OneToManyRelationshipMetadata":
            raise DataverseError(
                400, "0x80040203", f"Only one-to-many relationships can be created, not {kind}."
            )
        schema_name = _text(body, "SchemaName")
        self._check_prefix(schema_name, prefixes)
        if schema_name in self.relationships:
            raise DataverseError(
                400, "0x80044363", f"A relationship named {schema_name} already exists."
            )
        referenced = self.tables.get(_text(body, "ReferencedEntity"))
        referencing = self.tables.get(_text(body, "ReferencingEntity"))
        if referenced is None or referencing is None:
            missing = (
                body.get("ReferencedEntity")
                if referenced is None
                else body.get("ReferencingEntity")
            )
            raise DataverseError(
                404, "0x80040217", f"Could not find entity with logical name '{missing}'."
            )
        lookup = body.get("Lookup")
        if not isinstance(lookup, Mapping):
            raise DataverseError(400, "0x80040203", "The relationship needs a Lookup attribute.")
        column = Column(
            _text(lookup, "SchemaName").lower(),
            "Lookup",
            schema_name=_text(lookup, "SchemaName"),
            display_name=label_text(lookup.get("DisplayName")) or "",
            required=_required(lookup),
            custom=True,
        )
        if column.logical_name in referencing.columns:
            raise DataverseError(
                400,
                "0x80044363",
                f"An attribute with the specified name {column.logical_name} already exists on "
                f"{referencing.logical_name}.",
            )
        referencing.add(column)
        relationship = Relationship(
            schema_name=schema_name,
            referenced_entity=referenced.logical_name,
            referenced_attribute=str(body.get("ReferencedAttribute") or referenced.primary_key),
            referencing_entity=referencing.logical_name,
            referencing_attribute=column.logical_name,
            referenced_navigation=str(
                body.get("ReferencedEntityNavigationPropertyName") or schema_name
            ),
            # Dataverse names the single-valued navigation property after the lookup's
            # SchemaName unless the request says otherwise.
            referencing_navigation=str(
                body.get("ReferencingEntityNavigationPropertyName") or column.schema_name
            ),
            custom=True,
        )
        self.relationships[schema_name] = relationship
        return relationship

    def create_key(self, table: Table, body: Mapping[str, Any], prefixes: Iterable[str]) -> Key:
        schema_name = _text(body, "SchemaName")
        self._check_prefix(schema_name, prefixes)
        attributes = body.get("KeyAttributes")
        if not isinstance(attributes, list) or not attributes:
            raise DataverseError(400, "0x80040203", "KeyAttributes must list the key's columns.")
        for name in attributes:
            column = table.column(str(name))
            if column is None:
                raise DataverseError(
                    400,
                    "0x80040203",
                    f"The attribute {name} does not exist on {table.logical_name}.",
                )
            if column.kind not in (
                "String",
                "Integer",
                "Decimal",
                "DateTime",
                "Lookup",
                "Picklist",
            ):
                raise DataverseError(
                    400,
                    "0x80040203",
                    f"The attribute {name} of type {column.kind} cannot be part of a key.",
                )
        if any(k.logical_name == schema_name.lower() for k in table.keys):
            raise DataverseError(400, "0x80044363", f"A key named {schema_name} already exists.")
        key = Key(
            schema_name.lower(),
            schema_name,
            [str(a) for a in attributes],
            label_text(body.get("DisplayName")) or "",
        )
        table.keys.append(key)
        return key

    # ------------------------------------------------------------------ metadata JSON

    def entity_metadata(self, table: Table) -> dict[str, Any]:
        """``EntityMetadata`` with its collections (``Attributes``, ``Keys``, relationships),
        which callers drop unless ``$expand`` asks for them."""
        return {
            "@odata.type": "#Microsoft.Dynamics.CRM.EntityMetadata",
            "MetadataId": metadata_id("entity", table.logical_name),
            "LogicalName": table.logical_name,
            "SchemaName": table.schema_name,
            "EntitySetName": table.entity_set,
            "LogicalCollectionName": table.entity_set,
            "PrimaryIdAttribute": table.primary_key,
            "PrimaryNameAttribute": table.primary_name,
            "OwnershipType": table.ownership,
            "IsCustomEntity": table.custom,
            "ChangeTrackingEnabled": table.change_tracking,
            "DisplayName": label(table.display_name or table.schema_name),
            "DisplayCollectionName": label(table.display_collection_name or None),
            "Attributes": [self.attribute_metadata(table, c) for c in table.columns.values()],
            "Keys": [self.key_metadata(table, k) for k in table.keys],
            "ManyToOneRelationships": [
                self.relationship_metadata(r)
                for r in self.relationships.values()
                if r.referencing_entity == table.logical_name
            ],
            "OneToManyRelationships": [
                self.relationship_metadata(r)
                for r in self.relationships.values()
                if r.referenced_entity == table.logical_name
            ],
            "ManyToManyRelationships": [],
        }

    def attribute_metadata(self, table: Table, column: Column) -> dict[str, Any]:
        metadata, type_name = ATTRIBUTE_TYPES[column.kind]
        out: dict[str, Any] = {
            "@odata.type": f"#Microsoft.Dynamics.CRM.{metadata}",
            "MetadataId": metadata_id("attribute", table.logical_name, column.logical_name),
            "LogicalName": column.logical_name,
            "SchemaName": column.schema_name,
            "EntityLogicalName": table.logical_name,
            "AttributeType": column.kind,
            "AttributeTypeName": {"Value": type_name},
            "IsCustomAttribute": column.custom,
            "IsPrimaryId": column.logical_name == table.primary_key,
            "IsPrimaryName": column.logical_name == table.primary_name,
            "IsValidForCreate": column.valid_for_create,
            "IsValidForUpdate": column.valid_for_update,
            "IsValidForRead": True,
            "RequiredLevel": {
                "Value": "ApplicationRequired" if column.required else "None",
                "CanBeChanged": True,
                "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
            },
            "DisplayName": label(column.display_name or column.schema_name),
        }
        if column.max_length is not None:
            out["MaxLength"] = column.max_length
        if column.format:
            out["FormatName"] = {"Value": column.format}
        if column.precision is not None:
            out["Precision"] = column.precision
        if column.precision_source is not None:
            out["PrecisionSource"] = column.precision_source
        if column.min_value is not None:
            out["MinValue"] = column.min_value
        if column.max_value is not None:
            out["MaxValue"] = column.max_value
        if column.kind == "DateTime":
            behavior = "DateOnly" if column.date_only else "UserLocal"
            out["DateTimeBehavior"] = {"Value": behavior}
            out["Format"] = "DateOnly" if column.date_only else "DateAndTime"
        if column.kind in LOOKUP_KINDS:
            out["Targets"] = sorted(self.targets(table.logical_name, column.logical_name))
        return out

    @staticmethod
    def key_metadata(table: Table, key: Key) -> dict[str, Any]:
        return {
            "@odata.type": "#Microsoft.Dynamics.CRM.EntityKeyMetadata",
            "MetadataId": metadata_id("key", table.logical_name, key.logical_name),
            "LogicalName": key.logical_name,
            "SchemaName": key.schema_name,
            "EntityLogicalName": table.logical_name,
            "KeyAttributes": list(key.attributes),
            "EntityKeyIndexStatus": "Active",
            "DisplayName": label(key.display_name or key.schema_name),
        }

    @staticmethod
    def relationship_metadata(r: Relationship) -> dict[str, Any]:
        return {
            "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "MetadataId": metadata_id("relationship", r.schema_name),
            "SchemaName": r.schema_name,
            "RelationshipType": "OneToManyRelationship",
            "IsCustomRelationship": r.custom,
            "ReferencedEntity": r.referenced_entity,
            "ReferencedAttribute": r.referenced_attribute,
            "ReferencingEntity": r.referencing_entity,
            "ReferencingAttribute": r.referencing_attribute,
            "ReferencedEntityNavigationPropertyName": r.referenced_navigation,
            "ReferencingEntityNavigationPropertyName": r.referencing_navigation,
        }


def plural(name: str) -> str:
    """Dataverse's entity set name for a new table: its logical name in the plural."""
    if re.search(r"(s|x|z|ch|sh)$", name):
        return name + "es"
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    return name + "s"


def system_columns(ownership: str) -> list[Column]:
    """What Dataverse adds to every table: audit columns, state, owner, row version."""
    columns = [
        Column("createdon", "DateTime", valid_for_create=False, valid_for_update=False),
        Column("modifiedon", "DateTime", valid_for_create=False, valid_for_update=False),
        Column("versionnumber", "BigInt", valid_for_create=False, valid_for_update=False),
        Column("statecode", "State", options={0: "Active", 1: "Inactive"}),
        Column("statuscode", "Status", options={1: "Active", 2: "Inactive"}),
    ]
    if ownership == "UserOwned":
        columns.append(Column("ownerid", "Owner"))
    return columns


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataverseError(400, "0x80040203", f"{key} is required.")
    return value.strip()


def _required(body: Mapping[str, Any]) -> bool:
    level = body.get("RequiredLevel")
    value = level.get("Value") if isinstance(level, Mapping) else None
    return value in ("ApplicationRequired", "SystemRequired")


def _number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def column_from_body(body: Any) -> Column:
    """A column from an ``…AttributeMetadata`` body, as ``POST …/Attributes`` takes it."""
    if not isinstance(body, Mapping):
        raise DataverseError(400, "0x80040203", "An attribute definition must be an object.")
    metadata = str(body.get("@odata.type", "")).rsplit(".", 1)[-1]
    kind = CREATABLE.get(metadata)
    if kind is None:
        raise DataverseError(
            400,
            "0x80040203",
            f"Attributes of type {metadata or '(no @odata.type)'} cannot be created this way; "
            "create lookups with RelationshipDefinitions",
        )
    schema_name = _text(body, "SchemaName")
    column = Column(
        schema_name.lower(),
        kind,
        schema_name=schema_name,
        display_name=label_text(body.get("DisplayName")) or "",
        required=_required(body),
        custom=True,
    )
    if kind in ("String", "Memo"):
        column.max_length = int(body.get("MaxLength") or (100 if kind == "String" else 2000))
        format_name = body.get("FormatName")
        if isinstance(format_name, Mapping) and format_name.get("Value"):
            column.format = str(format_name["Value"])
    if kind in ("Integer", "BigInt", "Decimal", "Double", "Money"):
        column.min_value = _number(body.get("MinValue"))
        column.max_value = _number(body.get("MaxValue"))
    if kind == "Decimal":
        column.precision = int(body.get("Precision", 2))
    if kind == "Money":
        column.precision_source = int(body.get("PrecisionSource", 2))
        column.precision = int(body.get("Precision", 2))
    if kind == "DateTime":
        behavior = body.get("DateTimeBehavior")
        column.date_only = body.get("Format") == "DateOnly" or (
            isinstance(behavior, Mapping) and behavior.get("Value") == "DateOnly"
        )
    if kind in ("Picklist", "MultiSelectPicklist"):
        option_set = body.get("OptionSet")
        options = option_set.get("Options") if isinstance(option_set, Mapping) else None
        if not isinstance(options, list) or not options:
            raise DataverseError(400, "0x80040203", "A choice column needs OptionSet.Options.")
        for option in options:
            if not isinstance(option, Mapping) or not isinstance(option.get("Value"), int):
                raise DataverseError(400, "0x80040203", "Each option needs an integer Value.")
            column.options[int(option["Value"])] = label_text(option.get("Label")) or str(
                option["Value"]
            )
    if kind == "Boolean":
        option_set = body.get("OptionSet")
        yes = no = None
        if isinstance(option_set, Mapping):
            true_option, false_option = option_set.get("TrueOption"), option_set.get("FalseOption")
            yes = label_text(true_option.get("Label")) if isinstance(true_option, Mapping) else None
            no = (
                label_text(false_option.get("Label")) if isinstance(false_option, Mapping) else None
            )
        column.options = {1: yes or "Yes", 0: no or "No"}
    return column
