"""Bulk API 2.0 under ``/services/data/vNN.N/jobs``: ingest jobs here, query jobs in
:mod:`.bulk2_query`.

The ingest lifecycle, as Salesforce runs it:

1. ``POST /jobs/ingest`` with ``{"object", "operation", "externalIdFieldName"?,
   "contentType": "CSV", "lineEnding", "columnDelimiter"}`` → 200, the job info in state
   ``Open`` with its ``contentUrl`` (``services/data/vNN.N/jobs/ingest/750…/batches``).
2. ``PUT /jobs/ingest/750…/batches`` with ``Content-Type: text/csv`` → 201, no body. The
   first row names the fields; relationship columns by external id are written
   ``Account.Stripe_Customer_Id__c``. An empty value leaves the field unchanged and ``#N/A``
   sets it to null, as in Salesforce.
3. ``PATCH /jobs/ingest/750…`` with ``{"state": "UploadComplete"}`` (or ``"Aborted"``) → 200,
   the job info. The job is queued, then ``InProgress`` while Salesforce processes it, then
   ``JobComplete`` (rows may still have failed one by one: a failed row never undoes
   another) or ``Failed`` (the whole upload was unusable: a field the object lacks, line
   endings other than the job's). How long it stays in progress is the sandbox's
   :class:`Processing`: a number of status checks and/or seconds of the sandbox clock; with
   neither, the job is processed the moment it is closed.
4. ``GET …/successfulResults`` (CSV ``"sf__Id","sf__Created",<the uploaded columns>``),
   ``GET …/failedResults`` (``"sf__Id","sf__Error",<columns>``; the error is
   ``CODE:message:fields --``) and ``GET …/unprocessedrecords`` (rows of an aborted job).
   ``GET /jobs/ingest`` lists jobs; ``DELETE /jobs/ingest/750…`` deletes a finished job.

Operations: ``insert``, ``update`` (an ``Id`` column), ``upsert`` (by ``externalIdFieldName``,
``Id`` allowed), ``delete`` (an ``Id`` column). ``hardDelete`` is refused (the integration
user has no "Bulk API Hard Delete" permission here). Not modelled: parallel processing
(results come in upload order, which Salesforce does not promise), the multipart create,
``assignmentRuleId``, and partial progress (rows are written all at once when processing
ends).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import jsonio
from .bulk2_query import QueryJobs
from .errors import ApiError, not_found
from .ids import IdGenerator, to18
from .store import Store
from .values import format_datetime

JOB_PREFIX = "750"
OPERATIONS = ("insert", "update", "upsert", "delete")
DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
#: Largest upload Salesforce accepts in one PUT (150 MB, base64 counted; we count raw bytes).
MAX_UPLOAD_BYTES = 150 * 1024 * 1024
NULL = "#N/A"

_JOB = r"(?P<job>[a-zA-Z0-9]{15,18})"
ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/jobs/ingest/?$"), "/jobs/ingest"),
    (re.compile(rf"^/jobs/ingest/{_JOB}/?$"), "/jobs/ingest/{jobId}"),
    (re.compile(rf"^/jobs/ingest/{_JOB}/batches/?$"), "/jobs/ingest/{jobId}/batches"),
    (
        re.compile(
            rf"^/jobs/ingest/{_JOB}/(?P<results>successfulResults|failedResults|unprocessedrecords)/?$"
        ),
        "/jobs/ingest/{jobId}/{results}",
    ),
    (re.compile(r"^/jobs/query/?$"), "/jobs/query"),
    (re.compile(rf"^/jobs/query/{_JOB}/?$"), "/jobs/query/{jobId}"),
    (re.compile(rf"^/jobs/query/{_JOB}/results/?$"), "/jobs/query/{jobId}/results"),
]


def template_for(api_path: str) -> str | None:
    """The counted path template of a Bulk API 2.0 path, or None when it is not one."""
    for pattern, template in ROUTES:
        found = pattern.match(api_path)
        if found:
            return template.replace("{results}", found.groupdict().get("results") or "")
    return None


@dataclass(frozen=True)
class Processing:
    """How long a closed job takes: it answers ``InProgress`` to ``polls`` status checks and
    until ``seconds`` of the sandbox clock have passed since it was closed."""

    polls: int = 0
    seconds: float = 0.0

    @property
    def instant(self) -> bool:
        return self.polls <= 0 and self.seconds <= 0


@dataclass
class Job:
    id: str
    operation: str
    sobject: str
    external_id: str | None
    line_ending: str
    column_delimiter: str
    created_by: str
    created: datetime
    modified: datetime
    api_version: str
    state: str = "Open"
    data: bytes | None = None
    successful: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    failed: list[tuple[str, str, list[str]]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    error_message: str | None = None
    closed_at: datetime | None = None
    polls_left: int = 0

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": self.created_by,
            "createdDate": format_datetime(self.created),
            "systemModstamp": format_datetime(self.modified),
            "state": self.state,
        }
        if self.external_id:
            out["externalIdFieldName"] = self.external_id
        out.update(
            {
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float_text(self.api_version),
                "jobType": "V2Ingest",
                "contentUrl": f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches",
                "lineEnding": self.line_ending,
                "columnDelimiter": self.column_delimiter,
            }
        )
        return out

    def detail(self) -> dict[str, Any]:
        out = self.info()
        out.pop("contentUrl", None)
        out.update(
            {
                "numberRecordsProcessed": len(self.successful) + len(self.failed),
                "numberRecordsFailed": len(self.failed),
                "retries": 0,
                "totalProcessingTime": 0,
                "apiActiveProcessingTime": 0,
                "apexProcessingTime": 0,
            }
        )
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


def float_text(version: str) -> Decimal:
    """The job's ``apiVersion`` as the JSON number Salesforce sends (``59.0``), no float."""
    return Decimal(version)


@dataclass
class BulkResponse:
    status: int
    body: Any = None  # JSON-able, or a str of CSV
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


class Bulk2Api:
    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        processing: Processing | None = None,
        ids: IdGenerator | None = None,
    ) -> None:
        self.store = store
        self.now = now
        self.processing = processing or Processing()
        self.jobs: dict[str, Job] = {}
        self._ids = ids or IdGenerator(start=0x1B2C3)
        #: Ingest jobs processed, for ``/limits`` (``DailyBulkApiBatches``).
        self.batches_run = 0
        self.queries = QueryJobs(
            store,
            now,
            lambda: self.processing.polls,
            lambda: self.processing.seconds,
            self._ids,
        )

    # ------------------------------------------------------------------ dispatch

    def handle(
        self,
        method: str,
        api_path: str,
        version: str,
        raw: bytes,
        args: dict[str, str] | None = None,
    ) -> BulkResponse:
        for pattern, template in ROUTES:
            found = pattern.match(api_path)
            if not found:
                continue
            groups = found.groupdict()
            if template.startswith("/jobs/query"):
                answer = self._query(method, template, groups, version, raw, args or {})
                if answer is not None:
                    return answer
            elif template == "/jobs/ingest":
                if method == "POST":
                    return self.create(version, _json(raw))
                if method == "GET":
                    return self.list_jobs()
            elif template == "/jobs/ingest/{jobId}":
                job = self._job(groups["job"])
                if method == "GET":
                    self._advance(job)
                    return BulkResponse(200, job.detail())
                if method == "PATCH":
                    return self.set_state(job, _json(raw))
                if method == "DELETE":
                    return self.delete(job)
            elif template == "/jobs/ingest/{jobId}/batches":
                job = self._job(groups["job"])
                if method == "PUT":
                    return self.upload(job, raw)
            else:
                job = self._job(groups["job"])
                if method == "GET":
                    return self.results(job, groups["results"])
            raise ApiError(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed for {api_path}"
            )
        raise not_found("The requested resource does not exist")

    def _query(
        self,
        method: str,
        template: str,
        groups: dict[str, str],
        version: str,
        raw: bytes,
        args: dict[str, str],
    ) -> BulkResponse | None:
        jobs = self.queries
        result = None
        if template == "/jobs/query":
            if method == "POST":
                result = jobs.create(version, _json(raw))
            elif method == "GET":
                result = jobs.list_jobs()
        elif template == "/jobs/query/{jobId}":
            job = jobs.job(groups["job"])
            if method == "GET":
                result = jobs.status(job)
            elif method == "PATCH":
                result = jobs.abort(job, _json(raw))
            elif method == "DELETE":
                result = jobs.delete(job)
        elif method == "GET":
            result = jobs.results(jobs.job(groups["job"]), args)
        if result is None:
            return None
        return BulkResponse(result.status, result.body, result.content_type, result.headers)

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id[:15]) if len(job_id) >= 15 else None
        if job is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    # ------------------------------------------------------------------ resources

    def create(self, version: str, body: Any) -> BulkResponse:
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize the job definition")
        operation = body.get("operation")
        if operation == "hardDelete":
            raise ApiError(
                400,
                "FEATURENOTENABLED",
                "Insufficient privileges to perform a hardDelete: the user lacks the "
                "Bulk API Hard Delete permission",
            )
        if operation not in OPERATIONS:
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation}")
        sobject = body.get("object")
        obj = self.store.schema.get(str(sobject)) if sobject else None
        if obj is None:
            raise ApiError(400, "INVALIDJOB", f"Unable to find object: {sobject}")
        if body.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "INVALIDJOB", f"Invalid content type: {body.get('contentType')}")
        line_ending = str(body.get("lineEnding", "LF"))
        delimiter = str(body.get("columnDelimiter", "COMMA"))
        if line_ending not in LINE_ENDINGS:
            raise ApiError(400, "INVALIDJOB", f"Invalid line ending: {line_ending}")
        if delimiter not in DELIMITERS:
            raise ApiError(400, "INVALIDJOB", f"Invalid column delimiter: {delimiter}")
        external_id = body.get("externalIdFieldName")
        if operation == "upsert":
            if not external_id:
                raise ApiError(
                    400, "INVALIDJOB", "External ID was blank for upsert. Please specify one."
                )
            ext = obj.field(str(external_id))
            if ext is None or not (ext.external_id or ext.id_lookup or ext.type == "id"):
                raise ApiError(
                    400,
                    "INVALIDJOB",
                    f"InvalidJob : Field name provided, {external_id} is not an External ID "
                    f"or indexed field for {obj.name}",
                )
            external_id = ext.name
        stamp = self.now()
        job_id = self._ids.new(JOB_PREFIX)
        job = Job(
            id=job_id,
            operation=str(operation),
            sobject=obj.name,
            external_id=str(external_id) if external_id else None,
            line_ending=line_ending,
            column_delimiter=delimiter,
            created_by=self.store.user_id,
            created=stamp,
            modified=stamp,
            api_version=version,
        )
        self.jobs[job_id[:15]] = job
        return BulkResponse(200, job.info())

    def list_jobs(self) -> BulkResponse:
        return BulkResponse(
            200,
            {
                "done": True,
                "records": [job.info() for job in self.jobs.values()],
                "nextRecordsUrl": None,
            },
        )

    def upload(self, job: Job, raw: bytes) -> BulkResponse:
        if job.state != "Open":
            raise ApiError(
                409,
                "INVALIDJOBSTATE",
                f"Job {job.id} is not open for data upload. Its state is {job.state}.",
            )
        if job.data is not None:
            raise ApiError(
                409,
                "INVALIDJOBSTATE",
                "Found multiple contents for job: <{0}>, please 'Close' / 'Abort' / 'Delete' the "
                "current Job then create a new Job and make sure you only do 'PUT' once on a "
                "given Job.".replace("{0}", job.id),
            )
        if len(raw) > MAX_UPLOAD_BYTES:
            raise ApiError(400, "INVALIDBATCH", "The upload exceeds the maximum size of 150 MB")
        if not raw.strip():
            raise ApiError(400, "INVALIDBATCH", "The data for this job is empty")
        job.data = raw
        job.modified = self.now()
        return BulkResponse(201, None)

    def set_state(self, job: Job, body: Any) -> BulkResponse:
        wanted = body.get("state") if isinstance(body, dict) else None
        if wanted == "UploadComplete":
            if job.state != "Open":
                raise ApiError(
                    409,
                    "INVALIDJOBSTATE",
                    f"Job {job.id} cannot be closed; its state is {job.state}.",
                )
            job.state = "UploadComplete"
            job.modified = job.closed_at = self.now()
            job.polls_left = self.processing.polls
            answer = job.info()
            if self.processing.instant:
                self._process(job)
            return BulkResponse(200, answer)
        if wanted == "Aborted":
            if job.state in ("JobComplete", "Failed", "Aborted"):
                raise ApiError(
                    409,
                    "INVALIDJOBSTATE",
                    f"Job {job.id} cannot be aborted; its state is {job.state}.",
                )
            job.state = "Aborted"
            job.modified = self.now()
            if job.data:
                job.header, rows = self._rows(job)
                job.unprocessed = rows
            return BulkResponse(200, job.info())
        raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state: {wanted}")

    def delete(self, job: Job) -> BulkResponse:
        if job.state not in ("JobComplete", "Failed", "Aborted"):
            raise ApiError(
                409,
                "INVALIDJOBSTATE",
                f"Job {job.id} cannot be deleted while it is {job.state}.",
            )
        del self.jobs[job.id[:15]]
        return BulkResponse(204, None)

    def _advance(self, job: Job) -> None:
        """A status check: a closed job is in progress until its processing time is up, then
        it is processed (and reports JobComplete or Failed)."""
        if job.state not in ("UploadComplete", "InProgress"):
            return
        assert job.closed_at is not None
        elapsed = (self.now() - job.closed_at).total_seconds()
        if job.polls_left > 0 or elapsed < self.processing.seconds:
            job.polls_left = max(job.polls_left - 1, 0)
            job.state = "InProgress"
            return
        self._process(job)

    def results(self, job: Job, kind: str) -> BulkResponse:
        if kind != "unprocessedrecords" and job.state not in ("JobComplete", "Failed"):
            raise ApiError(
                409,
                "INVALIDJOBSTATE",
                f"Results are available once the job is complete; its state is {job.state}.",
            )
        delimiter = DELIMITERS[job.column_delimiter]
        ending = LINE_ENDINGS[job.line_ending]
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
        if kind == "successfulResults":
            out.write(_quoted(["sf__Id", "sf__Created"], delimiter) + _tail(job, delimiter, ending))
            for record_id, created, row in job.successful:
                writer.writerow([record_id, "true" if created else "false", *row])
        elif kind == "failedResults":
            out.write(_quoted(["sf__Id", "sf__Error"], delimiter) + _tail(job, delimiter, ending))
            for record_id, error, row in job.failed:
                writer.writerow([record_id, error, *row])
        else:
            if job.header:
                writer.writerow(job.header)
            for row in job.unprocessed:
                writer.writerow(row)
        return BulkResponse(200, out.getvalue(), "text/csv")

    # ------------------------------------------------------------------ processing

    def _rows(self, job: Job) -> tuple[list[str], list[list[str]]]:
        assert job.data is not None
        text = job.data.decode("utf-8-sig")
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=DELIMITERS[job.column_delimiter]
        )
        rows = [row for row in reader if row and any(cell != "" for cell in row)]
        if not rows:
            return [], []
        return rows[0], rows[1:]

    def _process(self, job: Job) -> None:
        job.state = "InProgress"
        self.batches_run += 1
        if not job.data:
            job.state = "Failed"
            job.error_message = "No data was uploaded for this job."
            return
        if job.line_ending == "LF" and b"\r\n" in job.data:
            job.state = "Failed"
            job.error_message = (
                "ClientInputError : LineEnding is invalid on user data. Current LineEnding "
                "setting is LF"
            )
            job.modified = self.now()
            return
        header, rows = self._rows(job)
        job.header = header
        obj = self.store.object(job.sobject)
        problem = self._check_header(job, header)
        if problem:
            job.state = "Failed"
            job.error_message = problem
            job.modified = self.now()
            return
        for row in rows:
            row = row + [""] * (len(header) - len(row))
            body: dict[str, Any] = {}
            record_id = ""
            for name, value in zip(header, row, strict=False):
                if value == "":
                    continue  # empty: the field is left as it is
                if "." in name:
                    relation, ext = name.split(".", 1)
                    body[relation] = {ext: None if value == NULL else value}
                    continue
                if name.lower() == "id":
                    record_id = value
                    continue
                body[name] = None if value == NULL else value
            try:
                # The store validates a write completely before changing anything, so a
                # refused row leaves no trace and needs no (whole-org) snapshot.
                record_id, created = self._apply(job, obj.name, record_id, body)
            except ApiError as exc:
                message = f"{exc.error_code}:{exc.message}:{','.join(exc.fields or [])} --"
                job.failed.append((record_id, message, row))
                continue
            job.successful.append((record_id, created, row))
        job.state = "JobComplete"
        job.modified = self.now()

    def _check_header(self, job: Job, header: list[str]) -> str | None:
        obj = self.store.object(job.sobject)
        for name in header:
            base = name.split(".", 1)[0]
            if name.lower() == "id" or obj.field(base) or ("." in name and obj.relationship(base)):
                continue
            return f"InvalidBatch : Field name not found : {name}"
        lowered = [h.lower() for h in header]
        if job.operation in ("update", "delete") and "id" not in lowered:
            return "InvalidBatch : Field name not found : Id"
        if job.operation == "upsert" and job.external_id and job.external_id.lower() not in lowered:
            return f"InvalidBatch : Field name not found : {job.external_id}"
        return None

    def _apply(
        self, job: Job, sobject: str, record_id: str, body: dict[str, Any]
    ) -> tuple[str, bool]:
        if job.operation == "insert":
            if record_id:
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return self.store.create(sobject, body), True
        if job.operation == "update":
            if not record_id:
                raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
            self.store.update(sobject, record_id, body)
            return _id18(record_id), False
        if job.operation == "delete":
            if not record_id:
                raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in a delete call", [])
            self.store.delete(sobject, record_id)
            return _id18(record_id), False
        assert job.external_id is not None
        if job.external_id.lower() == "id":
            return self.store.upsert(sobject, "Id", record_id, body)
        key = next((k for k in body if k.lower() == job.external_id.lower()), None)
        value = body.get(key) if key else None
        if value in (None, ""):
            raise ApiError(400, "MISSING_ARGUMENT", f"{job.external_id} not specified", [])
        return self.store.upsert(sobject, job.external_id, str(value), body)


def _id18(record_id: str) -> str:
    try:
        return to18(record_id)
    except ValueError:
        return record_id


def _quoted(names: list[str], delimiter: str) -> str:
    return delimiter.join(f'"{n}"' for n in names)


def _tail(job: Job, delimiter: str, ending: str) -> str:
    out = io.StringIO()
    if job.header:
        out.write(delimiter)
        csv.writer(out, delimiter=delimiter, lineterminator=ending).writerow(job.header)
    else:
        out.write(ending)
    return out.getvalue()


def _json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return jsonio.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
