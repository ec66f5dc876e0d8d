"""`services.admin_import`: an import an admin starts is queued, run by the worker's own job,
reports its progress and outcome, resumes after an interruption, and runs one at a time.

The CRM and Stripe are the in-memory fakes of tests/services/test_importer.py (the
customers phase); the worker is the ``run_imports`` job, called as the worker calls it.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from connector.jobs.schedule import drain_now, run_imports
from connector.runtime import Runtime
from connector.services import admin_import
from connector.services.admin import Actor
from connector.store.cursors import read_cursor, save_cursor
from connector.store.db import Database
from connector.store.models import AuditEntry, CustomerLink, OutboxMessage
from tests.services.test_importer import GLOBEX, FakeCrm, customer, make_runtime

ADA = Actor("ada@acme.example", "admin")
CUSTOMERS_ONLY = {"phases": ["customers"], "limit": None, "dry_run": False,
                  "announce_invoices": False, "restart": False,
                  "create_missing_accounts": False}  # fmt: skip


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


@pytest.fixture
def runtime(db: Database, crm: FakeCrm) -> Runtime:
    customers = [
        customer("cus_Globex", email="greta@globex.example"),
        customer("cus_Nobody", name="Nobody Ltd"),
    ]
    return make_runtime(db, crm, customers)


def _status(runtime: Runtime, message_id: int) -> dict[str, Any]:
    with runtime.db.session() as session:
        found = admin_import.get_import(session, message_id)
    assert found is not None
    return found


def test_a_queued_import_runs_in_the_worker_and_reports_its_outcome(runtime: Runtime) -> None:
    queued = admin_import.queue_import(runtime, ADA, CUSTOMERS_ONLY)
    assert queued.created
    assert _status(runtime, queued.message_id)["state"] == "queued"

    assert run_imports(runtime) == 1

    status = _status(runtime, queued.message_id)
    assert status["status"] == "done" and status["state"] == "finished"
    assert status["counts"] == {"customers": 2}
    assert status["report"]["linked"] == 1 and status["report"]["unmatched_total"] == 1
    assert status["report"]["unmatched"][0]["customer_id"] == "cus_Nobody"
    with runtime.db.session() as session:
        assert session.get(CustomerLink, GLOBEX) is not None
        finished = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "admin.import.finished")
        ).one()
        assert finished.details["requested_by"] == ADA.user
        assert finished.details["outcome"] == "finished" and finished.details["linked"] == 1


def test_the_outbox_drain_leaves_imports_to_their_own_job(runtime: Runtime) -> None:
    queued = admin_import.queue_import(runtime, ADA, CUSTOMERS_ONLY)
    drain_now(runtime)
    assert _status(runtime, queued.message_id)["status"] == "pending"


def test_an_import_the_crm_interrupts_is_retried_and_resumes(
    runtime: Runtime, crm: FakeCrm
) -> None:
    crm.fail_updates = 1
    queued = admin_import.queue_import(runtime, ADA, CUSTOMERS_ONLY)
    run_imports(runtime)
    stopped = _status(runtime, queued.message_id)
    assert (stopped["status"], stopped["state"], stopped["attempts"]) == ("pending", "stopped", 1)
    assert "the CRM went away" in stopped["reason"]

    runtime.clock.advance(hours=1)  # type: ignore[attr-defined]
    run_imports(runtime)
    assert _status(runtime, queued.message_id)["state"] == "finished"
    assert [account for account, _ in crm.updates] == [GLOBEX]


@pytest.mark.postgresql(reason="the advisory lock that serialises two admins' requests")
def test_one_import_at_a_time_a_second_request_returns_the_waiting_one(runtime: Runtime) -> None:
    first = admin_import.queue_import(runtime, ADA, CUSTOMERS_ONLY)
    second = admin_import.queue_import(runtime, Actor("bob@acme.example", "admin"), {})
    assert second == admin_import.Queued(first.message_id, created=False)
    with runtime.db.session() as session:
        assert len(session.scalars(select(OutboxMessage)).all()) == 1
    run_imports(runtime)
    third = admin_import.queue_import(runtime, ADA, CUSTOMERS_ONLY)
    assert third.created and third.message_id != first.message_id


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(
    runtime: Runtime, crm: FakeCrm
) -> None:
    queued = admin_import.queue_import(runtime, ADA, {**CUSTOMERS_ONLY, "dry_run": True})
    run_imports(runtime)
    status = _status(runtime, queued.message_id)
    assert status["state"] == "finished" and status["report"]["dry_run"] is True
    assert crm.writes() == 0
    with runtime.db.session() as session:
        assert session.scalars(select(CustomerLink)).first() is None


def test_restart_forgets_where_an_interrupted_import_stopped(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        save_cursor(session, "import.stripe.customers", "cus_Globex")
    admin_import.queue_import(runtime, ADA, {**CUSTOMERS_ONLY, "restart": True})
    with runtime.db.session() as session:
        assert read_cursor(session, "import.stripe.customers") is None


@pytest.mark.parametrize(
    ("body", "says"),
    [({"phases": []}, "at least one phase"), ({"phases": ["customers"] * 2}, "phases must"),
     ({"limit": True}, "limit must be"), ({"create_missing_accounts": "no"}, "must be true")],
)  # fmt: skip
def test_options_are_checked_before_anything_is_queued(body: dict[str, Any], says: str) -> None:
    with pytest.raises(admin_import.BadImportRequest, match=says):
        admin_import.parse_options(body)


def test_options_default_to_every_phase_in_order() -> None:
    options = admin_import.parse_options({"phases": ["invoices", "customers"]})
    assert options["phases"] == ["customers", "invoices"]
    assert admin_import.parse_options({})["phases"] == ["customers", "products", "invoices"]
