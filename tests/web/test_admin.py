"""The admin's API and page: failing queues, replay and retry, imports, retention, audit.

Every action answers with a defined outcome (a second replay says the event is already
queued), an unknown id is a 404 that says so, and each request leaves an audit row with the
user, their role and the outcome. The import is only queued here; running it is
tests/services/test_admin_import.py.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from connector.runtime import Runtime
from connector.services.admin_import import IMPORT_STRIPE
from connector.store.models import AuditEntry, InboxEvent, OutboxMessage
from connector.web.app import create_app
from connector.web.auth import Identity, issue_session_token
from tests.support import TEST_SECRETS

TOKENS = {role: token for token, role in TEST_SECRETS["api_tokens"].items()}
ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
FINANCE = {"Authorization": f"Bearer {TOKENS['finance']}"}
ADMIN_USER = "api-token:admin"
_SERIAL = itertools.count(1)


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    flask_app = create_app(runtime=runtime)
    flask_app.testing = True
    return flask_app


def _event(runtime: Runtime, status: str, attempts: int, error: str | None = None,
           **fields: Any) -> int:  # fmt: skip
    with runtime.db.session() as session:
        row = InboxEvent(source="stripe", event_id=f"evt_{next(_SERIAL)}",
                         event_type="invoice.paid", payload="{}", status=status,
                         attempts=attempts, last_error=error, **fields)  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def _message(runtime: Runtime, status: str, attempts: int, error: str | None = None,
             **fields: Any) -> int:  # fmt: skip
    with runtime.db.session() as session:
        row = OutboxMessage(
            kind="crm.update_deal", ordering_key="deal:006A", payload={}, status=status,
            attempts=attempts, last_error=error, **fields,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def _audit(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.db.session() as session:
        rows = list(session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        ))  # fmt: skip
        session.expunge_all()
        return rows


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/admin/inbox"), ("POST", "/api/admin/inbox/1/replay"),
     ("POST", "/api/admin/imports"), ("POST", "/api/admin/retention/prune"),
     ("GET", "/api/admin/audit")],
)  # fmt: skip
def test_finance_is_refused_with_the_role_it_needs_and_nothing_happens(
    app: Flask, runtime: Runtime, method: str, path: str
) -> None:
    response = app.test_client().open(path, method=method, headers=FINANCE, json={})
    assert response.status_code == 403
    assert "needs the admin role" in response.get_json()["error"]["message"]
    with runtime.db.session() as session:
        assert session.scalars(select(OutboxMessage)).first() is None
        assert session.scalars(select(AuditEntry)).first() is None


def test_without_a_session_the_admin_api_answers_401(app: Flask) -> None:
    assert app.test_client().get("/api/admin/outbox").status_code == 401


# --------------------------------------------------------------------------- lists


def test_the_inbox_list_holds_parked_and_retrying_events_with_their_reason(
    app: Flask, runtime: Runtime
) -> None:
    parked = _event(runtime, "parked", 1, "KeyError: 'data'\nTraceback ...")
    retrying = _event(runtime, "pending", 2, "StripeGatewayError: timed out")
    _event(runtime, "done", 1)
    _event(runtime, "pending", 0)
    body = app.test_client().get("/api/admin/inbox", headers=ADMIN).get_json()
    assert [e["id"] for e in body["items"]] == [retrying, parked]
    assert body["items"][1]["reason"] == "KeyError: 'data'"
    assert body["total"] == 2 and body["next_offset"] is None


def test_the_lists_are_paged(app: Flask, runtime: Runtime) -> None:
    ids = [_message(runtime, "parked", 5, f"refused {n}") for n in range(3)]
    client = app.test_client()
    first = client.get("/api/admin/outbox?limit=2", headers=ADMIN).get_json()
    assert [m["id"] for m in first["items"]] == [ids[2], ids[1]]
    assert first["total"] == 3 and first["next_offset"] == 2
    rest = client.get("/api/admin/outbox?limit=2&offset=2", headers=ADMIN).get_json()
    assert [m["id"] for m in rest["items"]] == [ids[0]] and rest["next_offset"] is None
    assert rest["items"][0]["reason"] == "refused 0"


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=abc", "limit=1000", "offset=-1", "limit=%C2%B2", "offset=1.5"]
)
def test_bad_paging_is_a_clear_422(app: Flask, query: str) -> None:
    response = app.test_client().get(f"/api/admin/inbox?{query}", headers=ADMIN)
    assert response.status_code == 422
    assert "must be a whole number" in response.get_json()["error"]["message"]


# --------------------------------------------------------------------------- replay and retry


def test_replaying_a_parked_event_requeues_it_and_audits_who_in_which_role(
    app: Flask, runtime: Runtime
) -> None:
    event_id = _event(runtime, "parked", 5, "KeyError: 'data'")
    response = app.test_client().post(f"/api/admin/inbox/{event_id}/replay", headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "requeued"
    with runtime.db.session() as session:
        row = session.get(InboxEvent, event_id)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
    [entry] = _audit(runtime, "admin.inbox.replay")
    assert entry.actor == ADMIN_USER and entry.subject_id == str(event_id)
    assert entry.details["role"] == "admin" and entry.details["outcome"] == "requeued"


def test_replaying_twice_is_idempotent_and_says_the_event_is_already_queued(
    app: Flask, runtime: Runtime
) -> None:
    event_id = _event(runtime, "parked", 5, "KeyError: 'data'")
    client = app.test_client()
    client.post(f"/api/admin/inbox/{event_id}/replay", headers=ADMIN)
    with runtime.db.session() as session:
        before = session.get(InboxEvent, event_id)
        assert before is not None
        first_due = before.next_attempt_at
    runtime.clock.advance(minutes=5)  # type: ignore[attr-defined]
    again = client.post(f"/api/admin/inbox/{event_id}/replay", headers=ADMIN)
    assert again.status_code == 200 and again.get_json()["outcome"] == "already_queued"
    with runtime.db.session() as session:
        after = session.get(InboxEvent, event_id)
        assert after is not None and after.next_attempt_at == first_due
    outcomes = [e.details["outcome"] for e in _audit(runtime, "admin.inbox.replay")]
    assert outcomes == ["requeued", "already_queued"]


@pytest.mark.parametrize("bad_id", ["999999", "abc", "1e3", "%C2%B2", "9" * 40])
def test_replaying_an_unknown_event_is_a_404_that_says_so_and_is_audited(
    app: Flask, runtime: Runtime, bad_id: str
) -> None:
    response = app.test_client().post(f"/api/admin/inbox/{bad_id}/replay", headers=ADMIN)
    assert response.status_code == 404
    assert "no inbox event with id" in response.get_json()["error"]["message"]
    [entry] = _audit(runtime, "admin.inbox.replay")
    assert entry.details["outcome"] == "not_found"


def test_retrying_a_parked_message_gives_it_a_fresh_attempt_budget(
    app: Flask, runtime: Runtime
) -> None:
    message_id = _message(runtime, "parked", 8, "CRM refused: FIELD_INTEGRITY_EXCEPTION")
    client = app.test_client()
    response = client.post(f"/api/admin/outbox/{message_id}/retry", headers=ADMIN)
    assert response.status_code == 200 and response.get_json()["outcome"] == "requeued"
    with runtime.db.session() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
    again = client.post(f"/api/admin/outbox/{message_id}/retry", headers=ADMIN)
    assert again.get_json()["outcome"] == "already_queued"
    outcomes = [e.details["outcome"] for e in _audit(runtime, "admin.outbox.retry")]
    assert outcomes == ["requeued", "already_queued"]


def test_retrying_a_delivered_message_is_refused_with_409(app: Flask, runtime: Runtime) -> None:
    message_id = _message(runtime, "done", 1)
    response = app.test_client().post(f"/api/admin/outbox/{message_id}/retry", headers=ADMIN)
    assert response.status_code == 409
    assert "delivered already" in response.get_json()["error"]["message"]
    [entry] = _audit(runtime, "admin.outbox.retry")
    assert entry.details["outcome"] == "refused"


def test_retrying_an_unknown_message_is_a_404(app: Flask) -> None:
    response = app.test_client().post("/api/admin/outbox/424242/retry", headers=ADMIN)
    assert response.status_code == 404
    assert "no outbox message with id 424242" in response.get_json()["error"]["message"]


# --------------------------------------------------------------------------- imports


def test_starting_an_import_queues_it_for_the_worker_and_answers_202(
    app: Flask, runtime: Runtime
) -> None:
    client = app.test_client()
    response = client.post(
        "/api/admin/imports", headers=ADMIN, json={"phases": ["customers"], "dry_run": True}
    )
    assert response.status_code == 202
    body = response.get_json()
    assert body["outcome"] == "queued" and body["import"]["state"] == "queued"
    assert body["import"]["options"]["phases"] == ["customers"]
    with runtime.db.session() as session:
        [row] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == IMPORT_STRIPE))
        assert row.status == "pending" and row.payload["requested_by"] == ADMIN_USER
    status = client.get(body["status_url"], headers=ADMIN).get_json()
    assert status["id"] == row.id and status["requested_by"] == ADMIN_USER
    [entry] = _audit(runtime, "admin.import.start")
    assert entry.details["outcome"] == "queued" and entry.details["role"] == "admin"


def test_starting_an_import_while_one_waits_returns_that_one(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    first = client.post("/api/admin/imports", headers=ADMIN, json={}).get_json()
    second = client.post("/api/admin/imports", headers=ADMIN, json={"dry_run": True})
    assert second.status_code == 200
    assert second.get_json()["outcome"] == "already_queued"
    assert second.get_json()["import"]["id"] == first["import"]["id"]
    with runtime.db.session() as session:
        assert len(list(session.scalars(select(OutboxMessage)))) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [({"phases": ["everything"]}, "phases must be"), ({"limit": 0}, "limit must be"),
     ({"dry_run": "yes"}, "dry_run must be"), ({"force": True}, "Unknown import option"),
     ([1, 2], "JSON object")],
)  # fmt: skip
def test_bad_import_options_are_a_422_and_nothing_is_queued(
    app: Flask, runtime: Runtime, body: Any, says: str
) -> None:
    response = app.test_client().post("/api/admin/imports", headers=ADMIN, json=body)
    assert response.status_code == 422
    assert says in response.get_json()["error"]["message"]
    with runtime.db.session() as session:
        assert session.scalars(select(OutboxMessage)).first() is None


def test_an_unknown_import_is_a_404(app: Flask, runtime: Runtime) -> None:
    other = _message(runtime, "parked", 1)  # an outbox message, but not an import
    for path in ("/api/admin/imports/999", f"/api/admin/imports/{other}", "/api/admin/imports/x"):
        response = app.test_client().get(path, headers=ADMIN)
        assert response.status_code == 404, path
        assert "no import with id" in response.get_json()["error"]["message"]


# --------------------------------------------------------------------------- retention


def test_retention_shows_the_setting_and_what_pruning_would_remove(
    app: Flask, runtime: Runtime
) -> None:
    old = runtime.clock() - timedelta(days=40)
    _event(runtime, "done", 1, processed_at=old)
    _event(runtime, "parked", 5, "bad", processed_at=old)
    body = app.test_client().get("/api/admin/retention", headers=ADMIN).get_json()
    assert body["retention_days"] == 30
    assert body["prunable"] == {"inbox_events": 1, "outbox_messages": 0}


def test_pruning_now_removes_only_old_finished_rows_and_reports_and_audits_it(
    app: Flask, runtime: Runtime
) -> None:
    old = runtime.clock() - timedelta(days=40)
    _event(runtime, "done", 1, processed_at=old)
    recent = _event(runtime, "done", 1, processed_at=runtime.clock() - timedelta(days=1))
    parked = _event(runtime, "parked", 5, "bad", processed_at=old)
    _message(runtime, "done", 1, done_at=old)
    kept = _message(runtime, "parked", 8, "refused", done_at=old)
    response = app.test_client().post("/api/admin/retention/prune", headers=ADMIN)
    assert response.status_code == 200
    body = response.get_json()
    assert body["removed"] == {"inbox_events": 1, "outbox_messages": 1}
    assert body["prunable"] == {"inbox_events": 0, "outbox_messages": 0}
    with runtime.db.session() as session:
        assert sorted(session.scalars(select(InboxEvent.id))) == sorted([recent, parked])
        assert list(session.scalars(select(OutboxMessage.id))) == [kept]
    [entry] = _audit(runtime, "admin.retention.prune")
    assert entry.actor == ADMIN_USER and entry.details["removed"] == body["removed"]


# --------------------------------------------------------------------------- audit log


def test_the_audit_log_is_newest_first_and_filters_by_action(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    event_id = _event(runtime, "parked", 5, "bad")
    client.post(f"/api/admin/inbox/{event_id}/replay", headers=ADMIN)
    client.post("/api/admin/retention/prune", headers=ADMIN)
    everything = client.get("/api/admin/audit", headers=ADMIN).get_json()
    actions = [a["action"] for a in everything["items"]]
    # The queue's own record (inbox.replay) comes with the admin's.
    assert actions == ["admin.retention.prune", "admin.inbox.replay", "inbox.replay"]
    only = client.get("/api/admin/audit?action=admin.inbox", headers=ADMIN).get_json()
    assert [a["action"] for a in only["items"]] == ["admin.inbox.replay"]
    assert only["items"][0]["details"]["role"] == "admin"


# --------------------------------------------------------------------------- page


def _session(role: str = "admin") -> str:
    secret = TEST_SECRETS["secret_key"].reveal()
    return issue_session_token(secret, Identity(user="ada@acme.example", role=role, via="launch"))


def _page(app: Flask) -> tuple[str, str]:
    response = app.test_client().get(f"/admin?t={_session()}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None
    return html, found.group(1)


def _notice(response: Any) -> str:
    found = re.search(r'id="message">([^<]*)<', response.get_data(as_text=True))
    assert found is not None, response.get_data(as_text=True)
    return found.group(1)


def test_the_page_lists_failures_with_a_button_each_and_the_retention_setting(
    app: Flask, runtime: Runtime
) -> None:
    event_id = _event(runtime, "parked", 5, "KeyError: 'data'")
    message_id = _message(runtime, "parked", 8, "CRM refused")
    html, _ = _page(app)
    assert f'action="/admin/inbox/{event_id}/replay"' in html
    assert f'action="/admin/outbox/{message_id}/retry"' in html
    assert "KeyError: &#39;data&#39;" in html and "CRM refused" in html
    assert 'action="/admin/imports"' in html and 'action="/admin/retention/prune"' in html
    assert "<strong>30 days</strong>" in html


def test_a_form_post_replays_and_the_page_says_so(app: Flask, runtime: Runtime) -> None:
    event_id = _event(runtime, "parked", 5, "bad")
    _, csrf = _page(app)
    response = app.test_client().post(
        f"/admin/inbox/{event_id}/replay", data={"t": _session(), "csrf": csrf}
    )
    assert response.status_code == 200
    assert f"Inbox event {event_id} (invoice.paid) is queued again" in _notice(response)
    [entry] = _audit(runtime, "admin.inbox.replay")
    assert entry.actor == "ada@acme.example" and entry.details["role"] == "admin"


def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(
    app: Flask, runtime: Runtime
) -> None:
    event_id = _event(runtime, "parked", 5, "bad")
    response = app.test_client().post(f"/admin/inbox/{event_id}/replay", data={"t": _session()})
    assert response.status_code == 400
    with runtime.db.session() as session:
        row = session.get(InboxEvent, event_id)
        assert row is not None and row.status == "parked"


def test_the_import_form_queues_an_import_and_a_bad_limit_is_shown(
    app: Flask, runtime: Runtime
) -> None:
    _, csrf = _page(app)
    client = app.test_client()
    bad = client.post(
        "/admin/imports",
        data={"t": _session(), "csrf": csrf, "phases": "customers", "limit": "ten"},
    )
    assert bad.status_code == 422 and "limit must be" in _notice(bad)
    none = client.post("/admin/imports", data={"t": _session(), "csrf": csrf})
    assert none.status_code == 422 and "at least one phase" in _notice(none)
    ok = client.post(
        "/admin/imports",
        data={"t": _session(), "csrf": csrf, "phases": ["customers", "products"], "dry_run": "1"},
    )
    assert ok.status_code == 200 and "is queued" in _notice(ok)
    assert 'class="import"' in ok.get_data(as_text=True)


def test_the_overview_links_to_the_admin_page_for_admins_only(app: Flask) -> None:
    client = app.test_client()
    as_admin = client.get(f"/overview?t={_session('admin')}").get_data(as_text=True)
    as_finance = client.get(f"/overview?t={_session('finance')}").get_data(as_text=True)
    assert 'href="/admin?t=' in as_admin
    assert 'href="/admin' not in as_finance


def test_finance_opening_the_page_is_told_it_needs_the_admin_role(app: Flask) -> None:
    response = app.test_client().get(f"/admin?t={_session('finance')}")
    assert response.status_code == 403
    assert "needs the admin role" in response.get_data(as_text=True)
