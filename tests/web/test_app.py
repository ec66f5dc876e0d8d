"""The app factory, health and metrics endpoints, JSON errors and request ids."""

from __future__ import annotations

import time
from typing import Any

import flask
import pytest

from connector.runtime import Runtime
from connector.store.db import Database
from connector.web.app import create_app
from tests.support import make_config
from tests.support.stripe_events import raw_event, stripe_signature


def test_healthz_reports_a_reachable_store(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["store"] == {"reachable": True, "backend": "sqlite"}


def test_healthz_is_503_when_the_store_is_down() -> None:
    down = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    app = create_app(runtime=Runtime(make_config(down.url), db=down))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_a_webhook_while_the_store_is_down_is_refused_with_a_retryable_503() -> None:
    """Not 500: the delivery is fine and nothing was stored; Stripe retries a 503."""
    down = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    app = create_app(runtime=Runtime(make_config(down.url), db=down))
    body = raw_event("invoice.paid__card.json")
    signature = stripe_signature(body, int(time.time()))

    response = app.test_client().post(
        "/webhooks/stripe",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "store_unavailable"
    assert response.headers["Retry-After"] == "5"


def test_flasks_own_session_is_off_and_writing_to_it_raises(client: Any) -> None:
    """dealbridge's session is its own signed cookie; Flask's would be a second, unsigned
    by our rules, and reading it cost every webhook a serializer."""
    response = client.get("/healthz")
    assert "Set-Cookie" not in response.headers
    with client.application.test_request_context("/"), pytest.raises(RuntimeError):
        flask.session["user"] = "someone"


@pytest.mark.postgresql(reason="reports the PostgreSQL backend")
def test_healthz_works_on_postgresql(db: Database) -> None:
    app = create_app(runtime=Runtime(make_config(db.url), db=db))
    assert app.test_client().get("/healthz").status_code == 200


def test_metrics_are_prometheus_text_with_queue_depths(client: Any) -> None:
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    body = response.get_data(as_text=True)
    assert (
        'dealbridge_http_requests_total{endpoint="/healthz",method="GET",status="200"} 1.0' in body
    )
    assert "# TYPE dealbridge_inbox_events gauge" in body
    assert "dealbridge_intake_spooled_events 0.0" in body


def test_metrics_count_the_events_spooled_and_not_yet_moved(client: Any, runtime: Runtime) -> None:
    spool = runtime.db.intake_spool
    assert spool is not None
    for n in range(2):
        spool.put(
            "stripe", f"evt_{n}", "invoice.paid", "{}", handled=True, received_at=runtime.clock()
        )
    body = client.get("/metrics").get_data(as_text=True)
    assert "dealbridge_intake_spooled_events 2.0" in body


def test_api_errors_are_json(client: Any) -> None:
    response = client.get("/api/does-not-exist")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_every_response_carries_a_request_id(client: Any) -> None:
    generated = client.get("/healthz").headers["X-Request-Id"]
    assert len(generated) == 32
    echoed = client.get("/healthz", headers={"X-Request-Id": "caller-chosen-id-1"})
    assert echoed.headers["X-Request-Id"] == "caller-chosen-id-1"


def test_create_app_needs_a_config_or_runtime() -> None:
    import pytest

    with pytest.raises(ValueError, match="needs a Config or a Runtime"):
        create_app()


def test_every_answer_says_nosniff(client: Any) -> None:
    answers = [
        client.get("/healthz"),
        client.get("/metrics"),
        client.get("/no/such/page"),
        client.post("/webhooks/stripe", data=b"{}", content_type="application/json"),
        client.post("/webhooks/stripe", data=b"x", content_type="text/plain"),
        client.get("/api/plans/some-deal"),
    ]
    for response in answers:
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.request.path


def _metrics_client(sqlite_db: Database, token: str | None) -> Any:
    from connector.config import config_for_tests
    from tests.support import TEST_SECRETS

    secrets = dict(TEST_SECRETS)
    if token is not None:
        from connector.secrets import Secret

        secrets["metrics_token"] = Secret(token)
    config = config_for_tests({"database": {"url": sqlite_db.url}}, **secrets)
    return create_app(runtime=Runtime(config, db=sqlite_db)).test_client()


def test_metrics_need_the_token_when_one_is_configured(sqlite_db: Database) -> None:
    client = _metrics_client(sqlite_db, "metrics-token-0123456789")
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"})
    assert right.status_code == 200
    assert "metrics-token-0123456789" not in right.get_data(as_text=True)


def test_metrics_are_open_without_a_configured_token(sqlite_db: Database) -> None:
    assert _metrics_client(sqlite_db, None).get("/metrics").status_code == 200


def test_healthz_says_why_when_the_mapping_has_become_invalid(
    sqlite_db: Database, tmp_path: Any
) -> None:
    from connector.config import config_for_tests
    from tests.support import TEST_SECRETS

    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("crm: salesforce\n", encoding="utf-8")
    config = config_for_tests(
        {"database": {"url": sqlite_db.url}, "crm": {"mapping": str(mapping)}}, **TEST_SECRETS
    )
    response = create_app(runtime=Runtime(config, db=sqlite_db)).test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "misconfigured"
    assert body["mapping"]["valid"] is False
    assert any(str(mapping) in problem for problem in body["mapping"]["problems"])


def test_healthz_reports_a_valid_mapping(client: Any) -> None:
    assert client.get("/healthz").get_json()["mapping"] == {"valid": True}
