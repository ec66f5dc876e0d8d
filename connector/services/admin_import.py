"""An import from Stripe started by an admin: queued for the worker, never run in a request.

An import reads every Stripe customer, product, price and invoice, which takes minutes to
hours, so the request only stores an outbox message (kind ``admin.import_stripe``) in the
same transaction as its audit row and answers 202. The worker's ``run_imports`` job (its
own thread, so CRM writes keep flowing meanwhile) sends it by calling
``importer.import_stripe``, the import's public function, unchanged. Its progress (objects
per phase) and, at the end, its report are kept in a cursor named after the run, so the
admin page and ``GET /api/admin/imports/<id>`` can show them.

One import at a time: asking again while one waits or runs returns that one
(``already_queued``). A run the CRM or Stripe interrupts fails like any outbox message:
retried with backoff, and since the import resumes from its cursors, a retry continues
where it stopped; once parked, an admin may retry it from the outbox list.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.runtime import Runtime
from connector.services import importer, outbox
from connector.services.admin import Actor, record
from connector.services.import_run import PHASES, ImportOptions, ImportReport, cursor_name
from connector.store import audit
from connector.store.cursors import forget_cursor, read_cursor, save_cursor
from connector.store.lease import PENDING, PROCESSING
from connector.store.locks import lock
from connector.store.models import OutboxMessage

IMPORT_STRIPE = "admin.import_stripe"
PROGRESS_PREFIX = "admin.import."
WORKER = "dealbridge worker"


class BadImportRequest(ValueError):
    """Options an import cannot run with; the message says which and why."""


@dataclass(frozen=True)
class Queued:
    message_id: int
    created: bool  # False: an import already waiting or running was returned instead


def parse_options(body: dict[str, Any]) -> dict[str, Any]:
    """The import's options from a request, checked: phases, dry_run, limit and the flags."""
    known = {"phases", "dry_run", "limit", "create_missing_accounts", "announce_invoices",
             "restart"}  # fmt: skip
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadImportRequest(f"Unknown import option(s): {', '.join(unknown)}.")
    phases = body.get("phases", list(PHASES))
    if isinstance(phases, str):
        phases = [phases]
    if phases == []:
        raise BadImportRequest("Choose at least one phase: customers, products or invoices.")
    if (
        not isinstance(phases, list)
        or any(p not in PHASES for p in phases)
        or len(set(phases)) != len(phases)
    ):
        raise BadImportRequest(f"phases must be a list of distinct phases from {list(PHASES)}.")
    limit = body.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BadImportRequest("limit must be a whole number from 1, or absent.")
    options: dict[str, Any] = {"phases": [p for p in PHASES if p in phases], "limit": limit}
    for flag in ("dry_run", "announce_invoices", "restart"):
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise BadImportRequest(f"{flag} must be true or false.")
        options[flag] = value
    create = body.get("create_missing_accounts")
    if create is not None and not isinstance(create, bool):
        raise BadImportRequest("create_missing_accounts must be true, false or absent.")
    options["create_missing_accounts"] = create
    return options


def _active(session: Session) -> OutboxMessage | None:
    return session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.kind == IMPORT_STRIPE, OutboxMessage.status.in_((PENDING, PROCESSING)))
        .order_by(OutboxMessage.id)
        .limit(1)
    ).first()


def queue_import(runtime: Runtime, actor: Actor, options: dict[str, Any]) -> Queued:
    """Queue an import for the worker (or return the one waiting or running), audited."""
    with runtime.db.session() as session:
        lock(session, IMPORT_STRIPE)  # two admins asking at once still start one import
        waiting = _active(session)
        if waiting is not None:
            record(session, actor, "admin.import.start", "import", str(waiting.id),
                   "already_queued", options=options)  # fmt: skip
            return Queued(waiting.id, created=False)
        run_id = uuid.uuid4().hex
        if options.get("restart") and not options.get("dry_run"):
            # Forget where an interrupted import stopped, as ``import stripe --restart`` does.
            for phase in (*PHASES, "prices"):
                forget_cursor(session, cursor_name(phase))
        message = outbox.enqueue(
            session,
            IMPORT_STRIPE,
            f"{IMPORT_STRIPE}:{run_id}",
            {"run_id": run_id, "options": options, "requested_by": actor.user,
             "role": actor.role},
            now=runtime.clock(),
        )  # fmt: skip
        assert message is not None  # no dedupe key: always queued
        save_cursor(session, PROGRESS_PREFIX + run_id, json.dumps({"state": "queued"}))
        record(session, actor, "admin.import.start", "import", str(message.id), "queued",
               options=options)  # fmt: skip
        return Queued(message.id, created=True)


#: Lines of each list a report keeps (the totals count them all): a dry run over a large
#: account plans thousands of lines, which the page need not carry.
REPORT_LINES = 100


def report_json(report: ImportReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "linked": report.linked_total,
        "linked_by": dict(report.linked),
        "already_linked": report.already_linked,
        "created_accounts": len(report.created_accounts),
        "unmatched": [
            {"customer_id": u.customer_id, "name": u.name, "email": u.email, "reason": u.reason}
            for u in report.unmatched[:REPORT_LINES]
        ],
        "unmatched_total": len(report.unmatched),
        "products": report.products,
        "prices": report.prices,
        "invoices": report.invoices,
        "invoice_customers": report.invoice_customers,
        "failures": [{"key": k, "error": e} for k, e in report.failures[:REPORT_LINES]],
        "failures_total": len(report.failures),
        "planned": report.planned[:REPORT_LINES],
        "planned_total": len(report.planned),
        "finished_phases": list(report.finished),
    }


def _save_progress(runtime: Runtime, run_id: str, state: dict[str, Any]) -> None:
    with runtime.db.session() as session:
        save_cursor(session, PROGRESS_PREFIX + run_id, json.dumps(state), now=runtime.clock())


def run_queued_import(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox sender: run the import the message asks for, keeping its progress.

    A failure propagates to the outbox (retried, then parked); the import resumes from its
    own cursors on the next attempt, and the counts shown start again from that attempt.
    """
    run_id = str(payload["run_id"])
    raw = payload.get("options") or {}
    phases: Sequence[str] = tuple(raw.get("phases") or PHASES)
    options = ImportOptions(
        dry_run=bool(raw.get("dry_run")),
        phases=phases,
        create_missing_accounts=raw.get("create_missing_accounts"),
        limit=raw.get("limit"),
        announce_invoices=bool(raw.get("announce_invoices")),
    )
    counts: dict[str, int] = {}

    def progress(phase: str, count: int) -> None:
        counts[phase] = counts.get(phase, 0) + count
        _save_progress(runtime, run_id, {"state": "running", "counts": counts})

    _save_progress(runtime, run_id, {"state": "running", "counts": counts})
    try:
        report = importer.import_stripe(runtime, options, progress=progress)
    except Exception as exc:
        _save_progress(runtime, run_id, {"state": "stopped", "counts": counts,
                                          "error": type(exc).__name__})  # fmt: skip
        raise
    summary = report_json(report)
    with runtime.db.session() as session:
        save_cursor(session, PROGRESS_PREFIX + run_id,
                    json.dumps({"state": "finished", "counts": counts, "report": summary}),
                    now=runtime.clock())  # fmt: skip
        audit.record(
            session,
            actor=WORKER,
            action="admin.import.finished",
            subject_type="import",
            subject_id=run_id,
            requested_by=payload.get("requested_by"),
            outcome="dry_run" if options.dry_run else "finished",
            linked=summary["linked"],
            products=summary["products"],
            prices=summary["prices"],
            invoices=summary["invoices"],
            unmatched=summary["unmatched_total"],
            failures=summary["failures_total"],
        )


def import_json(session: Session, row: OutboxMessage) -> dict[str, Any]:
    """An import's request, queue status and progress (its report once finished)."""
    payload = row.payload or {}
    progress_text = read_cursor(session, PROGRESS_PREFIX + str(payload.get("run_id")))
    try:
        progress = json.loads(progress_text) if progress_text else {}
    except ValueError:
        progress = {}
    return {
        "id": row.id,
        "status": row.status,
        "state": progress.get("state", "queued" if row.status == PENDING else row.status),
        "attempts": row.attempts,
        "reason": row.last_error.splitlines()[0] if row.last_error else None,
        "requested_by": payload.get("requested_by"),
        "options": payload.get("options", {}),
        "counts": progress.get("counts", {}),
        "report": progress.get("report"),
        "queued_at": row.created_at.isoformat(),
        "done_at": row.done_at.isoformat() if row.done_at else None,
    }


def get_import(session: Session, message_id: int) -> dict[str, Any] | None:
    row = session.get(OutboxMessage, message_id)
    if row is None or row.kind != IMPORT_STRIPE:
        return None
    return import_json(session, row)


def list_imports(session: Session, *, limit: int = 10) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.kind == IMPORT_STRIPE)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return [import_json(session, row) for row in rows]
