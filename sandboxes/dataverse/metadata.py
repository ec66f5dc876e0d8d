"""``EntityDefinitions`` and ``RelationshipDefinitions``: reading and customizing the schema.

Reads take ``$select``, ``$filter`` and ``$expand`` as the Web API does for metadata: the
collections of a table (``Attributes``, ``Keys``, ``ManyToOneRelationships``,
``OneToManyRelationships``, ``ManyToManyRelationships``) and an attribute's ``OptionSet`` are
returned only when expanded. Writes are the calls a solution's installer makes: create a
table, a column, a one-to-many relationship (its lookup), an alternate key, and turn change
tracking on (``PUT`` of the table with ``ChangeTrackingEnabled``). Names must start with the
customization prefix of a publisher that exists (``publishers``) or ``new`` (the default one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import DataverseError, NotImplementedBySandbox, segment_not_found
from .query import Options, compile_filter, parse_options
from .schema import CHOICE_KINDS, Column, Schema, Table, label, metadata_id
from .store import Store
from .webapi import Answer, ApiRequest, WebApi

COLLECTIONS = (
    "Attributes",
    "Keys",
    "ManyToOneRelationships",
    "OneToManyRelationships",
    "ManyToManyRelationships",
)
_BY_NAME = re.compile(r"^(?:LogicalName|SchemaName)='([^']+)'$")


class MetadataApi:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.schema: Schema = store.schema

    # ------------------------------------------------------------------ routing

    def dispatch(self, request: ApiRequest) -> Answer:
        segments = _segments(request.resource.strip("/"))
        head_name, head_key = segments[0]
        method = request.method
        if head_name == "GlobalOptionSetDefinitions":
            raise NotImplementedBySandbox("GlobalOptionSetDefinitions")
        if head_name == "RelationshipDefinitions":
            if head_key is None and len(segments) == 1:
                if method == "POST":
                    return self._create_relationship(request)
                if method == "GET":
                    items = [
                        self.schema.relationship_metadata(r)
                        for r in self.schema.relationships.values()
                    ]
                    return self._list(request, "RelationshipDefinitions", items)
            if head_key is not None and len(segments) == 1 and method == "GET":
                relationship = next(
                    (
                        self.schema.relationship_metadata(r)
                        for r in self.schema.relationships.values()
                        if _matches(
                            head_key, r.schema_name, metadata_id("relationship", r.schema_name)
                        )
                    ),
                    None,
                )
                if relationship is None:
                    raise DataverseError(
                        404,
                        "0x80040217",
                        f"Could not find relationship with name '{_name(head_key)}'.",
                    )
                return self._one(request, "RelationshipDefinitions", relationship)
            raise segment_not_found(request.resource)
        # EntityDefinitions
        if head_key is None:
            if len(segments) > 1:
                raise segment_not_found(segments[1][0])
            if method == "GET":
                items = [self.schema.entity_metadata(t) for t in self.schema.tables.values()]
                return self._list(request, "EntityDefinitions", items)
            if method == "POST":
                table = self.schema.create_table(self._body(request), self._prefixes(request))
                self.store.table(table.logical_name)
                return self._created(
                    request, f"EntityDefinitions({metadata_id('entity', table.logical_name)})"
                )
            raise DataverseError(405, "0x80060888", f"The HTTP method '{method}' is not allowed.")
        table = self._table(head_key)
        if len(segments) == 1:
            if method == "GET":
                return self._one(request, "EntityDefinitions", self.schema.entity_metadata(table))
            if method == "PUT":
                return self._update_table(request, table)
            raise DataverseError(405, "0x80060888", f"The HTTP method '{method}' is not allowed.")
        collection, item_key = segments[1]
        cast = segments[2][0] if len(segments) > 2 else None
        if collection not in COLLECTIONS or len(segments) > 3:
            raise segment_not_found(collection)
        entity_id = metadata_id("entity", table.logical_name)
        if item_key is None:
            if method == "POST" and collection == "Attributes":
                column = self.schema.create_column(
                    table, self._body(request), self._prefixes(request)
                )
                return self._created(
                    request,
                    f"EntityDefinitions({entity_id})/Attributes"
                    f"({metadata_id('attribute', table.logical_name, column.logical_name)})",
                )
            if method == "POST" and collection == "Keys":
                key = self.schema.create_key(table, self._body(request), self._prefixes(request))
                return self._created(
                    request,
                    f"EntityDefinitions({entity_id})/Keys"
                    f"({metadata_id('key', table.logical_name, key.logical_name)})",
                )
            metadata = self.schema.entity_metadata(table)
            if method == "GET":
                items = [self._with_option_set(table, i) for i in metadata[collection]]
                context = f"EntityDefinitions('{table.logical_name}')/{collection}"
                if cast is not None:  # Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata
                    kind = cast.rsplit(".", 1)[-1]
                    if collection != "Attributes" or not kind.endswith("AttributeMetadata"):
                        raise segment_not_found(cast)
                    items = [i for i in items if str(i.get("@odata.type", "")).endswith(kind)]
                    context = f"{context}/{cast}"
                return self._list(request, context, items)
            raise DataverseError(405, "0x80060888", f"The HTTP method '{method}' is not allowed.")
        if method != "GET":
            raise NotImplementedBySandbox(f"{method} of one of a table's {collection}")
        for item in self.schema.entity_metadata(table)[collection]:
            names = (item.get("LogicalName") or item.get("SchemaName") or "", item["MetadataId"])
            if _matches(item_key, *names):
                item = self._with_option_set(table, item)
                if cast is not None and not str(item.get("@odata.type", "")).endswith(
                    cast.rsplit(".", 1)[-1]
                ):
                    raise DataverseError(
                        400, "0x80060888", f"The attribute is not of the type {cast}."
                    )
                return self._one(
                    request, f"EntityDefinitions('{table.logical_name}')/{collection}", item
                )
        raise DataverseError(
            404,
            "0x80040217",
            f"Could not find {collection[:-1].lower()} with name '{_name(item_key)}' on "
            f"{table.logical_name}.",
        )

    # ------------------------------------------------------------------ helpers

    def _table(self, key: str) -> Table:
        for table in self.schema.tables.values():
            if _matches(key, table.logical_name, metadata_id("entity", table.logical_name)):
                return table
        raise DataverseError(
            404, "0x80040217", f"Could not find entity with logical name '{_name(key)}'."
        )

    def _with_option_set(self, table: Table, item: dict[str, Any]) -> dict[str, Any]:
        column = table.column(str(item.get("LogicalName", "")))
        if column is None or (
            column.kind not in CHOICE_KINDS
            and column.kind not in ("MultiSelectPicklist", "Boolean")
        ):
            return item
        return {**item, "OptionSet": _option_set(column)}

    def _prefixes(self, request: ApiRequest) -> list[str]:
        solution = request.headers.get("mscrm.solutionuniquename")
        if solution and not self.store.find("solution", uniquename=solution):
            raise DataverseError(404, "0x8004f01a", f"The solution {solution} does not exist.")
        return ["new", *(str(p.get("customizationprefix")) for p in self.store.all("publisher"))]

    @staticmethod
    def _body(request: ApiRequest) -> dict[str, Any]:
        return WebApi._json_object(request.body)

    @staticmethod
    def _created(request: ApiRequest, path: str) -> Answer:
        url = f"{request.base}/{path}"
        return Answer(204, {"OData-Version": "4.0", "OData-EntityId": url})

    def _update_table(self, request: ApiRequest, table: Table) -> Answer:
        body = self._body(request)
        if "ChangeTrackingEnabled" in body:
            enabled = body["ChangeTrackingEnabled"]
            if not isinstance(enabled, bool):
                raise DataverseError(
                    400, "0x80040203", "ChangeTrackingEnabled must be true or false."
                )
            if table.change_tracking and not enabled:
                raise DataverseError(
                    400, "0x80040203", "Change tracking cannot be turned off once it is on."
                )
            table.change_tracking = enabled
        return Answer(204, {"OData-Version": "4.0"})

    def _create_relationship(self, request: ApiRequest) -> Answer:
        relationship = self.schema.create_relationship(self._body(request), self._prefixes(request))
        return self._created(
            request,
            f"RelationshipDefinitions({metadata_id('relationship', relationship.schema_name)})",
        )

    def _one(self, request: ApiRequest, context: str, item: dict[str, Any]) -> Answer:
        options = parse_options(request.params)
        body = _project(item, options)
        return Answer.json(
            200, {"@odata.context": f"{request.base}/$metadata#{context}/$entity", **body}
        )

    def _list(self, request: ApiRequest, context: str, items: list[dict[str, Any]]) -> Answer:
        options = parse_options(request.params)
        if options.filter:
            predicate = compile_filter(options.filter)
            items = [i for i in items if predicate(_resolver(i))]
        value = [_project(i, options) for i in items]
        return Answer.json(
            200, {"@odata.context": f"{request.base}/$metadata#{context}", "value": value}
        )


def _segments(path: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for part in re.findall(r"[^/(]+(?:\([^)]*\))?", path):
        found = re.fullmatch(r"([^/(]+)(?:\((.*)\))?", part)
        if found:
            out.append((found.group(1), found.group(2)))
    return out


def _name(key: str) -> str:
    found = _BY_NAME.match(key)
    return found.group(1) if found else key


def _matches(key: str, name: str, identifier: str) -> bool:
    found = _BY_NAME.match(key)
    if found:
        return found.group(1) == name
    return key.strip("'").lower() == identifier.lower()


def _resolver(item: Mapping[str, Any]) -> Any:
    def resolve(path: str) -> Any:
        value: Any = item
        for part in path.split("/"):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    return resolve


def _option_set(column: Column) -> dict[str, Any]:
    if column.kind == "Boolean":
        return {
            "@odata.type": "#Microsoft.Dynamics.CRM.BooleanOptionSetMetadata",
            "OptionSetType": "Boolean",
            "TrueOption": {"Value": 1, "Label": label(column.options.get(1, "Yes"))},
            "FalseOption": {"Value": 0, "Label": label(column.options.get(0, "No"))},
        }
    kind = {"State": "State", "Status": "Status"}.get(column.kind, "Picklist")
    return {
        "@odata.type": "#Microsoft.Dynamics.CRM.OptionSetMetadata",
        "OptionSetType": kind,
        "IsGlobal": False,
        "Options": [{"Value": v, "Label": label(text)} for v, text in column.options.items()],
    }


def _project(item: Mapping[str, Any], options: Options) -> dict[str, Any]:
    kind = str(item.get("@odata.type", "#Microsoft.Dynamics.CRM.MetadataBase")).lstrip("#")
    navigations = {*COLLECTIONS, "OptionSet"}
    for name in options.select or []:
        if name not in item or name in navigations:
            raise DataverseError(
                400, "0x0", f"Could not find a property named '{name}' on type '{kind}'."
            )
    out: dict[str, Any] = {}
    for name, value in item.items():
        if name in navigations:
            continue
        if (
            options.select
            and name not in options.select
            and name not in ("@odata.type", "MetadataId")
        ):
            continue
        out[name] = value
    for name, nested in options.expand.items():
        if name not in navigations:
            raise DataverseError(
                400, "0x0", f"Could not find a property named '{name}' on type '{kind}'."
            )
        value = item.get(name)
        if isinstance(value, list):
            if nested.filter:
                predicate = compile_filter(nested.filter)
                value = [v for v in value if predicate(_resolver(v))]
            out[name] = [_project(v, nested) for v in value]
        else:
            out[name] = value
    return out
