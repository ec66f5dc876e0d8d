"""How the scheduled drain decides a burst is still on (``jobs/schedule.py`` ``fill_wait``)."""

from __future__ import annotations

from datetime import timedelta

from connector.jobs.schedule import fill_wait
from connector.runtime import Runtime
from connector.services.inbox import move_spooled, receive_event, store_event
from connector.store.models import InboxEvent
from tests.support import FrozenClock


def _handled_all(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        session.query(InboxEvent).update({"status": "done"})


def test_an_event_that_just_arrived_keeps_the_burst_on_though_the_inbox_is_empty(
    runtime: Runtime, clock: FrozenClock
) -> None:
    store_event(runtime, "stripe", "evt_1", "invoice.paid", "{}")
    _handled_all(runtime)  # the worker keeps up with the stream
    wait = fill_wait(runtime)
    with runtime.db.session() as session:
        assert wait.upstream_busy is not None
        assert wait.upstream_busy(session, clock()) is True
        later = clock() + wait.quiet + timedelta(milliseconds=1)
        assert wait.upstream_busy(session, later) is False  # quiet for batch_wait_seconds


def test_sync_once_waits_for_the_inbox_only(runtime: Runtime, clock: FrozenClock) -> None:
    store_event(runtime, "stripe", "evt_1", "invoice.paid", "{}")
    _handled_all(runtime)
    wait = fill_wait(runtime, timed=False)
    with runtime.db.session() as session:
        assert wait.upstream_busy is not None
        assert wait.upstream_busy(session, clock()) is False


def test_events_waiting_in_the_inbox_keep_the_burst_on(
    runtime: Runtime, clock: FrozenClock
) -> None:
    store_event(runtime, "stripe", "evt_1", "invoice.paid", "{}")
    wait = fill_wait(runtime, timed=False)
    with runtime.db.session() as session:
        assert wait.upstream_busy is not None
        assert wait.upstream_busy(session, clock() + timedelta(hours=1)) is True


def test_events_the_web_process_spooled_keep_the_burst_on(
    runtime: Runtime, clock: FrozenClock
) -> None:
    receive_event(runtime, "stripe", "evt_1", "invoice.paid", "{}")  # not in the inbox yet
    wait = fill_wait(runtime, timed=False)
    with runtime.db.session() as session:
        assert wait.upstream_busy is not None
        assert wait.upstream_busy(session, clock() + timedelta(hours=1)) is True
    move_spooled(runtime)
    _handled_all(runtime)
    with runtime.db.session() as session:
        assert wait.upstream_busy(session, clock() + timedelta(hours=1)) is False
