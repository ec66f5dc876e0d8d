"""Salesforce Bulk API 2.0 ingest: one job per large write, per-record results.

Why not simple-salesforce's ``sf.bulk2``: it sleeps at least ``wait`` seconds before its
first status check and offers no per-record results keyed by our own ids. This client makes
the six calls a job needs (create, upload CSV, close, poll until done, successful and failed
results) through the same ``Salesforce`` session (so an expired session is renewed as for
every other call), polls at once and then backs off through an injected ``sleeper``, and
maps every result row back to the caller's key column (Bulk results are unordered).

CSV values: ``None`` is written ``#N/A`` (set the field to null: an empty cell would leave
it unchanged), booleans ``true``/``false``, Decimals digit for digit, dates ISO.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from simple_salesforce.api import Salesforce

from connector.crm.base import CrmUnavailable, WriteResult

#: Rows per job; Salesforce allows 150 MB of CSV per job, far above what this makes.
MAX_ROWS_PER_JOB = 100_000
NULL = "#N/A"
Sleeper = Callable[[float], None]
Call = Callable[[Callable[[Salesforce], Any]], Any]


def csv_value(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are never sent to Salesforce; use Decimal")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def to_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_value(row.get(c)) if c in row else "" for c in columns])
    return out.getvalue()


class BulkIngest:
    def __init__(
        self,
        call: Call,
        *,
        sleeper: Sleeper,
        max_polls: int = 600,
        poll_seconds: float = 1.0,
    ) -> None:
        self._call = call
        self._sleep = sleeper
        self.max_polls = max_polls
        self.poll_seconds = poll_seconds

    def _request(self, method: str, path: str, body: str | None, content_type: str) -> Any:
        def send(sf: Salesforce) -> Any:
            url = sf.bulk2_url + path
            headers = {"Content-Type": content_type, "Accept": "application/json"}
            if path.endswith("Results"):
                headers["Accept"] = "text/csv"
            response = sf._call_salesforce(  # renews the session, as restful does
                method, url, name=path, data=body.encode("utf-8") if body else None, headers=headers
            )
            return response

        return self._call(send)

    def run(
        self,
        sobject: str,
        operation: str,
        rows: Sequence[Mapping[str, Any]],
        key_column: str,
        *,
        external_id: str | None = None,
    ) -> list[WriteResult]:
        """Write ``rows`` (dicts of field → value) with as few jobs as possible; one result
        per row, in order, keyed by the row's ``key_column`` value."""
        results: list[WriteResult] = []
        for start in range(0, len(rows), MAX_ROWS_PER_JOB):
            chunk = rows[start : start + MAX_ROWS_PER_JOB]
            results.extend(self._job(sobject, operation, chunk, key_column, external_id))
        return results

    def _job(
        self,
        sobject: str,
        operation: str,
        rows: Sequence[Mapping[str, Any]],
        key_column: str,
        external_id: str | None,
    ) -> list[WriteResult]:
        columns = list(dict.fromkeys(c for row in rows for c in row))
        definition: dict[str, Any] = {
            "object": sobject,
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if external_id:
            definition["externalIdFieldName"] = external_id
        job = self._request("POST", "ingest", json.dumps(definition), "application/json").json()
        job_id = job["id"]
        self._request("PUT", f"ingest/{job_id}/batches", to_csv(columns, rows), "text/csv")
        self._request(
            "PATCH", f"ingest/{job_id}", json.dumps({"state": "UploadComplete"}), "application/json"
        )
        info = self._wait(job_id)
        if info["state"] != "JobComplete":
            message = info.get("errorMessage") or info["state"]
            raise CrmUnavailable(f"Salesforce Bulk API job {job_id} did not complete: {message}")
        outcome: dict[str, WriteResult] = {}
        ok = self._request("GET", f"ingest/{job_id}/successfulResults", None, "application/json")
        for done in csv.DictReader(io.StringIO(ok.text)):
            key = done.get(key_column, "")
            outcome[key] = WriteResult(key=key, ok=True, crm_id=done.get("sf__Id") or None)
        failed = self._request("GET", f"ingest/{job_id}/failedResults", None, "application/json")
        for refused in csv.DictReader(io.StringIO(failed.text)):
            key = refused.get(key_column, "")
            error = refused.get("sf__Error") or "unknown error"
            # Bulk API 2.0 reports "STATUS_CODE:message" in one column.
            head = error.split(":", 1)[0].strip()
            code = head if head and head.replace("_", "").isalnum() and head.isupper() else None
            retryable = code in ("UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE")
            outcome[key] = WriteResult(
                key=key, ok=False, error=error, retryable=retryable, code=code
            )
        results: list[WriteResult] = []
        for row in rows:
            key = csv_value(row.get(key_column))
            results.append(
                outcome.get(key)
                or WriteResult(key=key, ok=False, error="not processed by the job", retryable=True)
            )
        return results

    def _wait(self, job_id: str) -> dict[str, Any]:
        for attempt in range(self.max_polls):
            info: dict[str, Any] = self._request(
                "GET", f"ingest/{job_id}", None, "application/json"
            ).json()
            if info["state"] in ("JobComplete", "Failed", "Aborted"):
                return info
            self._sleep(min(self.poll_seconds * (attempt + 1), 10.0))
        raise CrmUnavailable(f"Salesforce Bulk API job {job_id} is still running; try again")
