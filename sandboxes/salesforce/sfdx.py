"""Custom objects and fields from SFDX source (``*.object-meta.xml``, ``*.field-meta.xml``).

An integration ships its Salesforce metadata as an SFDX project for admins to deploy with
``sf project deploy start``; the sandbox reads the same files (its caller says where), so what
the sandbox describes is exactly what an admin deploys.

Metadata API semantics carried over: a Lookup's ``<relationshipName>`` is the *child*
relationship name (``Stripe_Invoices`` → ``Stripe_Invoices__r`` in subqueries), while the
parent relationship used in dotted SOQL paths is the field name with ``__c`` turned into
``__r`` (``Billing_Contact__c`` → ``Billing_Contact__r.Email``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .schema import FieldDef, FieldType, ObjectDef, PicklistValue, Schema
from .standard_objects import currency_field, standard_objects, system_fields

NS = {"md": "http://soap.sforce.com/2006/04/metadata"}

CUSTOM_KEY_PREFIXES = ("a0X", "a0Y", "a0Z", "a10", "a11", "a12")

_TYPES: dict[str, FieldType] = {
    "Text": "string",
    "Email": "email",
    "Phone": "phone",
    "Url": "url",
    "TextArea": "textarea",
    "LongTextArea": "textarea",
    "Picklist": "picklist",
    "MultiselectPicklist": "multipicklist",
    "Checkbox": "boolean",
    "Currency": "currency",
    "Number": "double",
    "Percent": "percent",
    "Date": "date",
    "DateTime": "datetime",
    "Lookup": "reference",
    "MasterDetail": "reference",
}


class MetadataError(ValueError):
    """The SFDX metadata cannot be understood."""


@dataclass
class CustomMetadata:
    """Custom objects (new types) and custom fields (for any type) read from SFDX source."""

    objects: list[ObjectDef]
    fields: dict[str, list[FieldDef]]


def _text(element: ET.Element, tag: str) -> str | None:
    found = element.find(f"md:{tag}", NS)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _flag(element: ET.Element, tag: str, default: bool = False) -> bool:
    value = _text(element, tag)
    return default if value is None else value.lower() == "true"


def _int(element: ET.Element, tag: str, default: int = 0) -> int:
    value = _text(element, tag)
    return default if value is None else int(value)


def parse_field(path: Path) -> FieldDef:
    root = ET.parse(path).getroot()  # noqa: S314 - our own repository files
    name = _text(root, "fullName") or path.name.removesuffix(".field-meta.xml")
    sf_type = _text(root, "type")
    if sf_type not in _TYPES:
        raise MetadataError(f"{path}: unsupported field type {sf_type!r}")
    field_type = _TYPES[sf_type]
    label = _text(root, "label") or name
    required = _flag(root, "required")
    definition = FieldDef(
        name=name,
        type=field_type,
        label=label,
        custom=True,
        nillable=not required and field_type != "boolean",
        unique=_flag(root, "unique"),
        external_id=_flag(root, "externalId"),
        case_sensitive=_flag(root, "caseSensitive"),
        inline_help_text=_text(root, "inlineHelpText"),
    )
    definition.id_lookup = definition.external_id or definition.unique
    if sf_type in ("Text", "Email", "Phone", "Url", "TextArea", "LongTextArea"):
        definition.length = _int(
            root, "length", {"Email": 80, "Phone": 40, "TextArea": 255}.get(sf_type, 255)
        )
    if sf_type == "LongTextArea":
        definition.length = _int(root, "length", 32768)
    if sf_type in ("Currency", "Number", "Percent"):
        definition.precision = _int(root, "precision", 18)
        definition.scale = _int(root, "scale", 0)
    if sf_type == "Checkbox":
        definition.defaulted_on_create = True
        definition.default_value = (_text(root, "defaultValue") or "false").lower() == "true"
    if sf_type in ("Picklist", "MultiselectPicklist"):
        definition.length = 255 if sf_type == "Picklist" else 4099
        value_set = root.find("md:valueSet", NS)
        if value_set is None:
            raise MetadataError(f"{path}: picklist without valueSet")
        definition.restricted_picklist = _flag(value_set, "restricted")
        for value in value_set.findall("md:valueSetDefinition/md:value", NS):
            full_name = _text(value, "fullName") or ""
            definition.picklist_values.append(
                PicklistValue(
                    value=full_name,
                    label=_text(value, "label") or full_name,
                    default=_flag(value, "default"),
                )
            )
    if sf_type in ("Lookup", "MasterDetail"):
        target = _text(root, "referenceTo")
        if not target:
            raise MetadataError(f"{path}: lookup without referenceTo")
        definition.length = 18
        definition.reference_to = [target]
        definition.relationship_name = name.removesuffix("__c") + "__r"
        child = _text(root, "relationshipName")
        definition.child_relationship_name = f"{child}__r" if child else None
        definition.cascade_delete = sf_type == "MasterDetail" or (
            _text(root, "deleteConstraint") == "Cascade"
        )
        if sf_type == "MasterDetail":
            definition.nillable = False
    return definition


def parse_object(path: Path, key_prefix: str) -> ObjectDef:
    root = ET.parse(path).getroot()  # noqa: S314 - our own repository files
    name = path.name.removesuffix(".object-meta.xml")
    label = _text(root, "label") or name
    obj = ObjectDef(
        name=name,
        label=label,
        label_plural=_text(root, "pluralLabel") or label,
        key_prefix=key_prefix,
        custom=True,
    )
    name_field = root.find("md:nameField", NS)
    name_label = "Name"
    auto_number = False
    if name_field is not None:
        name_label = _text(name_field, "label") or "Name"
        auto_number = _text(name_field, "type") == "AutoNumber"
    obj.add(
        *system_fields(owned=True),
        FieldDef(
            name="Name",
            type="string",
            label=name_label,
            length=80,
            nillable=False,
            # Via the API an omitted Text name defaults to the record id; AutoNumber is generated.
            defaulted_on_create=True,
            createable=not auto_number,
            updateable=not auto_number,
            name_field=True,
        ),
        currency_field(),
    )
    return obj


def load(metadata_dir: Path) -> CustomMetadata:
    """Read every custom object and field under ``<metadata_dir>/force-app/**/objects``."""
    objects_dirs = sorted(metadata_dir.glob("**/objects"))
    if not objects_dirs:
        raise MetadataError(f"no SFDX objects folder under {metadata_dir}")
    objects: list[ObjectDef] = []
    fields: dict[str, list[FieldDef]] = {}
    prefixes = iter(CUSTOM_KEY_PREFIXES)
    for objects_dir in objects_dirs:
        for object_dir in sorted(p for p in objects_dir.iterdir() if p.is_dir()):
            object_file = object_dir / f"{object_dir.name}.object-meta.xml"
            if object_dir.name.endswith("__c") and object_file.exists():
                objects.append(parse_object(object_file, next(prefixes)))
            for field_file in sorted(object_dir.glob("fields/*.field-meta.xml")):
                fields.setdefault(object_dir.name, []).append(parse_field(field_file))
    return CustomMetadata(objects=objects, fields=fields)


def build_schema(metadata_dir: Path | None = None) -> Schema:
    """The sandbox org: standard objects plus the custom metadata read from SFDX source.

    Without ``metadata_dir`` the org has the standard objects only, as a new org has.
    """
    if metadata_dir is None:
        return Schema(standard_objects())
    custom = load(metadata_dir)
    objects = [*standard_objects(), *custom.objects]
    by_name = {o.name: o for o in objects}
    for object_name, object_fields in custom.fields.items():
        target = by_name.get(object_name)
        if target is None:
            raise MetadataError(f"custom fields for unknown object {object_name!r}")
        target.add(*object_fields)
    return Schema(objects)
