"""`services.importer`: the order in which Stripe customers are linked to CRM accounts,
resuming after an interruption, and the dry run, on both stores (SQLite, PostgreSQL).

The CRM and Stripe are in-memory fakes speaking the adapter protocol and the gateway's
``list_page``, which answers with Stripe's JSON (API-shaped dicts), as the gateway does."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from connector.crm.base import (
    AccountDirectory,
    AccountUpdate,
    PriceEntryRecord,
    ProductRecord,
    WriteResult,
)
from connector.domain.deal import Address
from connector.runtime import Runtime
from connector.services import importer
from connector.services.import_run import ImportOptions, ImportReport
from connector.store.db import Database
from connector.store.models import AuditEntry, Cursor, CustomerLink
from tests.support import FrozenClock, make_config

ACME = "001A0000000AcmeAAA"
GLOBEX = "001A0000000GlobAAA"
INITECH = "001A0000000InitAAA"
INITECH_EU = "001A0000000InEuAAA"
UMBRELLA = "001A0000000UmbrAAA"


class FakeCrm:
    """Accounts with contacts' emails; records every write."""

    kind = "fake"
    batch_size = 200

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {
            ACME: {"name": "Acme Corp", "emails": [], "stripe": "cus_Linked"},
            GLOBEX: {"name": "Globex", "emails": ["greta@globex.example"], "stripe": None},
            INITECH: {"name": "Initech", "emails": ["ap@initech.example"], "stripe": None},
            INITECH_EU: {"name": "Initech EU", "emails": ["ap@initech.example"], "stripe": None},
            UMBRELLA: {"name": "Umbrella", "emails": [], "stripe": None},
        }
        self.updates: list[tuple[str, AccountUpdate]] = []
        self.created: list[str] = []
        self.fail_updates = 0

    def account_directory(self) -> AccountDirectory:
        by_email: dict[str, list[str]] = {}
        by_name: dict[str, list[str]] = {}
        for account_id, a in self.accounts.items():
            for email in a["emails"]:
                by_email.setdefault(email.casefold(), []).append(account_id)
            by_name.setdefault(a["name"].strip().casefold(), []).append(account_id)
        return AccountDirectory(
            ids=frozenset(self.accounts),
            by_email=by_email,
            by_name=by_name,
            by_stripe_customer={a["stripe"]: i for i, a in self.accounts.items() if a["stripe"]},
        )

    def update_accounts(self, updates: Sequence[tuple[str, AccountUpdate]]) -> list[WriteResult]:
        if self.fail_updates:
            self.fail_updates -= 1
            raise ConnectionError("the CRM went away")
        for account_id, update in updates:
            self.updates.append((account_id, update))
            self.accounts[account_id]["stripe"] = update.get("stripe_customer_id")
        return [WriteResult(key=a, ok=True, crm_id=a) for a, _ in updates]

    def create_account(
        self,
        name: str,
        email: str | None,
        address: Address | None,
        *,
        stripe_customer_id: str | None = None,
    ) -> str:
        account_id = f"001A000000New{len(self.created):02d}AAA"
        self.accounts[account_id] = {
            "name": name,
            "emails": [email] if email else [],
            "stripe": stripe_customer_id,
        }
        self.created.append(account_id)
        return account_id

    def upsert_products(self, products: Sequence[ProductRecord]) -> list[WriteResult]:
        raise AssertionError("not in these tests")

    def upsert_price_entries(self, entries: Sequence[PriceEntryRecord]) -> list[WriteResult]:
        raise AssertionError("not in these tests")

    def writes(self) -> int:
        return len(self.updates) + len(self.created)


class FakeStripe:
    """``list_page`` over customers, newest first, as the gateway pages them."""

    def __init__(self, customers: list[dict[str, Any]]) -> None:
        self.customers = customers

    def list_page(
        self, resource: str, *, starting_after: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], bool]:
        assert resource == "customers"
        items = self.customers
        if starting_after:
            items = items[[c["id"] for c in items].index(starting_after) + 1 :]
        return items[:limit], len(items) > limit

    def customer_url(self, customer_id: str) -> str:
        return f"https://dashboard.stripe.com/customers/{customer_id}"


def customer(customer_id: str, **fields: Any) -> dict[str, Any]:
    """A customer as ``GET /v1/customers`` returns it."""
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "created": 1763712000,
        "email": None,
        "livemode": False,
        "metadata": {},
        "name": None,
        **fields,
    }


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


def make_runtime(
    db: Database, crm: FakeCrm, customers: list[dict[str, Any]], **import_settings: Any
) -> Runtime:
    config = make_config(db.url, {"import": import_settings} if import_settings else None)
    return Runtime(config, db=db, clock=FrozenClock(), crm=crm, stripe=FakeStripe(customers))  # type: ignore[arg-type]


def run(runtime: Runtime, **options: Any) -> ImportReport:
    progress = options.pop("progress", None)
    options.setdefault("phases", ("customers",))
    return importer.import_stripe(runtime, ImportOptions(**options), progress=progress)


def links(db: Database) -> dict[str, str]:
    with db.session() as session:
        rows = session.execute(select(CustomerLink.stripe_customer_id, CustomerLink.crm_account_id))
        return {customer: account for customer, account in rows}


def count(db: Database, model: Any) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --------------------------------------------------------------------------- linking order

LINKING = {
    "an account already carrying its Stripe id": (
        customer("cus_Linked", name="Acme (billing)", email="ap@initech.example"),
        {},
        ("stripe_id", ACME),
    ),
    "metadata naming an existing account": (
        customer("cus_M", metadata={"crm_account_id": GLOBEX}, email="ap@initech.example"),
        {},
        ("metadata", GLOBEX),
    ),
    "metadata naming it by its 15-character id": (
        customer("cus_M15", metadata={"crm_account_id": GLOBEX[:15]}),
        {},
        ("metadata", GLOBEX),
    ),
    "stale metadata falls through to the email": (
        customer(
            "cus_S", metadata={"crm_account_id": "001000000000000AAA"}, email="greta@globex.example"
        ),
        {},
        ("email", GLOBEX),
    ),
    "a billing email in another case matching one account": (
        customer("cus_E", email="Greta@GLOBEX.example"),
        {},
        ("email", GLOBEX),
    ),
    "the name rule": (
        customer("cus_N", name=" UMBRELLA "),
        {"match_rule": "name"},
        ("name", UMBRELLA),
    ),
    "the metadata rule": (
        customer("cus_R", metadata={"company": "umbrella"}),
        {"match_rule": "metadata", "match_metadata_key": "company"},
        ("metadata", UMBRELLA),
    ),
    "the name rule is not tried unless configured": (
        customer("cus_X", name="Umbrella"),
        {},
        None,
    ),
}


@pytest.mark.parametrize(("payload", "settings", "expected"), LINKING.values(), ids=LINKING)
def test_customers_are_linked_in_the_documented_order(
    db: Database,
    crm: FakeCrm,
    payload: dict[str, Any],
    settings: dict[str, Any],
    expected: tuple[str, str] | None,
) -> None:
    report = run(make_runtime(db, crm, [payload], **settings))

    if expected is None:
        assert report.linked == {}
        assert [u.customer_id for u in report.unmatched] == [payload["id"]]
    else:
        how, account = expected
        assert report.linked == {how: 1}
        assert links(db) == {payload["id"]: account}


def test_an_email_two_accounts_share_is_not_a_guess(db: Database, crm: FakeCrm) -> None:
    report = run(make_runtime(db, crm, [customer("cus_Two", email="AP@initech.example")]))

    assert links(db) == {}
    [item] = report.unmatched
    assert item.reason == "2 accounts have a contact with AP@initech.example"
    assert crm.updates == []


def test_stale_metadata_without_another_match_says_the_account_does_not_exist(
    db: Database, crm: FakeCrm
) -> None:
    stale = customer("cus_Gone", metadata={"crm_account_id": "001000000000000AAA"})

    [item] = run(make_runtime(db, crm, [stale])).unmatched

    assert (
        item.reason == "metadata names account 001000000000000AAA, which does not exist in the CRM"
    )


def test_unmatched_customers_are_listed_and_audited_for_a_person(
    db: Database, crm: FakeCrm
) -> None:
    nobody = customer("cus_Wayne", name="Wayne Corp", email="bruce@wayne.example")

    report = run(make_runtime(db, crm, [nobody]))

    assert [(u.customer_id, u.reason) for u in report.unmatched] == [("cus_Wayne", "no match")]
    with db.session() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "import.customer_unmatched")
        ).one()
        assert entry.subject_id == "cus_Wayne"


def test_a_customer_already_linked_in_the_store_is_counted_not_linked_again(
    db: Database, crm: FakeCrm
) -> None:
    runtime = make_runtime(db, crm, [customer("cus_E", email="greta@globex.example")])
    run(runtime)

    again = run(runtime)

    assert (again.linked, again.already_linked) == ({}, 1)
    assert len(crm.updates) == 1


@pytest.mark.postgresql(reason="the links' unique keys keep a rerun from creating twice")
def test_a_missing_account_is_created_once_and_a_rerun_reuses_it(
    db: Database, crm: FakeCrm
) -> None:
    runtime = make_runtime(db, crm, [customer("cus_Wayne", name="Wayne Corp")])

    first = run(runtime, create_missing_accounts=True)
    run(runtime, create_missing_accounts=True)

    assert first.linked == {"created": 1}
    assert len(crm.created) == 1
    assert links(db) == {"cus_Wayne": crm.created[0]}


def test_an_account_created_before_a_crash_is_found_by_its_stripe_id_not_created_again(
    db: Database, crm: FakeCrm
) -> None:
    runtime = make_runtime(db, crm, [customer("cus_Wayne", name="Wayne Corp")])
    crm.fail_updates = 1
    with pytest.raises(ConnectionError):
        run(runtime, create_missing_accounts=True)

    report = run(runtime, create_missing_accounts=True)

    assert report.linked == {"stripe_id": 1}
    assert len(crm.created) == 1
    assert links(db) == {"cus_Wayne": crm.created[0]}


def test_an_email_shared_by_two_accounts_gets_no_new_account_either(
    db: Database, crm: FakeCrm
) -> None:
    runtime = make_runtime(db, crm, [customer("cus_3", email="ap@initech.example")])
    report = run(runtime, create_missing_accounts=True)
    assert crm.created == []
    assert [u.customer_id for u in report.unmatched] == ["cus_3"]
    assert "2 accounts have a contact with ap@initech.example" in report.unmatched[0].reason


# --------------------------------------------------------------------------- resuming


class Interrupt(Exception):
    pass


CUSTOMERS = [
    customer("cus_1", metadata={"crm_account_id": GLOBEX}),
    customer("cus_2", name="Umbrella"),
    customer("cus_3", email="ap@initech.example"),  # two accounts: left for a person
    customer("cus_4", name="Wayne Corp"),
]


@pytest.mark.postgresql(
    reason="the cursor and the links' unique keys are what make a rerun write once"
)
@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_an_interrupted_import_resumes_after_its_cursor_and_writes_everything_once(
    db: Database, crm: FakeCrm, stop_after: int
) -> None:
    runtime = make_runtime(db, crm, CUSTOMERS, match_rule="name")
    handled = 0

    def interrupt(_phase: str, n: int) -> None:
        nonlocal handled
        handled += n
        if handled >= stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(runtime, chunk_size=1, progress=interrupt, create_missing_accounts=True)
    assert count(db, Cursor) == 1

    run(runtime, chunk_size=1, create_missing_accounts=True)

    assert sorted(links(db)) == ["cus_1", "cus_2", "cus_4"]  # cus_3 is ambiguous
    assert Counter(a for a, _ in crm.updates) == Counter(links(db).values())
    assert len(crm.created) == 1
    assert count(db, Cursor) == 0  # finished: the next import starts from the top


# --------------------------------------------------------------------------- dry run


def test_a_dry_run_reports_its_plan_and_writes_nothing(db: Database, crm: FakeCrm) -> None:
    runtime = make_runtime(db, crm, CUSTOMERS)

    report = run(runtime, dry_run=True, create_missing_accounts=True)

    assert report.planned == [
        f"would link cus_1 → account {GLOBEX} (metadata)",
        "would create an account for cus_2 → account (new account 'Umbrella') (created)",
        "would create an account for cus_4 → account (new account 'Wayne Corp') (created)",
    ]
    assert crm.writes() == 0
    assert (count(db, CustomerLink), count(db, AuditEntry), count(db, Cursor)) == (0, 0, 0)
