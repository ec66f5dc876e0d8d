"""The Web API's resources, behind the HTTP layer: one ``ApiRequest`` in, one ``Answer`` out.

Paths are relative to ``/api/data/v9.2/``:

* ``WhoAmI``; the actions ``WinOpportunity`` and ``LoseOpportunity``;
* entity sets: ``accounts`` (GET a page, POST create), ``accounts(<id>)`` or
  ``accounts(<key>='<value>')`` (GET, PATCH upsert, DELETE), ``accounts(<id>)/<navigation>``
  and ``accounts(<id>)/<column>`` (GET);
* metadata: ``EntityDefinitions`` (GET; POST a table), ``EntityDefinitions(LogicalName='x')``
  with ``/Attributes``, ``/Attributes(LogicalName='y')`` and ``/Keys`` (GET, POST),
  ``RelationshipDefinitions`` (POST; GET by ``SchemaName``), ``PublishXml``.

``$batch`` is in :mod:`.batch`, which calls back into :meth:`WebApi.dispatch`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from . import jsonio
from .errors import (
    DataverseError,
    NotImplementedBySandbox,
    bad_json,
    duplicate_key,
    invalid_property,
    key_not_found,
    no_property,
    not_found,
    segment_not_found,
    version_mismatch,
)
from .query import Options, parse_options, split_top_level
from .render import Renderer, wanted_annotations
from .schema import LOOKUP_KINDS, SYSTEM_COLUMNS, Schema, Table
from .store import Store
from .values import Ref, coerce, is_guid

JSON = "application/json; odata.metadata=minimal"
#: Dataverse's largest page: 5,000 rows (fewer with ``Prefer: odata.maxpagesize``).
SERVER_PAGE_SIZE = 5000
_KEY = re.compile(r"^([a-z_0-9]+)='((?:[^']|'')*)'$")


@dataclass
class ApiRequest:
    method: str
    resource: str  # path after /api/data/v9.2/, percent-decoded
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    base: str  # http://host:port/api/data/v9.2, as the client reached it
    user_id: str
    content_ids: dict[str, str] = field(default_factory=dict)  # $1 → URL (change sets)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""

    @staticmethod
    def json(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Answer:
        return Answer(
            status,
            {"Content-Type": JSON, "OData-Version": "4.0", **(headers or {})},
            jsonio.dumps(data).encode("utf-8"),
        )

    @staticmethod
    def error(error: DataverseError) -> Answer:
        return Answer.json(error.status, {"error": {"code": error.code, "message": error.message}})


@dataclass(frozen=True)
class Organization:
    organization_id: str
    business_unit_id: str
    base_currency_code: str = "USD"


class WebApi:
    def __init__(
        self,
        store: Store,
        organization: Organization,
        *,
        delta_floor: Callable[[], int],
        today: Callable[[], date],
    ) -> None:
        self.store = store
        self.schema: Schema = store.schema
        self.organization = organization
        self.render = Renderer(store)
        self.delta_floor = delta_floor
        self.today = today

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, request: ApiRequest) -> Answer:
        resource = request.resource.strip("/")
        method = request.method
        if resource in ("", "$metadata"):
            if resource == "" and method == "GET":
                sets = [
                    {"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set}
                    for t in self.schema.tables.values()
                ]
                return Answer.json(
                    200, {"@odata.context": f"{request.base}/$metadata", "value": sets}
                )
            raise NotImplementedBySandbox("The CSDL document ($metadata)")
        if resource == "WhoAmI":
            self._allow(method, "GET")
            return Answer.json(
                200,
                {
                    "@odata.context": (
                        f"{request.base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
                    ),
                    "BusinessUnitId": self.organization.business_unit_id,
                    "UserId": request.user_id,
                    "OrganizationId": self.organization.organization_id,
                },
            )
        if resource in ("WinOpportunity", "LoseOpportunity"):
            self._allow(method, "POST")
            return self._close_opportunity(request, won=resource == "WinOpportunity")
        if resource in ("PublishXml", "PublishAllXml"):
            self._allow(method, "POST")
            return Answer(204, {"OData-Version": "4.0"})
        head = resource.split("/", 1)[0].split("(", 1)[0]
        if head in ("EntityDefinitions", "RelationshipDefinitions", "GlobalOptionSetDefinitions"):
            from .metadata import MetadataApi  # imported here: metadata builds on this module

            return MetadataApi(self.store).dispatch(request)
        return self._data(request)

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise DataverseError(
                405, "0x80060888", f"The HTTP method '{method}' is not allowed on this resource."
            )

    # ------------------------------------------------------------------ data routes

    def _data(self, request: ApiRequest) -> Answer:
        match = re.fullmatch(
            r"([A-Za-z_0-9]+)(?:\((.*?)\))?(?:/(.+))?", request.resource.strip("/")
        )
        if match is None:
            raise segment_not_found(request.resource.split("/")[0])
        entity_set, key, rest = match.groups()
        table = self.schema.by_entity_set(entity_set)
        if table is None:
            raise segment_not_found(entity_set)
        self.store.table(table.logical_name)
        method = request.method
        if key is None:
            if rest is not None:
                raise segment_not_found(rest.split("/")[0])
            if method == "GET":
                rows = self.store.all(table.logical_name)
                return self.collection(request, table, rows)
            if method == "POST":
                return self._create(request, table)
            self._allow(method, "GET", "POST")
        if rest is None:
            if method == "GET":
                return self._retrieve(request, table, key)
            if method == "PATCH":
                return self._upsert(request, table, key)
            if method == "DELETE":
                return self._delete(request, table, key)
            self._allow(method, "GET", "PATCH", "DELETE")
        assert key is not None and rest is not None
        return self._member(request, table, key, rest)

    def _member(self, request: ApiRequest, table: Table, key: str, rest: str) -> Answer:
        """``accounts(<id>)/<navigation>`` or ``accounts(<id>)/<column>``."""
        row = self.row_by_key(table, key, required=True)
        assert row is not None
        name, _, tail = rest.partition("/")
        many = self.schema.collection(table.logical_name, name)
        if many is not None and not tail:
            self._allow(request.method, "GET")
            other_name, lookup = many
            other = self.store.table(other_name)
            me = Ref(table.logical_name, row[table.primary_key])
            rows = [r for r in self.store.all(other_name) if r.get(lookup) == me]
            return self.collection(request, other, rows)
        single = self.schema.navigation(table.logical_name, name)
        if single is not None and tail in ("", "$ref"):
            lookup_name, target = single
            if tail == "$ref" and request.method in ("PUT", "DELETE"):
                if request.method == "DELETE":
                    self.store.update(
                        table.logical_name, row[table.primary_key], {lookup_name: None}
                    )
                    return Answer(204, {"OData-Version": "4.0"})
                body = self._json_object(request.body)
                reference = body.get("@odata.id")
                if not isinstance(reference, str):
                    raise bad_json('The body must be {"@odata.id": "<entity URL>"}.')
                ref = self._bound(target, reference, request)
                self.store.update(table.logical_name, row[table.primary_key], {lookup_name: ref})
                return Answer(204, {"OData-Version": "4.0"})
            self._allow(request.method, "GET")
            related = self.store.resolve(row.get(lookup_name))
            if related is None:
                return Answer(204, {"OData-Version": "4.0"})
            target_table = self.store.table(target)
            options = parse_options(request.params)
            annotations = wanted_annotations(request.headers.get("prefer", ""))
            body = self.render.row(target_table, related, options, annotations)
            context = f"{request.base}/$metadata#{target_table.entity_set}/$entity"
            return Answer.json(200, {"@odata.context": context, **body})
        column = table.column(name)
        if column is not None and not tail and column.kind not in LOOKUP_KINDS:
            if request.method == "GET":
                context = (
                    f"{request.base}/$metadata#{table.entity_set}({row[table.primary_key]})/{name}"
                )
                return Answer.json(200, {"@odata.context": context, "value": row.get(name)})
            if request.method in ("PUT", "DELETE"):
                value = None
                if request.method == "PUT":
                    value = self._json_object(request.body).get("value")
                values = self._values(table, {name: value}, request, row)
                self.store.update(table.logical_name, row[table.primary_key], values)
                return Answer(204, {"OData-Version": "4.0"})
            self._allow(request.method, "GET", "PUT", "DELETE")
        raise no_property(name, table.logical_name)

    # ------------------------------------------------------------------ reading

    def row_by_key(self, table: Table, key: str, *, required: bool) -> dict[str, Any] | None:
        """A row by ``<guid>`` or by an alternate key ``column='value'[,column2=...]``."""
        key = unquote(key)
        rows = self.store.rows.get(table.logical_name, {})
        if is_guid(key):
            found = rows.get(key.lower())
            if found is None and required:
                raise not_found(table.logical_name, key)
            return found
        pairs = self.key_pairs(table, key)
        found = next(
            (r for r in rows.values() if all(r.get(c) == v for c, v in pairs.items())), None
        )
        if found is None and required:
            raise key_not_found(table.logical_name)
        return found

    def key_pairs(self, table: Table, key: str) -> dict[str, Any]:
        pairs: dict[str, Any] = {}
        for part in split_top_level(key, ","):
            found = _KEY.match(part.strip()) or re.fullmatch(r"([a-z_0-9]+)=(-?\d+)", part.strip())
            if found is None:
                raise DataverseError(
                    400, "0x80060888", f"Bad Request - Error in query syntax: '{key}'."
                )
            column = found.group(1)
            raw = found.group(2)
            value: Any = raw.replace("''", "'") if part.strip().endswith("'") else int(raw)
            pairs[column] = value
        if not any(sorted(k.attributes) == sorted(pairs) for k in table.keys):
            raise DataverseError(
                400,
                "0x80060888",
                f"The key attribute '{','.join(pairs)}' is not defined as an alternate key for "
                f"the {table.logical_name} table.",
            )
        return pairs

    def _retrieve(self, request: ApiRequest, table: Table, key: str) -> Answer:
        row = self.row_by_key(table, key, required=True)
        assert row is not None
        etag = f'W/"{row["versionnumber"]}"'
        if request.headers.get("if-none-match") == etag:
            return Answer(304, {"OData-Version": "4.0", "ETag": etag})
        options = parse_options(request.params)
        annotations = wanted_annotations(request.headers.get("prefer", ""))
        body = self.render.row(table, row, options, annotations)
        context = self._context(request, table, options, "/$entity")
        return Answer.json(200, {"@odata.context": context, **body}, {"ETag": etag})

    @staticmethod
    def _context(request: ApiRequest, table: Table, options: Options, suffix: str = "") -> str:
        columns = ",".join(options.select or [])
        shape = f"({columns})" if columns else ""
        return f"{request.base}/$metadata#{table.entity_set}{shape}{suffix}"

    def collection(self, request: ApiRequest, table: Table, rows: list[dict[str, Any]]) -> Answer:
        """A page of rows; ``Prefer: odata.track-changes`` and ``$deltatoken`` for changes."""
        params = request.params
        prefer = request.headers.get("prefer", "")
        tracking = "odata.track-changes" in prefer
        delta_token = params.get("$deltatoken")
        options = parse_options(params)
        changes = tracking or delta_token is not None
        if changes and (options.filter or options.orderby or options.top is not None):
            raise DataverseError(
                400, "0x80072492", "Change tracking does not support $filter, $orderby or $top."
            )
        if changes and not table.change_tracking:
            raise DataverseError(
                400,
                "0x80072491",
                f"Entity {table.logical_name} isn't enabled for change tracking.",
            )
        since: int | None = None
        suffix = ""
        if delta_token is not None:
            head = delta_token.split("!", 1)[0]
            if not head.isdigit() or int(head) < self.delta_floor():
                raise DataverseError(400, "0x80040203", "Invalid argument.")
            since = int(head)
            rows = [r for r in rows if r["versionnumber"] > since]
            suffix = "/$delta"
        rows = sorted(rows, key=lambda r: r["versionnumber"]) if changes else rows
        rows = self.render.filtered(table, rows, options)
        annotations = wanted_annotations(prefer)
        rendered = [self.render.row(table, r, options, annotations) for r in rows]
        if since is not None:
            for record_id, version in self.store.deleted.get(table.logical_name, {}).items():
                if version > since:
                    rendered.append(
                        {
                            "@odata.context": (
                                f"{request.base}/$metadata#{table.entity_set}/$deletedEntity"
                            ),
                            "id": record_id,
                            "reason": "deleted",
                        }
                    )
        page_size = SERVER_PAGE_SIZE
        asked = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        applied: list[str] = []
        if asked:
            page_size = max(1, min(int(asked.group(1)), SERVER_PAGE_SIZE))
            applied.append(f"odata.maxpagesize={page_size}")
        cookie = params.get("$skiptoken")
        page = 1
        snapshot = self.store.version
        if cookie:
            number = re.search(r'pagenumber="(\d+)"', cookie)
            pinned = re.search(r'version="(\d+)"', cookie)
            if number is None:
                raise DataverseError(400, "0x80040203", "Invalid argument: $skiptoken.")
            page = int(number.group(1))
            snapshot = int(pinned.group(1)) if pinned else snapshot
        start = (page - 1) * page_size
        out: dict[str, Any] = {"@odata.context": self._context(request, table, options, suffix)}
        if options.count:
            out["@odata.count"] = len(rendered)
        out["value"] = rendered[start : start + page_size]
        path = f"{request.base}/{request.resource.strip('/')}"
        if start + page_size < len(rendered):
            next_cookie = (
                f'<cookie pagenumber="{page + 1}" pagingcookie="" '
                f'istracking="{changes!s}" version="{snapshot}" />'
            )
            query = {k: v for k, v in params.items() if k != "$skiptoken"}
            query["$skiptoken"] = next_cookie
            out["@odata.nextLink"] = f"{path}?{urlencode(query, quote_via=quote, safe='$,()=;/')}"
        elif changes:
            query = {k: v for k, v in params.items() if k not in ("$skiptoken", "$deltatoken")}
            when = self.store.now().strftime("%m/%d/%Y %H:%M:%S")
            query["$deltatoken"] = f"{snapshot}!{when}"
            out["@odata.deltaLink"] = f"{path}?{urlencode(query, quote_via=quote, safe='$,()=;')}"
        if tracking:
            applied.append("odata.track-changes")
        headers = {"Preference-Applied": ",".join(applied)} if applied else {}
        return Answer.json(200, out, headers)

    # ------------------------------------------------------------------ writing

    @staticmethod
    def _json_object(body: bytes) -> dict[str, Any]:
        try:
            data = jsonio.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_json() from exc
        if not isinstance(data, dict):
            raise bad_json("An entity was expected in the request body.")
        return data

    def _values(
        self,
        table: Table,
        data: Mapping[str, Any],
        request: ApiRequest,
        existing: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """A request body's properties as stored values, each checked against its column."""
        values: dict[str, Any] = {}
        plain: dict[str, Any] = {}
        for name, value in data.items():
            if name.endswith("@odata.bind"):
                navigation = name.removesuffix("@odata.bind")
                resolved = self.schema.navigation(table.logical_name, navigation)
                if resolved is None:
                    raise DataverseError(
                        400,
                        "0x80060888",
                        f"An undeclared property '{navigation}' which only has property "
                        "annotations in the payload but no property value was found in the "
                        "payload. In OData, only declared navigation properties and declared "
                        "named streams can be represented as properties without values.",
                    )
                lookup_name, target = resolved
                values[lookup_name] = (
                    None if value is None else self._bound(target, str(value), request)
                )
                continue
            if name.startswith("@") or "@" in name:
                continue  # annotations (@odata.type, …@OData.Community…) are ignored
            if isinstance(value, dict | list):
                raise NotImplementedBySandbox("Deep insert (related rows in the body)")
            column = table.column(name)
            if (
                column is None
                or column.kind in LOOKUP_KINDS
                or name in SYSTEM_COLUMNS
                or (existing is None and not column.valid_for_create)
                or (existing is not None and not column.valid_for_update)
            ):
                raise invalid_property(name, table.logical_name)
            plain[name] = value
        currency_ref = values.get("transactioncurrencyid") or (existing or {}).get(
            "transactioncurrencyid"
        )
        currency = self.store.resolve(currency_ref)
        precision = currency.get("currencyprecision") if currency else None
        for name, value in plain.items():
            values[name] = coerce(table, table.columns[name], value, precision)
        return values

    def _bound(self, target: str, reference: str, request: ApiRequest) -> Ref:
        """``/accounts(<id>)``, ``accounts(key='v')``, an absolute URL or ``$1`` → a Ref."""
        text = unquote(reference.strip())
        if text.startswith("$") and text[1:].isdigit():
            if text not in request.content_ids:
                raise DataverseError(
                    400,
                    "0x80060888",
                    f"Content-ID Reference: '{text}' does not exist in the batch context.",
                )
            text = request.content_ids[text]
        if text.startswith(("http://", "https://")):
            text = urlsplit(text).path
        text = re.sub(r"^/?api/data/v\d+\.\d+/", "", text.lstrip("/"))
        found = re.fullmatch(r"([A-Za-z_0-9]+)\((.+)\)", text)
        table = self.schema.by_entity_set(found.group(1)) if found else None
        if found is None or table is None or table.logical_name != target:
            raise DataverseError(
                400,
                "0x80048d19",
                f"Error identified in Payload provided by the user for Entity :'', For more "
                f"information on this error please follow this help link "
                f"https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : "
                f"Microsoft.OData.ODataException: The reference '{reference}' is not a "
                f"{target} row.",
            )
        row = self.row_by_key(table, found.group(2), required=True)
        assert row is not None
        return Ref(target, row[table.primary_key])

    def _written(self, request: ApiRequest, table: Table, record_id: str, status: int) -> Answer:
        url = f"{request.base}/{table.entity_set}({record_id})"
        headers = {"OData-Version": "4.0", "OData-EntityId": url, "Location": url}
        if "return=representation" in request.headers.get("prefer", ""):
            row = self.store.require(table.logical_name, record_id)
            options = parse_options(request.params)
            annotations = wanted_annotations(request.headers.get("prefer", ""))
            body = self.render.row(table, row, options, annotations)
            context = self._context(request, table, options, "/$entity")
            return Answer.json(
                201 if status == 204 and request.method == "POST" else 200,
                {"@odata.context": context, **body},
                {**headers, "ETag": body["@odata.etag"]},
            )
        return Answer(status, headers)

    def _create(self, request: ApiRequest, table: Table) -> Answer:
        data = self._json_object(request.body)
        self._refuse_closing(table, data)
        values = self._values(table, data, request, None)
        record_id = str(values.pop(table.primary_key, None) or uuid.uuid4()).lower()
        if self.store.get(table.logical_name, record_id) is not None:
            raise duplicate_key()
        record_id = self.store.insert(table.logical_name, {table.primary_key: record_id, **values})
        return self._written(request, table, record_id, 204)

    def _upsert(self, request: ApiRequest, table: Table, key: str) -> Answer:
        """PATCH: update, or create when the row does not exist (an upsert), unless
        ``If-Match`` (update only) or ``If-None-Match: *`` (create only) says otherwise."""
        data = self._json_object(request.body)
        self._refuse_closing(table, data)
        row = self.row_by_key(table, key, required=False)
        if_match = request.headers.get("if-match")
        if_none_match = request.headers.get("if-none-match")
        if row is None:
            if if_match is not None:
                if is_guid(unquote(key)):
                    raise not_found(table.logical_name, unquote(key))
                raise key_not_found(table.logical_name)
            values = self._values(table, data, request, None)
            if is_guid(unquote(key)):
                record_id = unquote(key).lower()
            else:
                values.update(self.key_pairs(table, unquote(key)))
                record_id = str(uuid.uuid4())
            record_id = self.store.insert(
                table.logical_name, {table.primary_key: record_id, **values}
            )
            return self._written(request, table, record_id, 204)
        if if_none_match == "*":
            raise duplicate_key()
        if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
            raise version_mismatch()
        values = self._values(table, data, request, row)
        self.store.update(table.logical_name, row[table.primary_key], values)
        return self._written(request, table, row[table.primary_key], 204)

    def _delete(self, request: ApiRequest, table: Table, key: str) -> Answer:
        row = self.row_by_key(table, key, required=True)
        assert row is not None
        if_match = request.headers.get("if-match")
        if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
            raise version_mismatch()
        self.store.delete(table.logical_name, row[table.primary_key])
        return Answer(204, {"OData-Version": "4.0"})

    @staticmethod
    def _refuse_closing(table: Table, data: Mapping[str, Any]) -> None:
        """An opportunity is closed by the WinOpportunity and LoseOpportunity actions (which
        record the close); writing its state to Won or Lost directly is refused."""
        if table.logical_name == "opportunity" and data.get("statecode") in (1, 2):
            raise DataverseError(
                400,
                "0x80040203",
                "Invalid argument: use the WinOpportunity or LoseOpportunity action to close an "
                "opportunity.",
            )

    # ------------------------------------------------------------------ actions

    def _close_opportunity(self, request: ApiRequest, *, won: bool) -> Answer:
        """``WinOpportunity``/``LoseOpportunity``: ``{"Status": 3, "OpportunityClose": {
        "subject": …, "opportunityid@odata.bind": "/opportunities(<id>)"}}``."""
        data = self._json_object(request.body)
        close = data.get("OpportunityClose")
        status = data.get("Status")
        if (
            not isinstance(close, Mapping)
            or not isinstance(status, int)
            or isinstance(status, bool)
        ):
            raise DataverseError(
                400, "0x80040203", "Invalid argument: Status and OpportunityClose are required."
            )
        reference = close.get("opportunityid@odata.bind")
        if not isinstance(reference, str):
            raise DataverseError(
                400,
                "0x80040203",
                "Invalid argument: OpportunityClose needs opportunityid@odata.bind.",
            )
        ref = self._bound("opportunity", reference, request)
        opportunity = self.store.require("opportunity", ref.id)
        if opportunity.get("statecode") != 0:
            raise DataverseError(
                400, "0x80040203", "Invalid argument: the opportunity is already closed."
            )
        valid = {3} if won else {4, 5}
        if status not in valid:
            raise DataverseError(
                400,
                "0x80040203",
                f"Invalid argument: Status {status} is not a valid status for a "
                f"{'won' if won else 'lost'} opportunity.",
            )
        close_date = close.get("actualend")
        day = str(close_date)[:10] if isinstance(close_date, str) else self.today().isoformat()
        revenue = close.get("actualrevenue")
        values: dict[str, Any] = {
            "statecode": 1 if won else 2,
            "statuscode": status,
            "actualclosedate": day,
        }
        if isinstance(revenue, int | Decimal) and not isinstance(revenue, bool):
            values["actualvalue"] = Decimal(revenue).quantize(Decimal("0.0001"))
        inputs = {
            "subject": close.get("subject"),
            "actualrevenue": values.get("actualvalue"),
            "actualend": day,
            "status": status,
        }
        self.store.update(
            "opportunity", ref.id, values, message="Win" if won else "Lose", inputs=inputs
        )
        return Answer(204, {"OData-Version": "4.0"})
