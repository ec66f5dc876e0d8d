"""The credit service on a real store (SQLite and PostgreSQL), with the CRM and Stripe faked:
who set a hold, the CRM as it will be, non-payment holds and releases, the hold policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connector.billing.gateway import PAUSE_MARKER
from connector.crm.base import CrmAccount, CrmNotFound, Money, WriteResult
from connector.jobs.dispatch import OUTBOX_SENDERS
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.services import credit, crm_outbound, outbox
from connector.services.crm_changes import ACCOUNT_CHANGED
from connector.store.db import Database
from connector.store.models import (
    AccountCredit,
    AuditEntry,
    CustomerLink,
    InboxEvent,
    InvoiceMirror,
    OutboxMessage,
    Plan,
)
from tests.support import FrozenClock, make_config

ACCOUNT = "001ACME"
CUSTOMER = "cus_acme"


class FakeCrm:
    batch_size = 200

    def __init__(self) -> None:
        self.account = CrmAccount(
            id=ACCOUNT,
            name="Acme",
            address=None,
            credit_hold=False,
            credit_limit=None,
            credit_hold_source=None,
            stripe_customer_id=CUSTOMER,
        )
        self.hold_writes: list[bool] = []
        #: The ids of each ``get_accounts`` call.
        self.batch_reads: list[list[str]] = []

    def get_account(self, account_id: str) -> CrmAccount:
        if account_id != ACCOUNT:
            raise CrmNotFound(f"no account {account_id}")
        return self.account

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, CrmAccount]:
        self.batch_reads.append(list(account_ids))
        return {i: self.account for i in account_ids if i == ACCOUNT}

    def hold(self, on: bool, source: str | None = "person") -> None:
        self.account = replace(
            self.account, credit_hold=on, credit_hold_source=source if on else None
        )

    def update_accounts(self, updates: list[tuple[str, dict[str, Any]]]) -> list[WriteResult]:
        """Applies the hold fields it is sent, as the CRM would, and records each hold write."""
        results = []
        for account_id, update in updates:
            assert account_id == ACCOUNT
            if "credit_hold" in update:
                self.hold_writes.append(bool(update["credit_hold"]))
                self.account = replace(
                    self.account,
                    credit_hold=bool(update["credit_hold"]),
                    credit_hold_source=update.get("credit_hold_source"),
                )
            results.append(WriteResult(key=account_id, ok=True, crm_id=account_id))
        return results


@dataclass
class FakeSubscription:
    id: str
    pause_collection: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class FakeStripe:
    def __init__(self) -> None:
        self.subscriptions = {"sub_1": FakeSubscription("sub_1")}
        self.keys: list[str] = []

    def iter_subscriptions(self, customer_id: str) -> list[FakeSubscription]:
        assert customer_id == CUSTOMER
        return list(self.subscriptions.values())

    def pause_collection(
        self, subscription_id: str, behavior: str, marker: str, idempotency_key: str
    ) -> None:
        sub = self.subscriptions[subscription_id]
        sub.pause_collection = {"behavior": behavior}
        sub.metadata[PAUSE_MARKER] = marker
        self.keys.append(idempotency_key)

    def resume_collection(self, subscription_id: str, idempotency_key: str) -> None:
        sub = self.subscriptions[subscription_id]
        sub.pause_collection = None
        sub.metadata.pop(PAUSE_MARKER, None)
        self.keys.append(idempotency_key)


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


@pytest.fixture
def stripe_fake() -> FakeStripe:
    return FakeStripe()


def _runtime(
    db: Database, clock: FrozenClock, crm: FakeCrm, stripe_fake: FakeStripe, **credit_cfg: Any
) -> Runtime:
    config = make_config(
        db.url,
        {
            "credit": credit_cfg,
            "outbound": {"subscribers": [{"name": "prov", "url": "https://prov.example/h"}]},
        },
    )
    config = replace(
        config, secrets=replace(config.secrets, subscriber_secrets={"prov": Secret("s")})
    )
    runtime = Runtime(config, db=db, clock=clock, crm=crm, stripe=stripe_fake)  # type: ignore[arg-type]
    with runtime.db.session() as session:
        session.add(
            CustomerLink(crm_account_id=ACCOUNT, stripe_customer_id=CUSTOMER, source="found")
        )
    return runtime


@pytest.fixture
def runtime(db: Database, clock: FrozenClock, crm: FakeCrm, stripe_fake: FakeStripe) -> Runtime:
    return _runtime(db, clock, crm, stripe_fake)


@pytest.fixture
def dunning(db: Database, clock: FrozenClock, crm: FakeCrm, stripe_fake: FakeStripe) -> Runtime:
    return _runtime(db, clock, crm, stripe_fake, non_payment={"hold_when_overdue_days": 30})


@pytest.fixture
def pausing(db: Database, clock: FrozenClock, crm: FakeCrm, stripe_fake: FakeStripe) -> Runtime:
    return _runtime(db, clock, crm, stripe_fake, hold_policy="pause_void")


def _row(runtime: Runtime) -> AccountCredit:
    with runtime.db.session() as session:
        row = session.get(AccountCredit, ACCOUNT)
        assert row is not None
        session.expunge(row)
        return row


def _account_writes(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.db.session() as session:
        return [
            m.payload["update"]
            for m in session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.kind.in_(
                        (crm_outbound.UPDATE_ACCOUNT, crm_outbound.SET_CREDIT_HOLD)
                    )
                )
                .order_by(OutboxMessage.id)
            )
        ]


def _events(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.db.session() as session:
        return [
            m.payload["event"]
            for m in session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "subscriber.deliver")
                .order_by(OutboxMessage.id)
            )
        ]


def _deliver_all(runtime: Runtime) -> None:
    """The CRM writes landed (what the outbox worker would do)."""
    with runtime.db.session() as session:
        for message in session.scalars(select(OutboxMessage)):
            message.status = "done"


def _invoice(runtime: Runtime, invoice_id: str, *, due: datetime, status: str = "open") -> None:
    with runtime.db.session() as session:
        session.add(
            InvoiceMirror(
                id=invoice_id,
                stripe_customer_id=CUSTOMER,
                crm_account_id=ACCOUNT,
                status=status,
                currency="usd",
                amount_due=10_000,
                amount_paid=0 if status == "open" else 10_000,
                amount_remaining=10_000 if status == "open" else 0,
                total_excluding_tax=10_000,
                attempt_count=0,
                created=due - timedelta(days=30),
                due_date=due,
            )
        )


def _pay(runtime: Runtime, invoice_id: str) -> None:
    with runtime.db.session() as session:
        mirror = session.get(InvoiceMirror, invoice_id)
        assert mirror is not None
        mirror.status, mirror.amount_remaining = "paid", 0


# --------------------------------------------------------------------------- who set the hold


def test_a_hold_that_starts_without_dealbridge_is_a_persons(runtime: Runtime, crm: FakeCrm) -> None:
    crm.hold(True, source="dealbridge")  # the CRM field says so, but we never set it
    settled = credit.settle(runtime, ACCOUNT)
    assert settled.transition == "held"
    assert (_row(runtime).hold_source, _row(runtime).held_by_dealbridge) == ("person", False)


def test_a_hold_dealbridge_set_stays_dealbridges_while_it_stays_on(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_1", due=clock() - timedelta(days=31))
    credit.settle(dunning, ACCOUNT, non_payment=True)
    _deliver_all(dunning)
    crm.hold(True, source="dealbridge")
    credit.settle(dunning, ACCOUNT)
    assert _row(dunning).held_by_dealbridge is True


def test_a_hold_a_person_turns_off_and_on_again_is_theirs(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_1", due=clock() - timedelta(days=31))
    credit.settle(dunning, ACCOUNT, non_payment=True)
    _deliver_all(dunning)
    crm.hold(False)
    credit.settle(dunning, ACCOUNT)
    crm.hold(True, source="dealbridge")  # the source field was never changed by the person
    credit.settle(dunning, ACCOUNT)
    assert (_row(dunning).hold_source, _row(dunning).held_by_dealbridge) == ("person", False)


def test_an_invoice_whose_hold_a_person_lifted_does_not_hold_again(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_1", due=clock() - timedelta(days=31))
    credit.settle(dunning, ACCOUNT, non_payment=True)
    _deliver_all(dunning)
    crm.hold(False)
    settled = credit.settle(dunning, ACCOUNT, non_payment=True)
    assert settled.on_hold is False
    assert _row(dunning).excused_invoices == ["in_1"]


# --------------------------------------------------------------------------- the CRM as it will be


@pytest.mark.postgresql(reason="reads the pending outbox rows under a row lock")
def test_a_queued_hold_write_wins_over_the_crms_stale_value(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_1", due=clock() - timedelta(days=31))
    credit.settle(dunning, ACCOUNT, non_payment=True)  # hold queued, not yet in the CRM
    assert credit.as_it_will_be(dunning, crm.account).credit_hold is True
    settled = credit.settle(dunning, ACCOUNT)  # an account change read before the write landed
    assert settled.on_hold is True and settled.hold_source == "dealbridge"


def test_without_queued_writes_the_crm_is_taken_as_it_is(runtime: Runtime, crm: FakeCrm) -> None:
    assert credit.as_it_will_be(runtime, crm.account) == crm.account


# --------------------------------------------------------------------------- non-payment


def test_an_overdue_invoice_holds_the_account_with_a_note_naming_it(
    dunning: Runtime, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_late", due=clock() - timedelta(days=31))
    settled = credit.settle(dunning, ACCOUNT, non_payment=True)
    assert settled.hold_change is not None and settled.hold_change.action == "hold"
    hold_write = _account_writes(dunning)[0]
    assert hold_write["credit_hold"] is True
    assert hold_write["credit_hold_source"] == "dealbridge"
    assert "in_late" in hold_write["credit_note"]
    assert _row(dunning).hold_invoice_id == "in_late"


def test_paying_releases_the_hold_dealbridge_set(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_late", due=clock() - timedelta(days=31))
    credit.settle(dunning, ACCOUNT, non_payment=True)
    _deliver_all(dunning)
    crm.hold(True, source="dealbridge")
    _pay(dunning, "in_late")
    settled = credit.settle(dunning, ACCOUNT, non_payment=True)
    assert settled.hold_change is not None and settled.hold_change.action == "release"
    assert _account_writes(dunning)[-2]["credit_hold"] is False


def test_paying_never_releases_a_persons_hold(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    crm.hold(True)
    _invoice(dunning, "in_paid", due=clock() - timedelta(days=31), status="paid")
    settled = credit.settle(dunning, ACCOUNT, non_payment=True)
    assert settled.on_hold is True and settled.hold_change is None


def _send_crm_writes(runtime: Runtime) -> None:
    """The worker sends the queued account writes to the CRM (subscribers stay queued)."""
    registry = OUTBOX_SENDERS
    kinds = (crm_outbound.SET_CREDIT_HOLD, crm_outbound.UPDATE_ACCOUNT)
    outbox.drain_outbox(runtime, {kind: registry[kind] for kind in kinds})


def _skips(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.db.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "credit.write_skipped")
        )
        return [dict(e.details) for e in entries]


def _queued_account_events(runtime: Runtime) -> list[str]:
    with runtime.db.session() as session:
        return list(
            session.scalars(select(InboxEvent.event_type).where(InboxEvent.source == "crm"))
        )


def _hold_for_a_late_invoice(runtime: Runtime, clock: FrozenClock) -> None:
    """dealbridge decides to hold the account for an invoice 31 days overdue."""
    _invoice(runtime, "in_late", due=clock() - timedelta(days=31))
    credit.settle(runtime, ACCOUNT, non_payment=True)


def test_dealbridges_hold_is_written_when_the_account_is_not_on_hold(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _hold_for_a_late_invoice(dunning, clock)
    _send_crm_writes(dunning)
    assert (crm.account.credit_hold, crm.account.credit_hold_source) == (True, "dealbridge")
    assert _skips(dunning) == []


@pytest.mark.postgresql(
    reason="the account's credit row is read under FOR UPDATE and the account lock"
)
def test_a_hold_is_not_written_over_a_persons_hold_set_meanwhile(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _hold_for_a_late_invoice(dunning, clock)
    crm.hold(True, source="person")  # finance acts before the worker sends the hold
    _send_crm_writes(dunning)
    assert crm.hold_writes == []
    assert crm.account.credit_hold_source == "person"
    assert [skip["wanted"] for skip in _skips(dunning)] == ["hold"]
    assert _queued_account_events(dunning) == [ACCOUNT_CHANGED]


def test_the_account_is_settled_again_from_the_crm_after_a_skipped_hold(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _hold_for_a_late_invoice(dunning, clock)
    crm.hold(True, source=None)
    _send_crm_writes(dunning)
    credit.settle(dunning, ACCOUNT)  # what the queued account.changed event does
    row = _row(dunning)
    assert (row.on_hold, row.hold_source, row.held_by_dealbridge) == (True, "person", False)


def test_a_release_waiting_behind_a_skipped_hold_is_dropped(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _hold_for_a_late_invoice(dunning, clock)
    crm.hold(True, source=None)  # a person's hold that does not say whose it is
    _pay(dunning, "in_late")
    released = credit.settle(dunning, ACCOUNT, non_payment=True)
    assert released.hold_change is not None and released.hold_change.action == "release"
    _send_crm_writes(dunning)
    assert crm.hold_writes == []
    assert crm.account.credit_hold is True


def test_a_release_is_not_written_once_a_person_marked_the_hold_theirs(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _hold_for_a_late_invoice(dunning, clock)
    _send_crm_writes(dunning)
    _pay(dunning, "in_late")
    credit.settle(dunning, ACCOUNT, non_payment=True)
    crm.hold(True, source="person")  # finance claims the hold before the release is sent
    _send_crm_writes(dunning)
    assert crm.hold_writes == [True]
    assert (crm.account.credit_hold, crm.account.credit_hold_source) == (True, "person")
    assert [skip["wanted"] for skip in _skips(dunning)] == ["release"]


def test_a_release_of_dealbridges_hold_is_written(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _hold_for_a_late_invoice(dunning, clock)
    _send_crm_writes(dunning)
    _pay(dunning, "in_late")
    credit.settle(dunning, ACCOUNT, non_payment=True)
    _send_crm_writes(dunning)
    assert crm.hold_writes == [True, False]
    assert crm.account.credit_hold is False


def test_the_credit_check_reports_nothing_when_nothing_changed(
    dunning: Runtime, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_late", due=clock() - timedelta(days=31))
    assert credit.check_credit(dunning) == 1
    assert credit.check_credit(dunning) == 0


def test_an_invoice_becomes_overdue_by_the_passage_of_time(
    dunning: Runtime, clock: FrozenClock
) -> None:
    _invoice(dunning, "in_1", due=clock() - timedelta(days=30))
    assert credit.check_credit(dunning) == 0  # exactly 30 days: still fine
    clock.advance(days=1)
    assert credit.check_credit(dunning) == 1


# --------------------------------------------------------------------------- state and events


@pytest.mark.postgresql(
    reason="state changes are serialised by the account lock (advisory lock on PostgreSQL)"
)
def test_each_change_of_state_is_written_to_the_account_and_emitted_once(
    runtime: Runtime, crm: FakeCrm
) -> None:
    crm.hold(True)
    credit.settle(runtime, ACCOUNT)
    credit.settle(runtime, ACCOUNT)
    crm.hold(False)
    credit.settle(runtime, ACCOUNT)
    assert [e["data"]["state"] for e in _events(runtime)] == ["on_hold", "ok"]
    assert [w["credit_state"] for w in _account_writes(runtime) if "credit_state" in w] == [
        "on_hold",
        "ok",
    ]


def test_the_event_carries_the_hold_and_the_limit(runtime: Runtime, crm: FakeCrm) -> None:
    crm.account = replace(crm.account, credit_limit=Money(100_000, "usd"))
    crm.hold(True)
    credit.settle(runtime, ACCOUNT)
    event = _events(runtime)[0]
    assert event["type"] == "account.credit_state_changed"
    assert event["data"]["on_hold"] is True
    assert event["data"]["hold_source"] == "person"
    assert (event["data"]["credit_limit"], event["data"]["currency"]) == (100_000, "usd")


# --------------------------------------------------------------------------- hold policy


def test_keep_running_pauses_nothing(
    runtime: Runtime, crm: FakeCrm, stripe_fake: FakeStripe
) -> None:
    crm.hold(True)
    credit.settle(runtime, ACCOUNT)
    assert stripe_fake.subscriptions["sub_1"].pause_collection is None


def test_a_hold_pauses_each_subscription_once_and_records_it(
    pausing: Runtime, crm: FakeCrm, stripe_fake: FakeStripe
) -> None:
    crm.hold(True)
    credit.settle(pausing, ACCOUNT)
    credit.settle(pausing, ACCOUNT)
    assert stripe_fake.subscriptions["sub_1"].pause_collection == {"behavior": "void"}
    assert stripe_fake.keys == [f"dealbridge:credit:{ACCOUNT}:1:pause:sub_1"]
    assert _row(pausing).paused_subscriptions == {"sub_1": {"behavior": "void", "epoch": 1}}


def test_the_release_resumes_only_what_dealbridge_paused(
    pausing: Runtime, crm: FakeCrm, stripe_fake: FakeStripe
) -> None:
    stripe_fake.subscriptions["sub_2"] = FakeSubscription(
        "sub_2", pause_collection={"behavior": "keep_as_draft"}
    )
    crm.hold(True)
    credit.settle(pausing, ACCOUNT)
    crm.hold(False)
    credit.settle(pausing, ACCOUNT)
    assert stripe_fake.subscriptions["sub_1"].pause_collection is None
    assert stripe_fake.subscriptions["sub_2"].pause_collection == {"behavior": "keep_as_draft"}
    assert _row(pausing).paused_subscriptions == {}


def test_a_pause_made_before_a_crash_is_recognised_by_its_tag(
    pausing: Runtime, crm: FakeCrm, stripe_fake: FakeStripe
) -> None:
    crm.hold(True)
    credit.settle(pausing, ACCOUNT)
    with pausing.db.session() as session:  # the record of the pause was lost
        row = session.get(AccountCredit, ACCOUNT)
        assert row is not None
        row.paused_subscriptions = {}
    credit.settle(pausing, ACCOUNT)
    assert list(_row(pausing).paused_subscriptions) == ["sub_1"]
    assert len(stripe_fake.keys) == 1  # recognised, not paused a second time


def test_a_new_hold_uses_new_idempotency_keys(
    pausing: Runtime, crm: FakeCrm, stripe_fake: FakeStripe
) -> None:
    for on in (True, False, True):
        crm.hold(on)
        credit.settle(pausing, ACCOUNT)
    assert stripe_fake.keys == [
        f"dealbridge:credit:{ACCOUNT}:1:pause:sub_1",
        f"dealbridge:credit:{ACCOUNT}:1:resume:sub_1",
        f"dealbridge:credit:{ACCOUNT}:2:pause:sub_1",
    ]


def test_a_parked_hold_write_is_not_taken_for_a_person_lifting_the_hold(
    dunning: Runtime, crm: FakeCrm, clock: FrozenClock
) -> None:
    _hold_for_a_late_invoice(dunning, clock)
    with dunning.db.session() as session:  # the CRM refused the write for good
        for message in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == crm_outbound.SET_CREDIT_HOLD)
        ):
            message.status = "parked"
    settled = credit.settle(dunning, ACCOUNT, non_payment=True)
    assert settled.transition is None
    row = _row(dunning)
    assert (row.on_hold, row.held_by_dealbridge, row.excused_invoices) == (True, True, [])


# --------------------------------------------------------------------------- settling a batch


def test_a_batch_of_settlements_reads_its_accounts_once_and_each_settles_on_its_own(
    dunning: Runtime, crm: FakeCrm
) -> None:
    results = credit.settle_after_invoices(
        dunning, [{"account_id": ACCOUNT}, {"account_id": "001GONE"}]
    )

    assert crm.batch_reads == [[ACCOUNT, "001GONE"]]
    assert [(r.ok, r.retryable) for r in results] == [(True, True), (False, False)]
    assert "001GONE" in (results[1].error or "")
    assert _row(dunning).state == "ok"


def test_without_a_policy_or_a_hold_of_ours_settling_reads_nothing(
    runtime: Runtime, crm: FakeCrm
) -> None:
    results = credit.settle_after_invoices(runtime, [{"account_id": ACCOUNT}])

    assert [r.ok for r in results] == [True]
    assert crm.batch_reads == []


@pytest.mark.parametrize(
    "what_it_owes",
    [
        AccountCredit(crm_account_id=ACCOUNT, held_by_dealbridge=True, on_hold=True),
        AccountCredit(crm_account_id=ACCOUNT,
                      paused_subscriptions={"sub_1": {"behavior": "void", "epoch": 1}}),
        Plan(id="plan-waiting", deal_id="deal-waiting", crm_account_id=ACCOUNT,
             status="awaiting_credit"),
    ],
    ids=["dealbridges-hold", "paused-subscriptions", "a-plan-waiting-for-credit"],
)  # fmt: skip
def test_without_a_policy_an_account_dealbridge_owes_something_is_still_settled(
    runtime: Runtime, crm: FakeCrm, what_it_owes: AccountCredit | Plan
) -> None:
    with runtime.db.session() as session:
        session.add(what_it_owes)

    results = credit.settle_after_invoices(
        runtime, [{"account_id": ACCOUNT}, {"account_id": "001OTHER"}]
    )

    assert [r.ok for r in results] == [True, True]
    assert crm.batch_reads == [[ACCOUNT]]  # 001OTHER owes nothing: not read
