"""The sandbox org's data model: objects, fields and relationships.

Standard objects and their standard fields are defined in :mod:`.standard_objects`; an
integration's custom fields and objects are read from its SFDX metadata by :mod:`.sfdx`, so the
deployable metadata is the single source of truth for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldType = Literal[
    "id",
    "string",
    "email",
    "phone",
    "url",
    "textarea",
    "picklist",
    "multipicklist",
    "boolean",
    "currency",
    "double",
    "int",
    "percent",
    "date",
    "datetime",
    "reference",
]

NUMERIC_TYPES: frozenset[str] = frozenset({"currency", "double", "int", "percent"})
TEXT_TYPES: frozenset[str] = frozenset(
    {"string", "email", "phone", "url", "textarea", "picklist", "multipicklist"}
)

SOAP_TYPES: dict[str, str] = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "textarea": "xsd:string",
    "picklist": "xsd:string",
    "multipicklist": "xsd:string",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


@dataclass(frozen=True)
class PicklistValue:
    value: str
    label: str
    default: bool = False
    active: bool = True


@dataclass
class FieldDef:
    """One field as describe reports it, plus what the store needs to validate writes."""

    name: str
    type: FieldType
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    default_value: object = None
    unique: bool = False
    external_id: bool = False
    case_sensitive: bool = False
    custom: bool = False
    calculated: bool = False
    name_field: bool = False
    id_lookup: bool = False
    reference_to: list[str] = field(default_factory=list)
    relationship_name: str | None = None
    child_relationship_name: str | None = None
    cascade_delete: bool = False
    picklist_values: list[PicklistValue] = field(default_factory=list)
    restricted_picklist: bool = False
    html_formatted: bool = False
    inline_help_text: str | None = None

    @property
    def required_on_create(self) -> bool:
        return not self.nillable and self.createable and not self.defaulted_on_create

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_TYPES

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


@dataclass
class ChildRelationship:
    relationship_name: str
    child_sobject: str
    field: str
    cascade_delete: bool


@dataclass
class ObjectDef:
    """One sObject type."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool = False
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    fields: dict[str, FieldDef] = field(default_factory=dict)
    child_relationships: list[ChildRelationship] = field(default_factory=list)

    def add(self, *fields: FieldDef) -> ObjectDef:
        for f in fields:
            self.fields[f.name] = f
        return self

    def field(self, name: str) -> FieldDef | None:
        """Field by case-insensitive API name."""
        found = self.fields.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        for f in self.fields.values():
            if f.name.lower() == lowered:
                return f
        return None

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose parent relationship is ``name`` (case-insensitive)."""
        lowered = name.lower()
        for f in self.fields.values():
            if f.relationship_name is not None and f.relationship_name.lower() == lowered:
                return f
        return None

    def child_relationship(self, name: str) -> ChildRelationship | None:
        lowered = name.lower()
        for rel in self.child_relationships:
            if rel.relationship_name.lower() == lowered:
                return rel
        return None

    @property
    def name_field(self) -> FieldDef | None:
        for f in self.fields.values():
            if f.name_field:
                return f
        return None


class Schema:
    """All objects of the org, looked up case-insensitively by name or key prefix."""

    def __init__(self, objects: list[ObjectDef]) -> None:
        self.objects: dict[str, ObjectDef] = {o.name: o for o in objects}
        self._by_lower = {o.name.lower(): o for o in objects}
        self._by_prefix = {o.key_prefix: o for o in objects}
        self._link_children()

    def get(self, name: str) -> ObjectDef | None:
        return self._by_lower.get(name.lower())

    def by_prefix(self, key_prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(key_prefix)

    def _link_children(self) -> None:
        for obj in self.objects.values():
            obj.child_relationships.clear()
        for obj in self.objects.values():
            for f in obj.fields.values():
                if f.type != "reference" or not f.child_relationship_name:
                    continue
                for parent_name in f.reference_to:
                    parent = self.objects.get(parent_name)
                    if parent is None:
                        continue
                    parent.child_relationships.append(
                        ChildRelationship(
                            relationship_name=f.child_relationship_name,
                            child_sobject=obj.name,
                            field=f.name,
                            cascade_delete=f.cascade_delete,
                        )
                    )
