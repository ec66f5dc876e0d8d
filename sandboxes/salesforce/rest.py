"""REST API resources under ``/services/data/vNN.N``: sObjects, query, collections, composite.

Handlers take an :class:`ApiRequest` and return an :class:`ApiResponse` or raise
:class:`~.errors.ApiError`; they know nothing of HTTP servers, so ``/composite`` can run its
subrequests through the same :meth:`RestApi.dispatch`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

from . import ids
from .describe import global_describe, object_describe, object_summary
from .errors import ApiError, invalid_field, json_parser_error, not_found
from .query import Cursors, Executor
from .store import Store, to_json
from .traffic import ApiUsage

MAX_COLLECTION_RECORDS = 200
MAX_COMPOSITE_SUBREQUESTS = 25
SUPPORTED_VERSIONS = ("56.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0")
VERSION_LABELS = {
    "56.0": "Winter '23", "57.0": "Spring '23", "58.0": "Summer '23", "59.0": "Winter '24",
    "60.0": "Spring '24", "61.0": "Summer '24", "62.0": "Winter '25",
}  # fmt: skip


@dataclass
class ApiRequest:
    method: str
    path: str  # after /services/data/vNN.N, e.g. "/sobjects/Account/001..."
    version: str
    args: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    body: Any = None


@dataclass
class ApiResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[ApiRequest, "re.Match[str]"], ApiResponse]

_ID = r"[a-zA-Z0-9]+"
_NAME = r"[A-Za-z][A-Za-z0-9_]*"


class _RollBack(Exception):
    """Raised inside an all-or-none block to undo it after collecting every result."""


class RestApi:
    def __init__(
        self,
        store: Store,
        cursors: Cursors,
        usage: ApiUsage,
        today: Callable[[], date],
        default_batch_size: int = 2000,
    ) -> None:
        self.store = store
        self.cursors = cursors
        self.usage = usage
        self.today = today
        self.default_batch_size = default_batch_size
        #: (Bulk API ingest jobs processed, Bulk API 2.0 query jobs created), for /limits.
        self.bulk_counts: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.routes: list[tuple[frozenset[str], re.Pattern[str], str, Handler]] = []
        route = self._route
        route({"GET"}, r"/?", "/", self.resources)
        route({"GET"}, r"/limits", "/limits", self.limits)
        route({"GET"}, r"/sobjects", "/sobjects", self.describe_global)
        route(
            {"GET", "POST"},
            rf"/sobjects/(?P<sobject>{_NAME})",
            "/sobjects/{sobject}",
            self.sobject_root,
        )
        route(
            {"GET"},
            rf"/sobjects/(?P<sobject>{_NAME})/describe",
            "/sobjects/{sobject}/describe",
            self.describe,
        )
        route(
            {"GET", "PATCH", "DELETE", "POST"},
            rf"/sobjects/(?P<sobject>{_NAME})/(?P<id>[^/]+)",
            "/sobjects/{sobject}/{id}",
            self.sobject_row,
        )
        route(
            {"GET", "PATCH", "DELETE"},
            rf"/sobjects/(?P<sobject>{_NAME})/(?P<field>{_NAME})/(?P<value>.+)",
            "/sobjects/{sobject}/{field}/{value}",
            self.sobject_by_external_id,
        )
        route({"GET"}, r"/(?P<endpoint>query|queryAll)", "/{endpoint}", self.query)
        route(
            {"GET"},
            rf"/(?P<endpoint>query|queryAll)/(?P<locator>{_ID}-\d+)",
            "/{endpoint}/{locator}",
            self.query_more,
        )
        route(
            {"POST", "PATCH", "DELETE", "GET"},
            r"/composite/sobjects",
            "/composite/sobjects",
            self.collections,
        )
        route(
            {"GET", "POST"},
            rf"/composite/sobjects/(?P<sobject>{_NAME})",
            "/composite/sobjects/{sobject}",
            self.collections_retrieve,
        )
        route(
            {"PATCH"},
            rf"/composite/sobjects/(?P<sobject>{_NAME})/(?P<field>{_NAME})",
            "/composite/sobjects/{sobject}/{field}",
            self.collections_upsert,
        )
        route({"POST"}, r"/composite", "/composite", self.composite)

    def _route(self, methods: set[str], pattern: str, template: str, handler: Handler) -> None:
        self.routes.append((frozenset(methods), re.compile(f"^{pattern}$"), template, handler))

    def match(self, method: str, path: str) -> tuple[str, Handler, re.Match[str]] | None:
        for methods, pattern, template, handler in self.routes:
            found = pattern.match(path)
            if found is None:
                continue
            if method not in methods:
                continue
            return self._template(template, found), handler, found
        return None

    def _template(self, template: str, found: re.Match[str]) -> str:
        groups = found.groupdict()
        if "sobject" in groups:
            obj = self.store.schema.get(groups["sobject"])
            template = template.replace("{sobject}", obj.name if obj else groups["sobject"])
        if "endpoint" in groups:
            template = template.replace("{endpoint}", groups["endpoint"])
        if "field" in groups:
            template = template.replace("{field}", groups["field"])
        return template

    def template_for(self, method: str, path: str) -> str:
        found = self.match(method, path)
        if found is not None:
            return found[0]
        for _methods, pattern, template, _handler in self.routes:
            match = pattern.match(path)
            if match is not None:
                return self._template(template, match)
        return path

    def dispatch(self, request: ApiRequest) -> ApiResponse:
        path = request.path.rstrip("/") or "/"
        found = self.match(request.method, path)
        if found is None:
            if any(p.match(path) for _m, p, _t, _h in self.routes):
                raise ApiError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{request.method}' not allowed. Allowed are "
                    + ",".join(
                        sorted({m for ms, p, _t, _h in self.routes if p.match(path) for m in ms})
                    ),
                )
            raise not_found("The requested resource does not exist")
        _template, handler, match = found
        return handler(request, match)

    # ------------------------------------------------------------ resources

    def resources(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        base = f"/services/data/v{request.version}"
        names = ["sobjects", "query", "queryAll", "composite", "limits", "search", "tooling"]
        return ApiResponse(200, {name: f"{base}/{name}" for name in names})

    def limits(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        """The limits Salesforce documents for an Enterprise Edition org with no add-ons, at
        their usual allocations. API requests count today's calls; Bulk API batches and Bulk
        API 2.0 query jobs count the jobs this sandbox ran since it started; nothing else is
        ever used here."""
        limit = self.usage.daily_limit

        def fixed(maximum: int) -> dict[str, int]:
            return {"Max": maximum, "Remaining": maximum}

        def used(maximum: int, count: int) -> dict[str, int]:
            return {"Max": maximum, "Remaining": max(maximum - count, 0)}

        counts = self.bulk_counts()
        return ApiResponse(
            200,
            {
                "AnalyticsExternalDataSizeMB": fixed(40960),
                "ConcurrentAsyncGetReportInstances": fixed(200),
                "ConcurrentSyncReportRuns": fixed(20),
                "DailyApiRequests": used(limit, self.usage.used),
                "DailyAsyncApexExecutions": fixed(250000),
                "DailyAsyncApexTests": fixed(500),
                "DailyBulkApiBatches": used(15000, counts[0]),
                "DailyBulkV2QueryFileStorageMB": fixed(976562),
                "DailyBulkV2QueryJobs": used(10000, counts[1]),
                "DailyDeliveredPlatformEvents": fixed(50000),
                "DailyDurableGenericStreamingApiEvents": fixed(1000000),
                "DailyDurableStreamingApiEvents": fixed(1000000),
                "DailyGenericStreamingApiEvents": fixed(10000),
                "DailyStandardVolumePlatformEvents": fixed(10000),
                "DailyStreamingApiEvents": fixed(1000000),
                "DailyWorkflowEmails": fixed(100000),
                "DataStorageMB": fixed(1024),
                "DurableStreamingApiConcurrentClients": fixed(2000),
                "FileStorageMB": fixed(10240),
                "HourlyAsyncReportRuns": fixed(1200),
                "HourlyDashboardRefreshes": fixed(200),
                "HourlyDashboardResults": fixed(5000),
                "HourlyDashboardStatuses": fixed(999999999),
                "HourlyLongTermIdMapping": fixed(100000),
                "HourlyODataCallout": fixed(10000),
                "HourlyPublishedPlatformEvents": fixed(250000),
                "HourlyPublishedStandardVolumePlatformEvents": fixed(50000),
                "HourlyShortTermIdMapping": fixed(100000),
                "HourlySyncReportRuns": fixed(500),
                "HourlyTimeBasedWorkflow": fixed(1000),
                "MassEmail": fixed(5000),
                "MonthlyPlatformEventsUsageEntitlement": fixed(0),
                "PermissionSets": {**fixed(1500), "CreateCustom": fixed(1000)},
                "SingleEmail": fixed(5000),
                "StreamingApiConcurrentClients": fixed(2000),
            },
        )

    def describe_global(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        return ApiResponse(200, global_describe(self.store.schema, request.version))

    def describe(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        obj = self.store.object(match["sobject"])
        return ApiResponse(200, object_describe(obj, request.version))

    # ------------------------------------------------------------- sObjects

    def sobject_root(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        obj = self.store.object(match["sobject"])
        if request.method == "GET":
            return ApiResponse(
                200,
                {"objectDescribe": object_summary(obj, request.version), "recentItems": []},
            )
        record_id = self.store.create(obj.name, self._body_object(request))
        return self._created(request, obj.name, record_id)

    def _created(self, request: ApiRequest, sobject: str, record_id: str) -> ApiResponse:
        return ApiResponse(
            201,
            {"id": record_id, "success": True, "errors": []},
            {"Location": f"/services/data/v{request.version}/sobjects/{sobject}/{record_id}"},
        )

    def sobject_row(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        obj = self.store.object(match["sobject"])
        record_id = match["id"]
        if request.method == "POST":
            if record_id.lower() != "id":
                raise ApiError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    "HTTP Method 'POST' not allowed. Allowed are GET,PATCH,DELETE,HEAD",
                )
            created = self.store.create(obj.name, self._body_object(request))
            return self._created(request, obj.name, created)
        if request.method == "GET":
            record = self.store.get(obj.name, record_id)
            if record is None or ids.prefix_of(ids.to18(record_id)) != obj.key_prefix:
                raise not_found(
                    f"Provided external ID field does not exist or is not accessible: {record_id}"
                    if not ids.is_valid(record_id)
                    else "The requested resource does not exist"
                )
            return ApiResponse(
                200,
                to_json(obj, record, request.version, self._field_list(obj.name, request)),
            )
        if not ids.is_valid(record_id):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {record_id}"
            )
        if request.method == "PATCH":
            self.store.update(obj.name, record_id, self._body_object(request))
        else:
            self.store.delete(obj.name, record_id)
        return ApiResponse(204)

    def _field_list(self, sobject: str, request: ApiRequest) -> list[str] | None:
        wanted = request.args.get("fields")
        if not wanted:
            return None
        obj = self.store.object(sobject)
        names = []
        for name in (n.strip() for n in wanted.split(",") if n.strip()):
            f = obj.field(name)
            if f is None:
                raise invalid_field(f"No such column '{name}' on sobject of type {obj.name}")
            names.append(f.name)
        return names

    def sobject_by_external_id(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        obj = self.store.object(match["sobject"])
        field_def = obj.field(match["field"])
        value = match["value"]
        if field_def is None or not (field_def.external_id or field_def.id_lookup):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {match['field']}"
            )
        if request.method == "PATCH":
            record_id, created = self.store.upsert(
                obj.name, field_def.name, value, self._body_object(request)
            )
            if created:
                return self._upserted(request, obj.name, record_id, True)
            if float(request.version) >= 46.0:
                return self._upserted(request, obj.name, record_id, False)
            return ApiResponse(204)
        matches = self.store.find_by(obj.name, field_def.name, value)
        if not matches:
            raise not_found()
        if len(matches) > 1:
            raise ApiError(
                300,
                "MULTIPLE_CHOICES",
                "more than one record",
                raw_body=[
                    f"/services/data/v{request.version}/sobjects/{obj.name}/{m['Id']}"
                    for m in matches
                ],
            )
        if request.method == "DELETE":
            self.store.delete(obj.name, matches[0]["Id"])
            return ApiResponse(204)
        return ApiResponse(
            200, to_json(obj, matches[0], request.version, self._field_list(obj.name, request))
        )

    def _upserted(
        self, request: ApiRequest, sobject: str, record_id: str, created: bool
    ) -> ApiResponse:
        return ApiResponse(
            201 if created else 200,
            {"id": record_id, "success": True, "errors": [], "created": created},
            {"Location": f"/services/data/v{request.version}/sobjects/{sobject}/{record_id}"}
            if created
            else {},
        )

    @staticmethod
    def _body_object(request: ApiRequest) -> dict[str, Any]:
        if not isinstance(request.body, dict):
            raise json_parser_error(
                "Cannot deserialize instance of sobject from "
                + ("no content" if request.body is None else "non-object value")
            )
        return request.body

    # ---------------------------------------------------------------- query

    def batch_size(self, request: ApiRequest) -> int:
        options = request.headers.get("sforce-query-options", "")
        found = re.search(r"batchSize\s*=\s*(\d+)", options)
        if not found:
            return self.default_batch_size
        return max(200, min(2000, int(found.group(1))))

    def query(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        text = request.args.get("q")
        if text is None:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        endpoint = match["endpoint"]
        executor = Executor(self.store, text, request.version, self.today())
        total, records = executor.run(include_deleted=endpoint == "queryAll")
        body = self.cursors.page(
            records, total, self.batch_size(request), request.version, endpoint
        )
        return ApiResponse(200, body)

    def query_more(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        return ApiResponse(
            200, self.cursors.more(match["locator"], self.batch_size(request), request.version)
        )

    # ---------------------------------------------------- sObject Collections

    def _collection_body(self, request: ApiRequest) -> tuple[bool, list[Any]]:
        body = self._body_object(request)
        records = body.get("records")
        if not isinstance(records, list):
            raise json_parser_error("Cannot deserialize instance of list from missing records")
        self._check_collection_size(len(records))
        return bool(body.get("allOrNone", False)), records

    @staticmethod
    def _check_collection_size(count: int) -> None:
        if count > MAX_COLLECTION_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"Record limit reached. Cannot submit more than {MAX_COLLECTION_RECORDS} "
                "records into this call",
            )

    @staticmethod
    def _type_of(record: Any) -> str:
        if not isinstance(record, dict):
            raise json_parser_error("Cannot deserialize instance of sobject from non-object value")
        attributes = record.get("attributes")
        sobject = attributes.get("type") if isinstance(attributes, dict) else None
        if not sobject:
            raise ApiError(
                400,
                "INVALID_FIELD",
                "When using the sObject Collections resource, each record must have a type "
                "attribute",
            )
        return str(sobject)

    def _run_all(
        self,
        all_or_none: bool,
        items: list[Any],
        operation: Callable[[Any], dict[str, Any]],
        failure: Callable[[Any, ApiError], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Apply ``operation`` to each item; results in request order, all-or-none if asked."""
        results: list[dict[str, Any]] = []
        failed = False
        try:
            with self.store.atomic():
                for item in items:
                    try:
                        results.append(operation(item))
                    except ApiError as exc:
                        failed = True
                        results.append(failure(item, exc))
                if failed and all_or_none:
                    raise _RollBack
        except _RollBack:
            rolled_back = ApiError(
                400,
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was "
                "using AllOrNone header",
                [],
            ).as_record_errors()
            for position, result in enumerate(results):
                if result["success"]:
                    replaced: dict[str, Any] = {}
                    if (
                        "id" in result
                        and not result.get("created", False)
                        and (position < len(items) and self._had_id(items[position]))
                    ):
                        replaced["id"] = result["id"]
                    replaced.update({"success": False, "errors": rolled_back})
                    results[position] = replaced
        return results

    @staticmethod
    def _had_id(item: Any) -> bool:
        if isinstance(item, dict):
            return any(k.lower() == "id" for k in item)
        return isinstance(item, str)

    def collections(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        if request.method == "DELETE":
            raw_ids = [i for i in request.args.get("ids", "").split(",") if i]
            self._check_collection_size(len(raw_ids))
            all_or_none = request.args.get("allOrNone", "false").lower() == "true"

            def delete(record_id: str) -> dict[str, Any]:
                self.store.delete(None, record_id)
                return {"id": ids.to18(record_id), "success": True, "errors": []}

            return ApiResponse(
                200,
                self._run_all(
                    all_or_none,
                    raw_ids,
                    delete,
                    lambda rid, exc: {
                        "id": rid,
                        "success": False,
                        "errors": exc.as_record_errors(),
                    },
                ),
            )
        if request.method == "GET":
            raise ApiError(400, "MISSING_ARGUMENT", "The sObject type must be specified in the URL")
        all_or_none, records = self._collection_body(request)
        if request.method == "POST":

            def create(record: Any) -> dict[str, Any]:
                sobject = self._type_of(record)
                if any(k.lower() == "id" for k in record):
                    raise ApiError(
                        400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"]
                    )
                record_id = self.store.create(sobject, record)
                return {"id": record_id, "success": True, "errors": []}

            results = self._run_all(
                all_or_none,
                records,
                create,
                lambda record, exc: {"success": False, "errors": exc.as_record_errors()},
            )
            return ApiResponse(200, results)

        def update(record: Any) -> dict[str, Any]:
            sobject = self._type_of(record)
            body = dict(record)
            record_id = next((body.pop(k) for k in list(body) if k.lower() == "id"), None)
            if not record_id:
                raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
            self.store.update(sobject, str(record_id), body)
            return {"id": ids.to18(str(record_id)), "success": True, "errors": []}

        def update_failure(record: Any, exc: ApiError) -> dict[str, Any]:
            result: dict[str, Any] = {}
            if isinstance(record, dict):
                record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
                if record_id:
                    result["id"] = record_id
            result.update({"success": False, "errors": exc.as_record_errors()})
            return result

        return ApiResponse(200, self._run_all(all_or_none, records, update, update_failure))

    def collections_retrieve(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        obj = self.store.object(match["sobject"])
        if request.method == "POST":
            body = self._body_object(request)
            wanted_ids = [str(i) for i in body.get("ids", [])]
            fields = ",".join(str(f) for f in body.get("fields", []))
        else:
            wanted_ids = [i for i in request.args.get("ids", "").split(",") if i]
            fields = request.args.get("fields", "")
        self._check_collection_size(len(wanted_ids))
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields must be specified")
        names = self._field_list(obj.name, ApiRequest("GET", "", "", {"fields": fields}))
        out: list[Any] = []
        for record_id in wanted_ids:
            record = self.store.get(obj.name, record_id) if ids.is_valid(record_id) else None
            out.append(None if record is None else to_json(obj, record, request.version, names))
        return ApiResponse(200, out)

    def collections_upsert(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        obj = self.store.object(match["sobject"])
        field_def = obj.field(match["field"])
        if field_def is None or not (field_def.external_id or field_def.id_lookup):
            raise invalid_field(
                f"Provided external ID field does not exist or is not accessible: {match['field']}"
            )
        all_or_none, records = self._collection_body(request)

        def upsert(record: Any) -> dict[str, Any]:
            sobject = self._type_of(record)
            if self.store.object(sobject).name != obj.name:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"Record type {sobject} does not match the URL sObject type {obj.name}",
                )
            body = dict(record)
            key = next((k for k in body if k.lower() == field_def.name.lower()), None)
            value = body.get(key) if key else None
            if value is None or value == "":
                raise ApiError(
                    400,
                    "MISSING_ARGUMENT",
                    f"{field_def.name} not specified",
                    [],
                )
            record_id, created = self.store.upsert(obj.name, field_def.name, str(value), body)
            return {"id": record_id, "success": True, "errors": [], "created": created}

        return ApiResponse(
            200,
            self._run_all(
                all_or_none,
                records,
                upsert,
                lambda record, exc: {"success": False, "errors": exc.as_record_errors()},
            ),
        )

    # ------------------------------------------------------------- composite

    def composite(self, request: ApiRequest, match: re.Match[str]) -> ApiResponse:
        body = self._body_object(request)
        subrequests = body.get("compositeRequest")
        if not isinstance(subrequests, list) or not subrequests:
            raise json_parser_error("compositeRequest must be a non-empty list")
        if len(subrequests) > MAX_COMPOSITE_SUBREQUESTS:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Composite request exceeded the maximum number of subrequests of "
                f"{MAX_COMPOSITE_SUBREQUESTS}",
            )
        seen: set[str] = set()
        for sub in subrequests:
            ref = sub.get("referenceId") if isinstance(sub, dict) else None
            if not isinstance(ref, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", ref):
                raise json_parser_error(
                    "Each subrequest needs a referenceId that starts with a "
                    "letter and contains only letters, digits and _"
                )
            if ref in seen:
                raise ApiError(400, "INVALID_INPUT", f"Duplicate ReferenceId provided: {ref}")
            seen.add(ref)
        all_or_none = bool(body.get("allOrNone", False))
        outputs: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        halted = _halted_body(
            "The transaction was rolled back since another operation in the "
            "same transaction failed."
        )
        try:
            with self.store.atomic():
                for position, sub in enumerate(subrequests):
                    ref = sub["referenceId"]
                    response = self._run_subrequest(sub, outputs, request)
                    responses.append(response)
                    if response["httpStatusCode"] < 300:
                        outputs[ref] = response["body"]
                    elif all_or_none:
                        for later in subrequests[position + 1 :]:
                            responses.append(
                                {
                                    "body": halted,
                                    "httpHeaders": {},
                                    "httpStatusCode": 400,
                                    "referenceId": later["referenceId"],
                                }
                            )
                        raise _RollBack
        except _RollBack:
            for response in responses:
                if response["httpStatusCode"] < 300:
                    response.update(body=halted, httpHeaders={}, httpStatusCode=400)
        return ApiResponse(200, {"compositeResponse": responses})

    def _run_subrequest(
        self, sub: dict[str, Any], outputs: dict[str, Any], parent: ApiRequest
    ) -> dict[str, Any]:
        ref = sub["referenceId"]
        try:
            url = _substitute(str(sub.get("url", "")), outputs)
            sub_body = _substitute(sub.get("body"), outputs)
        except _MissingReference as missing:
            return {
                "body": _halted_body(
                    f"Invalid reference specified. No value for {missing.expression} found in "
                    f"{missing.reference}. Provided referenceId ('{missing.reference}') might be "
                    "wrong or the referenced subrequest might have failed."
                ),
                "httpHeaders": {},
                "httpStatusCode": 400,
                "referenceId": ref,
            }
        found = re.match(r"^/services/data/v(\d+\.\d)(/[^?]*)?(?:\?(.*))?$", url)
        method = str(sub.get("method", "GET")).upper()
        if found is None or (found.group(2) or "").rstrip("/") == "/composite":
            error = ApiError(400, "INVALID_INPUT", f"Invalid subrequest url: {url}")
            return {
                "body": error.body(),
                "httpHeaders": {},
                "httpStatusCode": 400,
                "referenceId": ref,
            }
        args = dict(parse_qsl(found.group(3) or "", keep_blank_values=True))
        sub_request = ApiRequest(
            method=method,
            path=found.group(2) or "/",
            version=found.group(1),
            args=args,
            headers={k.lower(): str(v) for k, v in (sub.get("httpHeaders") or {}).items()},
            body=sub_body,
        )
        try:
            response = self.dispatch(sub_request)
        except ApiError as exc:
            return {
                "body": exc.body(),
                "httpHeaders": {},
                "httpStatusCode": exc.status,
                "referenceId": ref,
            }
        return {
            "body": response.body,
            "httpHeaders": response.headers,
            "httpStatusCode": response.status,
            "referenceId": ref,
        }


def _halted_body(message: str) -> list[dict[str, Any]]:
    return [{"errorCode": "PROCESSING_HALTED", "message": message}]


class _MissingReference(Exception):
    def __init__(self, reference: str, expression: str) -> None:
        super().__init__(expression)
        self.reference = reference
        self.expression = expression


_REFERENCE = re.compile(r"@\{([A-Za-z][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")


def _lookup(outputs: dict[str, Any], reference: str, path: str) -> Any:
    expression = reference + path
    if reference not in outputs:
        raise _MissingReference(reference, expression)
    value = outputs[reference]
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, index = part
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError):
            raise _MissingReference(reference, expression) from None
    return value


def _substitute(value: Any, outputs: dict[str, Any]) -> Any:
    """Replace ``@{ref.path}`` references in strings, lists and dicts."""
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return _lookup(outputs, whole.group(1), whole.group(2))
        return _REFERENCE.sub(lambda m: str(_lookup(outputs, m.group(1), m.group(2))), value)
    if isinstance(value, list):
        return [_substitute(v, outputs) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, outputs) for k, v in value.items()}
    return value
