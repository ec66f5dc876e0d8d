"""What an admin does to the queues, with an audit record of who did it and what came of it.

The inbox and outbox already know how to re-queue a row (``inbox.replay_event``,
``outbox.retry_message``); this module adds what a person acting through the web needs on
top: a defined outcome for every request (a second replay of an event that waits already
changes nothing and says so), a refusal that names its reason, and one audit row per
request, refusals included, carrying the signed-in user, their role and the outcome. The
command line keeps calling the queue functions directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.runtime import Runtime
from connector.services import inbox, outbox
from connector.store import audit
from connector.store.lease import PENDING, failing
from connector.store.models import AuditEntry, InboxEvent, OutboxMessage

#: Outcomes of an action, as the API reports them and the audit log records them.
REQUEUED = "requeued"
ALREADY_QUEUED = "already_queued"
NOT_FOUND = "not_found"
REFUSED = "refused"


@dataclass(frozen=True)
class Actor:
    """Who is acting: the signed-in user (or API token) and the role they act in."""

    user: str
    role: str


@dataclass(frozen=True)
class Outcome:
    """What an action did. ``status`` is the HTTP status the web layer answers with."""

    outcome: str
    message: str
    status: int = 200
    subject: dict[str, Any] | None = None


@dataclass(frozen=True)
class Page:
    """One page of a listing, with the total so a caller knows whether more follow."""

    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int

    def as_json(self) -> dict[str, Any]:
        more = self.offset + len(self.items) < self.total
        return {
            "items": self.items,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "next_offset": self.offset + len(self.items) if more else None,
        }


def record(session: Session, actor: Actor, action: str, subject_type: str, subject_id: str,
           outcome: str, **details: Any) -> None:  # fmt: skip
    """One audit row for an admin request: who (user and role), what, and the outcome."""
    audit.record(
        session,
        actor=actor.user,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        role=actor.role,
        outcome=outcome,
        **details,
    )


def record_alone(runtime: Runtime, actor: Actor, action: str, subject_type: str,
                 subject_id: str, outcome: str, **details: Any) -> None:  # fmt: skip
    """``record`` in its own transaction: for a refusal, whose own transaction rolled back."""
    with runtime.db.session() as session:
        record(session, actor, action, subject_type, subject_id, outcome, **details)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def event_json(row: InboxEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "source": row.source,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "status": row.status,
        "attempts": row.attempts,
        "reason": inbox.first_line(row.last_error) or None,
        "last_error": row.last_error,
        "outcome": row.outcome,
        "received_at": _iso(row.received_at),
        "next_attempt_at": _iso(row.next_attempt_at),
    }


def message_json(row: OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "ordering_key": row.ordering_key,
        "status": row.status,
        "attempts": row.attempts,
        "reason": inbox.first_line(row.last_error) or None,
        "last_error": row.last_error,
        "created_at": _iso(row.created_at),
        "next_attempt_at": _iso(row.next_attempt_at),
    }


def failing_events(session: Session, *, limit: int, offset: int) -> Page:
    """Parked events and events awaiting a retry, newest first."""
    total = session.scalar(select(func.count()).select_from(InboxEvent).where(failing(InboxEvent)))
    rows = session.scalars(
        select(InboxEvent)
        .where(failing(InboxEvent))
        .order_by(InboxEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return Page([event_json(r) for r in rows], int(total or 0), limit, offset)


def failing_messages(session: Session, *, limit: int, offset: int) -> Page:
    """Parked messages and messages awaiting a retry, newest first."""
    total = session.scalar(
        select(func.count()).select_from(OutboxMessage).where(failing(OutboxMessage))
    )
    rows = session.scalars(
        select(OutboxMessage)
        .where(failing(OutboxMessage))
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return Page([message_json(r) for r in rows], int(total or 0), limit, offset)


def _waiting(row: InboxEvent | OutboxMessage) -> bool:
    """Queued and never tried since: re-queuing it again would change nothing."""
    return row.status == PENDING and row.attempts == 0


def replay_event(runtime: Runtime, actor: Actor, event_id: int) -> Outcome:
    """Re-queue an inbox event; a second replay before the worker ran is a no-op that says so."""
    action = "admin.inbox.replay"
    with runtime.db.session() as session:
        row = session.get(InboxEvent, event_id)
        if row is not None and _waiting(row):
            outcome = Outcome(
                ALREADY_QUEUED,
                f"Inbox event {event_id} is already queued; the worker processes it on its "
                "next round.",
                subject=event_json(row),
            )
            record(session, actor, action, "inbox_event", str(event_id), ALREADY_QUEUED)
            return outcome
        if row is not None:
            try:
                row = inbox.replay_event(session, event_id, actor=actor.user, now=runtime.clock())
            except inbox.NotReplayable as exc:
                refusal = Outcome(REFUSED, f"{exc}.", 409)
            else:
                record(session, actor, action, "inbox_event", str(event_id), REQUEUED,
                       event_type=row.event_type, source=row.source)  # fmt: skip
                return Outcome(
                    REQUEUED,
                    f"Inbox event {event_id} ({row.event_type}) is queued again; the worker "
                    "processes it on its next round.",
                    subject=event_json(row),
                )
        else:
            refusal = Outcome(NOT_FOUND, f"There is no inbox event with id {event_id}.", 404)
    record_alone(runtime, actor, action, "inbox_event", str(event_id), refusal.outcome,
                 reason=refusal.message)  # fmt: skip
    return refusal


def retry_message(runtime: Runtime, actor: Actor, message_id: int) -> Outcome:
    """Make an outbox message due now with a fresh attempt budget; idempotent like replay."""
    action = "admin.outbox.retry"
    with runtime.db.session() as session:
        row = session.get(OutboxMessage, message_id)
        if row is not None and _waiting(row):
            record(session, actor, action, "outbox_message", str(message_id), ALREADY_QUEUED)
            return Outcome(
                ALREADY_QUEUED,
                f"Outbox message {message_id} is already queued; the worker sends it on its "
                "next round.",
                subject=message_json(row),
            )
        if row is not None:
            try:
                row = outbox.retry_message(
                    session, message_id, actor=actor.user, now=runtime.clock()
                )
            except outbox.NotRetryable as exc:
                refusal = Outcome(REFUSED, f"{exc}.", 409)
            else:
                record(session, actor, action, "outbox_message", str(message_id), REQUEUED,
                       kind=row.kind)  # fmt: skip
                return Outcome(
                    REQUEUED,
                    f"Outbox message {message_id} ({row.kind}) is queued again with a fresh "
                    "attempt budget; later messages of its key follow it.",
                    subject=message_json(row),
                )
        else:
            refusal = Outcome(NOT_FOUND, f"There is no outbox message with id {message_id}.", 404)
    record_alone(runtime, actor, action, "outbox_message", str(message_id), refusal.outcome,
                 reason=refusal.message)  # fmt: skip
    return refusal


def audit_json(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": _iso(row.at),
        "actor": row.actor,
        "action": row.action,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "details": row.details,
    }


def audit_log(session: Session, *, limit: int, offset: int, action: str | None = None) -> Page:
    """The audit log, newest first; ``action``: only actions starting with it (``admin.``)."""
    where = [AuditEntry.action.startswith(action, autoescape=True)] if action else []
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where))
    rows = session.scalars(
        select(AuditEntry).where(*where).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    )
    return Page([audit_json(r) for r in rows], int(total or 0), limit, offset)
