"""`dealbridge events list|show|replay` against the store."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from click.testing import CliRunner, Result

from connector.cli import main
from connector.runtime import Runtime
from connector.services.inbox import receive_event
from connector.store.db import Database
from connector.store.models import AuditEntry, InboxEvent, OutboxMessage
from tests.support import make_config
from tests.support.stripe_events import raw_event

AT = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def _run(db: Database, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": db.url})


def _add(
    db: Database, event_id: str, status: str, *, error: str | None = None, attempts: int = 0
) -> int:
    with db.session() as session:
        row = InboxEvent(
            source="stripe",
            event_id=event_id,
            event_type="invoice.paid",
            payload=raw_event("invoice.paid__ach.json"),
            received_at=AT,
            next_attempt_at=AT,
            status=status,
            attempts=attempts,
            last_error=error,
        )
        session.add(row)
        session.flush()
        return row.id


def test_list_shows_events_newest_first_with_the_first_line_of_their_error(db: Database) -> None:
    _add(db, "evt_done", "done", attempts=1)
    _add(db, "evt_parked", "parked", error="CrmRejected: field missing\n  File x", attempts=8)
    result = _run(db, "events", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "ID",
        "SOURCE",
        "TYPE",
        "STATUS",
        "ATTEMPTS",
        "LAST",
        "ERROR",
        "RECEIVED",
    ]
    assert "parked" in lines[1] and "CrmRejected: field missing" in lines[1]
    assert "File x" not in result.output
    assert "done" in lines[2]


def test_list_failed_shows_only_parked_and_retrying_events(db: Database) -> None:
    _add(db, "evt_done", "done", attempts=1)
    _add(db, "evt_parked", "parked", error="boom", attempts=8)
    _add(db, "evt_retrying", "pending", error="timeout", attempts=2)
    _add(db, "evt_new", "pending")
    result = _run(db, "events", "list", "--failed")
    assert result.exit_code == 0, result.output
    body = result.output.splitlines()[1:]
    assert [line.split()[3] for line in body] == ["pending", "parked"]


def test_list_filters_by_source_and_limit(db: Database) -> None:
    for n in range(3):
        _add(db, f"evt_{n}", "done")
    assert len(_run(db, "events", "list", "--limit", "2").output.splitlines()) == 3
    assert _run(db, "events", "list", "--source", "salesforce").output.strip() == "no events"


def test_show_prints_the_event_with_its_payload(db: Database) -> None:
    row_id = _add(db, "evt_parked", "parked", error='RuntimeError: boom\n  File "h.py"')
    result = _run(db, "events", "show", str(row_id))
    assert result.exit_code == 0, result.output
    assert "event id:     evt_parked" in result.output
    assert "RuntimeError: boom" in result.output
    assert '"amount_paid": 1350000' in result.output


def test_show_of_an_unknown_id_fails(db: Database) -> None:
    result = _run(db, "events", "show", "999")
    assert result.exit_code == 1
    assert "no event with id 999" in result.output


def test_replay_requeues_the_event_and_records_an_audit_entry(db: Database) -> None:
    row_id = _add(db, "evt_parked", "parked", error="boom", attempts=8)
    result = _run(db, "events", "replay", str(row_id))
    assert result.exit_code == 0, result.output
    assert "re-queued" in result.output
    with db.session() as session:
        row = session.get(InboxEvent, row_id)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
        (entry,) = session.scalars(sa.select(AuditEntry))
        assert entry.action == "inbox.replay" and entry.actor.startswith("cli")


def _queue(db: Database, key: str, *, status: str = "pending", attempts: int = 0) -> int:
    with db.session() as session:
        row = OutboxMessage(
            kind="crm.update_deal",
            ordering_key=key,
            payload={"deal_id": key},
            status=status,
            attempts=attempts,
            last_error="CrmRejected: Stage is restricted\n  File x" if attempts else None,
            created_at=AT,
            next_attempt_at=AT,
        )
        session.add(row)
        session.flush()
        return row.id


def test_outbox_list_failed_shows_parked_and_retrying_messages(db: Database) -> None:
    _queue(db, "deal:ok", status="done", attempts=0)
    _queue(db, "deal:parked", status="parked", attempts=8)
    _queue(db, "deal:new")
    result = _run(db, "outbox", "list", "--failed")
    assert result.exit_code == 0, result.output
    body = result.output.splitlines()[1:]
    assert len(body) == 1
    assert "deal:parked" in body[0] and "CrmRejected: Stage is restricted" in body[0]


def test_outbox_list_shows_every_message_newest_first(db: Database) -> None:
    _queue(db, "deal:1", status="done")
    _queue(db, "deal:2")
    lines = _run(db, "outbox", "list").output.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["deal:2", "deal:1"]


def test_outbox_retry_requeues_a_parked_message(db: Database) -> None:
    message_id = _queue(db, "deal:parked", status="parked", attempts=8)
    result = _run(db, "outbox", "retry", str(message_id))
    assert result.exit_code == 0, result.output
    with db.session() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)


def test_outbox_retry_of_an_unknown_message_fails(db: Database) -> None:
    result = _run(db, "outbox", "retry", "404")
    assert result.exit_code == 1
    assert "no outbox message with id 404" in result.output


def test_list_counts_events_the_web_process_spooled_and_the_worker_has_not_moved(
    db: Database,
) -> None:
    """On SQLite a webhook is acknowledged into the intake spool; until the worker moves it,
    it has no inbox id, but the list says it arrived."""
    runtime = Runtime(make_config(db.url), db=db)
    _add(db, "evt_done", "done", attempts=1)
    for n in range(3):
        receive_event(runtime, "stripe", f"evt_spooled_{n}", "invoice.paid", "{}")

    listed = _run(db, "events", "list")
    failed = _run(db, "events", "list", "--failed")

    assert listed.exit_code == 0, listed.output
    assert "and 3 just received, not yet moved into the inbox by the worker" in listed.output
    assert "just received" not in failed.output
