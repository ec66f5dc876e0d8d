"""Bulk API 2.0 query jobs under ``/services/data/vNN.N/jobs/query``.

1. ``POST /jobs/query`` with ``{"operation": "query"|"queryAll", "query": "SELECT …",
   "contentType"?, "columnDelimiter"?, "lineEnding"?}`` → 200, the job in state
   ``UploadComplete``. The query is checked at once (a SOQL error answers as ``/query``
   would); Bulk API 2.0 also refuses what it cannot run in bulk: ``COUNT()``, ``OFFSET``,
   ``GROUP BY``/``TYPEOF`` and parent-to-child subqueries.
2. ``GET /jobs/query/750…``: ``InProgress`` while the sandbox's processing time runs (see
   :class:`.bulk2.Processing`), then ``JobComplete`` with ``numberRecordsProcessed``.
3. ``GET /jobs/query/750…/results[?maxRecords=N&locator=L]`` → CSV, every value quoted,
   the header row on every set; ``Sforce-NumberOfRecords`` counts the set's rows and
   ``Sforce-Locator`` names the next set (``null`` after the last). Nulls are empty,
   booleans ``true``/``false``, date-times ``2026-11-21T05:50:16.000Z``; parent fields are
   columns named by their path (``Account.Name``).
4. ``GET /jobs/query`` lists jobs; ``PATCH`` ``{"state": "Aborted"}`` aborts one; ``DELETE``
   deletes a finished one.

The rows are those matching when the job completes (Salesforce reads them while it runs).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .errors import ApiError
from .ids import IdGenerator
from .jsonio import format_decimal
from .query import Executor
from .soql import CountAll, SoqlError, SubQuery, parse
from .store import Store
from .values import format_datetime

DEFAULT_MAX_RECORDS = 50_000
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^",
              "BACKQUOTE": "`"}  # fmt: skip
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}


@dataclass
class QueryJob:
    id: str
    operation: str
    text: str
    sobject: str
    created_by: str
    created: datetime
    modified: datetime
    api_version: str
    line_ending: str
    column_delimiter: str
    polls_left: int
    state: str = "UploadComplete"
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    processed: bool = False

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": self.created_by,
            "createdDate": format_datetime(self.created),
            "systemModstamp": format_datetime(self.modified),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": Decimal(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.info(),
            "jobType": "V2Query",
            "numberRecordsProcessed": len(self.rows),
            "retries": 0,
            "totalProcessingTime": 0,
            "isPkChunkingSupported": True,
        }


@dataclass
class QueryResult:
    status: int
    body: Any
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def csv_text(value: Any) -> str:
    """A rendered REST value as Bulk API 2.0 writes it in CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_datetime(value).replace("+0000", "Z")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000", text):
        return text.replace("+0000", "Z")
    return text


class QueryJobs:
    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        polls: Callable[[], int],
        seconds: Callable[[], float],
        ids: IdGenerator,
    ) -> None:
        self.store = store
        self.now = now
        self.polls = polls
        self.seconds = seconds
        self.ids = ids
        self.jobs: dict[str, QueryJob] = {}
        #: Query jobs created, for ``/limits`` (``DailyBulkV2QueryJobs``).
        self.jobs_created = 0

    def job(self, job_id: str) -> QueryJob:
        found = self.jobs.get(job_id[:15]) if len(job_id) >= 15 else None
        if found is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return found

    # ------------------------------------------------------------------ resources

    def create(self, version: str, body: Any) -> QueryResult:
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize the job definition")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation}")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "INVALIDJOB", "The query job needs a query")
        if body.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "INVALIDJOB", f"Invalid content type: {body.get('contentType')}")
        line_ending = str(body.get("lineEnding", "LF"))
        delimiter = str(body.get("columnDelimiter", "COMMA"))
        if line_ending not in LINE_ENDINGS:
            raise ApiError(400, "INVALIDJOB", f"Invalid line ending: {line_ending}")
        if delimiter not in DELIMITERS:
            raise ApiError(400, "INVALIDJOB", f"Invalid column delimiter: {delimiter}")
        sobject = self._check(text, version)
        stamp = self.now()
        job = QueryJob(
            id=self.ids.new("750"),
            operation=str(operation),
            text=text,
            sobject=sobject,
            created_by=self.store.user_id,
            created=stamp,
            modified=stamp,
            api_version=version,
            line_ending=line_ending,
            column_delimiter=delimiter,
            polls_left=self.polls(),
        )
        self.jobs[job.id[:15]] = job
        self.jobs_created += 1
        if self.polls() <= 0 and self.seconds() <= 0:
            self._run(job)
        return QueryResult(200, job.info())

    def _check(self, text: str, version: str) -> str:
        try:
            query = parse(text)
        except SoqlError as exc:
            raise ApiError(400, exc.code, exc.message(text)) from None
        refused = None
        if any(isinstance(item, CountAll) for item in query.select):
            refused = "Aggregate functions such as COUNT()"
        elif any(isinstance(item, SubQuery) for item in query.select):
            refused = "Parent-to-child relationship queries"
        elif query.offset is not None:
            refused = "OFFSET"
        if refused:
            raise ApiError(
                400, "INVALIDJOB", f"{refused} are not supported by Bulk API 2.0 query jobs"
            )
        executor = Executor(self.store, text, version, self.now().date())
        executor.run(include_deleted=False)  # the same checks /query makes, now
        return executor.object(query.sobject, query.sobject_pos).name

    def status(self, job: QueryJob) -> QueryResult:
        if job.state in ("UploadComplete", "InProgress"):
            elapsed = (self.now() - job.created).total_seconds()
            if job.polls_left > 0 or elapsed < self.seconds():
                job.polls_left = max(job.polls_left - 1, 0)
                job.state = "InProgress"
            else:
                self._run(job)
        return QueryResult(200, job.detail())

    def _run(self, job: QueryJob) -> None:
        query = parse(job.text)
        executor = Executor(self.store, job.text, job.api_version, self.now().date())
        obj = executor.object(query.sobject, query.sobject_pos)
        _, records = executor.run(include_deleted=job.operation == "queryAll")
        paths = []
        for item in query.select:
            assert not isinstance(item, CountAll | SubQuery)
            resolved = executor.resolve(obj, item)
            paths.append([*resolved.relationship_names, resolved.field.name])
        job.header = [".".join(path) for path in paths]
        job.rows = []
        for record in records:
            row = []
            for path in paths:
                value: Any = record
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                row.append(csv_text(value))
            job.rows.append(row)
        job.state = "JobComplete"
        job.processed = True
        job.modified = self.now()

    def results(self, job: QueryJob, args: dict[str, str]) -> QueryResult:
        if job.state != "JobComplete":
            raise ApiError(
                409,
                "INVALIDJOBSTATE",
                f"Results are available once the job is complete; its state is {job.state}.",
            )
        try:
            size = int(args.get("maxRecords") or DEFAULT_MAX_RECORDS)
        except ValueError:
            size = 0
        if size <= 0:
            raise ApiError(400, "INVALIDREQUEST", "maxRecords must be a positive whole number")
        start = 0
        locator = args.get("locator")
        if locator:
            try:
                start = int(base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4)))
            except (ValueError, binascii.Error):
                start = -1
            if start < 0 or start > len(job.rows):
                raise ApiError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")
        chunk = job.rows[start : start + size]
        out = io.StringIO()
        writer = csv.writer(
            out,
            delimiter=DELIMITERS[job.column_delimiter],
            lineterminator=LINE_ENDINGS[job.line_ending],
            quoting=csv.QUOTE_ALL,
        )
        writer.writerow(job.header)
        writer.writerows(chunk)
        end = start + len(chunk)
        next_locator = (
            base64.urlsafe_b64encode(str(end).encode()).decode().rstrip("=")
            if end < len(job.rows)
            else "null"
        )
        return QueryResult(
            200,
            out.getvalue(),
            "text/csv",
            {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(len(chunk))},
        )

    def abort(self, job: QueryJob, body: Any) -> QueryResult:
        wanted = body.get("state") if isinstance(body, dict) else None
        if wanted != "Aborted":
            raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state: {wanted}")
        if job.state in ("JobComplete", "Failed", "Aborted"):
            raise ApiError(
                409, "INVALIDJOBSTATE", f"Job {job.id} cannot be aborted; its state is {job.state}."
            )
        job.state = "Aborted"
        job.modified = self.now()
        return QueryResult(200, job.info())

    def delete(self, job: QueryJob) -> QueryResult:
        if job.state not in ("JobComplete", "Failed", "Aborted"):
            raise ApiError(
                409, "INVALIDJOBSTATE", f"Job {job.id} cannot be deleted while it is {job.state}."
            )
        del self.jobs[job.id[:15]]
        return QueryResult(204, None)

    def list_jobs(self) -> QueryResult:
        return QueryResult(
            200,
            {
                "done": True,
                "records": [{**j.info(), "jobType": "V2Query"} for j in self.jobs.values()],
                "nextRecordsUrl": None,
            },
        )
