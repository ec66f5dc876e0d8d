"""The CRM poll: every change it reads is queued once per version of the record."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from connector.crm.base import Changes
from connector.runtime import Runtime
from connector.services.crm_changes import ACCOUNT_CHANGED, DEAL_CHANGED
from connector.services.crm_intake import poll_crm
from connector.store.models import InboxEvent
from tests.support import make_config


class PolledCrm:
    """Answers the poll's two questions from scripted batches, recording each cursor asked."""

    def __init__(self) -> None:
        self.deal_batches: list[Changes] = []
        self.account_batches: list[Changes] = []
        self.asked: list[tuple[str, str | None]] = []

    def changed_deals(self, cursor: str | None) -> Changes:
        self.asked.append(("deals", cursor))
        return self.deal_batches.pop(0) if self.deal_batches else Changes([], cursor)

    def changed_unclosed_deals(self, cursor: str | None) -> Changes:
        return Changes([], cursor)  # nothing lost or reopened in these scenarios

    def changed_contact_accounts(self, cursor: str | None) -> Changes:
        return Changes([], cursor)  # no contact edited in these scenarios

    def changed_accounts(self, cursor: str | None) -> Changes:
        self.asked.append(("accounts", cursor))
        return self.account_batches.pop(0) if self.account_batches else Changes([], cursor)


def poll_runtime(runtime: Runtime, crm: PolledCrm) -> Runtime:
    crm_any: Any = crm
    return Runtime(make_config(runtime.db.url), db=runtime.db, clock=runtime.clock, crm=crm_any)


def queued(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.db.session() as session:
        rows = session.scalars(select(InboxEvent).order_by(InboxEvent.id)).all()
        return [(row.event_type, row.event_id) for row in rows]


def test_each_changed_deal_and_account_is_queued(runtime: Runtime) -> None:
    crm = PolledCrm()
    crm.deal_batches = [Changes(["006A"], "2026-11-21T09:00:00Z", {"006A": "v1"})]
    crm.account_batches = [Changes(["001A"], "2026-11-21T09:00:00Z", {"001A": "v7"})]
    assert poll_crm(poll_runtime(runtime, crm)) == 2
    assert queued(runtime) == [
        (DEAL_CHANGED, "poll:deal:006A:v1"),
        (ACCOUNT_CHANGED, "poll:account:001A:v7"),
    ]


def test_a_record_seen_again_at_the_same_version_is_not_queued_twice(runtime: Runtime) -> None:
    crm = PolledCrm()
    same = Changes(["006A"], "2026-11-21T09:00:00Z", {"006A": "v1"})
    crm.deal_batches = [same, same]
    rt = poll_runtime(runtime, crm)
    poll_crm(rt)
    assert poll_crm(rt) == 0
    assert len(queued(runtime)) == 1


def test_a_second_change_in_the_cursors_second_is_queued(runtime: Runtime) -> None:
    crm = PolledCrm()
    crm.deal_batches = [
        Changes(["006A"], "2026-11-21T09:00:00Z", {"006A": "2026-11-21T09:00:00.200+00:00"}),
        Changes(["006A"], "2026-11-21T09:00:00Z", {"006A": "2026-11-21T09:00:00.700+00:00"}),
    ]
    rt = poll_runtime(runtime, crm)
    poll_crm(rt)
    assert poll_crm(rt) == 1
    assert [event_id for _, event_id in queued(runtime)] == [
        "poll:deal:006A:2026-11-21T09:00:00.200+00:00",
        "poll:deal:006A:2026-11-21T09:00:00.700+00:00",
    ]


def test_without_versions_the_batch_cursor_names_the_event(runtime: Runtime) -> None:
    crm = PolledCrm()
    crm.account_batches = [Changes(["001A"], "delta:token-2")]
    poll_crm(poll_runtime(runtime, crm))
    assert queued(runtime) == [(ACCOUNT_CHANGED, "poll:account:001A:delta:token-2")]


def test_the_next_poll_asks_from_the_stored_cursors(runtime: Runtime) -> None:
    crm = PolledCrm()
    crm.deal_batches = [Changes(["006A"], "deals-1")]
    crm.account_batches = [Changes([], "accounts-1")]
    rt = poll_runtime(runtime, crm)
    poll_crm(rt)
    poll_crm(rt)
    assert crm.asked[2:] == [("deals", "deals-1"), ("accounts", "accounts-1")]
