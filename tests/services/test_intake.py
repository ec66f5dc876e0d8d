"""The web process's way in (``inbox.receive_event``) and the worker's move of what it spooled
into the inbox (``inbox.move_spooled``): every acknowledged event reaches the inbox once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from connector.jobs.schedule import process_inbox
from connector.runtime import Runtime
from connector.services import inbox
from connector.services.inbox import MOVE_CHUNK, move_spooled, receive_event
from connector.store.cursors import read_cursor
from connector.store.db import Database
from connector.store.intake_spool import MOVED_CURSOR, IntakeSpool
from connector.store.models import InboxEvent
from tests.support import FrozenClock, make_config
from tests.support.stripe_events import load_event, raw_event


def _inbox(runtime: Runtime) -> list[tuple[str, str, str]]:
    with runtime.db.session() as session:
        rows = session.scalars(sa.select(InboxEvent).order_by(InboxEvent.id))
        return [(row.source, row.event_id, row.status) for row in rows]


def _spool(runtime: Runtime) -> IntakeSpool:
    spool = runtime.db.intake_spool
    assert spool is not None
    return spool


def _receive(runtime: Runtime, event_id: str, event_type: str = "invoice.paid", **kw: Any) -> str:
    payload = json.dumps({"id": event_id})
    return receive_event(runtime, "stripe", event_id, event_type, payload, **kw)


@pytest.mark.parametrize(
    ("handled", "first", "again"),
    [(True, "stored", "duplicate"), (False, "ignored", "duplicate")],
)
def test_the_web_process_answers_as_the_inbox_would(
    runtime: Runtime, handled: bool, first: str, again: str
) -> None:
    assert _receive(runtime, "evt_1", handled=handled) == first
    assert _receive(runtime, "evt_1", handled=handled) == again
    move_spooled(runtime)
    assert _receive(runtime, "evt_1", handled=handled) == again  # now from the inbox


def test_on_sqlite_an_event_waits_in_the_spool_until_the_worker_moves_it(
    runtime: Runtime, clock: FrozenClock
) -> None:
    _receive(runtime, "evt_1")
    _receive(runtime, "plan_1", "plan.created", handled=False)
    assert _inbox(runtime) == []
    assert move_spooled(runtime) == 2
    assert _inbox(runtime) == [("stripe", "evt_1", "pending"), ("stripe", "plan_1", "ignored")]
    with runtime.db.session() as session:
        (received_at,) = session.scalars(
            sa.select(InboxEvent.received_at).where(InboxEvent.event_id == "evt_1")
        )
    assert received_at.replace(tzinfo=None) == clock().replace(tzinfo=None)


def test_a_move_moves_each_event_once_and_remembers_where_it_stopped(runtime: Runtime) -> None:
    for n in range(MOVE_CHUNK + 5):
        _receive(runtime, f"evt_{n:04d}")
    assert move_spooled(runtime) == MOVE_CHUNK + 5  # two store transactions
    assert move_spooled(runtime) == 0
    _receive(runtime, "evt_late")
    assert move_spooled(runtime) == 1
    ids = [event_id for _, event_id, _ in _inbox(runtime)]
    assert ids == [f"evt_{n:04d}" for n in range(MOVE_CHUNK + 5)] + ["evt_late"]
    with runtime.db.session() as session:
        assert read_cursor(session, MOVED_CURSOR) == str(_spool(runtime).newest_id())


def test_an_event_spooled_again_while_its_first_copy_was_moved_is_stored_once(
    runtime: Runtime, clock: FrozenClock
) -> None:
    _receive(runtime, "evt_1")
    move_spooled(runtime)
    # A redelivery that passed the inbox check just before the move committed, and found
    # the spool's copy already deleted: it is spooled a second time.
    _spool(runtime).put(
        "stripe", "evt_1", "invoice.paid", "{}", handled=True, received_at=clock(),
        moved_through=_spool(runtime).newest_id(),
    )  # fmt: skip
    assert move_spooled(runtime) == 1
    assert _inbox(runtime) == [("stripe", "evt_1", "pending")]


def test_a_move_that_fails_moves_nothing_and_the_next_one_moves_it_all(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        _receive(runtime, f"evt_{n}")

    def crash(*_args: Any) -> None:
        raise RuntimeError("worker killed mid-move")

    monkeypatch.setattr(inbox, "save_cursor", crash)
    with pytest.raises(RuntimeError, match="mid-move"):
        move_spooled(runtime)
    assert _inbox(runtime) == []
    monkeypatch.undo()
    assert move_spooled(runtime) == 3
    assert len(_inbox(runtime)) == 3


def test_the_web_process_deletes_what_the_worker_moved(runtime: Runtime) -> None:
    for n in range(3):
        _receive(runtime, f"evt_{n}")
    move_spooled(runtime)
    _receive(runtime, "evt_next")
    assert [e.event_id for e in _spool(runtime).after(0, 10)] == ["evt_next"]


def test_the_worker_handles_what_the_web_process_spooled(runtime: Runtime) -> None:
    name = "invoice.paid__ach.json"  # of a customer dealbridge has not linked
    receive_event(runtime, "stripe", load_event(name)["id"], "invoice.paid", raw_event(name))
    assert process_inbox(runtime) == 1
    ((_, _, status),) = _inbox(runtime)
    assert status == "done"


def test_without_a_spool_the_event_goes_straight_to_the_inbox(
    postgres_db: Database, clock: FrozenClock
) -> None:
    store_runtime = Runtime(make_config(postgres_db.url), db=postgres_db, clock=clock)
    assert postgres_db.intake_spool is None
    assert _receive(store_runtime, "evt_1") == "stored"
    assert _receive(store_runtime, "evt_1") == "duplicate"
    assert _receive(store_runtime, "plan_1", "plan.created", handled=False) == "ignored"
    assert _inbox(store_runtime) == [
        ("stripe", "evt_1", "pending"),
        ("stripe", "plan_1", "ignored"),
    ]
    assert move_spooled(store_runtime) == 0
