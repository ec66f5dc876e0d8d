"""Roles are enforced on the server for every endpoint, and Canvas sign-in sets the role.

The matrix walks Flask's url_map, so a new route without an entry in ``REQUIRED`` fails
here until someone decides who may call it. Public routes (webhooks authenticate with
signatures, health is for probes, launch endpoints verify their own signed requests) are
listed apart, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from connector.crm.base import CrmUnavailable
from connector.runtime import Runtime
from connector.store.db import Database
from connector.web.app import create_app
from connector.web.auth import Identity, csrf_token, launch_signature
from connector.web.launch import sign_canvas_request
from tests.support import TEST_SECRETS, FrozenClock, make_config

REQUIRED = {
    "plans.api_deal_plan": "sales_rep",
    "plans.api_refresh_deal_plan": "sales_rep",
    "plans.api_plan": "sales_rep",
    "plans.api_adjust": "sales_rep",
    "plans.api_choose_customer": "sales_rep",
    "plans.api_activate": "sales_rep",
    "plans.api_manual": "sales_rep",
    "plans.api_undo_manual": "sales_rep",
    "plans.api_first_invoice": "sales_rep",
    "plans.deal_page": "sales_rep",
    "plans.plan_page": "sales_rep",
    "plans.page_adjust": "sales_rep",
    "plans.page_activate": "sales_rep",
    "plans.page_manual": "sales_rep",
    "plans.api_changed_after_activation": "sales_rep",
    "plans.api_changed_cancel": "finance",
    "plans.page_changed_after_activation": "sales_rep",
    "plans.page_confirm_manual": "sales_rep",
    "plans.page_undo_manual": "sales_rep",
    "plans.page_choose_customer": "sales_rep",
    "overview.api_overview": "finance",
    "overview.overview_page": "finance",
    "customers.api_subscriptions": "finance",
    "customers.api_cancel": "finance",
    "customers.api_reactivate": "finance",
    "customers.api_bill_again": "finance",
    "customers.api_archive_product": "finance",
    "customers.api_archive_price": "finance",
    "customers.api_change_price": "finance",
    "customers.customer_page": "finance",
    "customers.page_cancel": "finance",
    "customers.page_reactivate": "finance",
    "customers.page_bill_again": "finance",
    "customers.catalog_page": "finance",
    "customers.page_archive_product": "finance",
    "customers.page_archive_price": "finance",
    "customers.page_change_price": "finance",
    "admin.api_inbox": "admin",
    "admin.api_outbox": "admin",
    "admin.api_replay": "admin",
    "admin.api_retry": "admin",
    "admin.api_start_import": "admin",
    "admin.api_imports": "admin",
    "admin.api_import": "admin",
    "admin.api_retention": "admin",
    "admin.api_prune": "admin",
    "admin.api_audit": "admin",
    "admin.admin_page": "admin",
    "admin.page_replay": "admin",
    "admin.page_retry": "admin",
    "admin.page_start_import": "admin",
    "admin.page_prune": "admin",
}
PUBLIC = {
    "health.healthz": "liveness probe",
    "health.metrics": "Prometheus scrape",
    "stripe_webhooks.receive": "verified by the Stripe signature",
    "crm_webhooks.receive": "verified by the CRM's token",
    "plans.launch": "verified by the launch link's signature",
    "launch.canvas": "verified by the Canvas signed request",
    "launch.entra": "verified by the Entra ID access token (tests/web/test_entra_launch.py)",
    "crm_signin.salesforce_callback": "verified by the signed state and Salesforce's code",
    "crm_signin.entra_callback": "verified by this browser's flow cookie, msal's state, nonce "
    "and PKCE, and the ID token (tests/web/test_entra_signin.py)",
}
RANK = {"sales_rep": 1, "finance": 2, "admin": 3}
TOKENS = {role: token for token, role in TEST_SECRETS["api_tokens"].items()}
CONSUMER_SECRET = "canvas-consumer-secret-0123456789"


class NoCrm:
    """A CRM that is down: endpoints that reach it fail, but never as 401/403."""

    kind = "salesforce"
    batch_size = 200

    def record_url(self, kind: str, record_id: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        def down(*_args: Any, **_kwargs: Any) -> Any:
            raise CrmUnavailable("the CRM is down in this test")

        return down


@pytest.fixture
def app(sqlite_db: Database) -> Iterator[Any]:
    config = make_config(
        sqlite_db.url,
        # Stripe on a closed loopback port: any call fails fast, never leaves the machine.
        {"stripe": {"api_base": "http://127.0.0.1:9", "max_network_retries": 0},
         "web": {"canvas_roles": {"Finance Ops": "finance", "00eADMIN": "admin"}}},
    )  # fmt: skip
    secrets = config.secrets.__class__(
        **{**config.secrets.__dict__, "salesforce_client_secret": _secret(CONSUMER_SECRET)}
    )
    object.__setattr__(config, "secrets", secrets)
    runtime = Runtime(config, db=sqlite_db, clock=FrozenClock(), crm=NoCrm())  # type: ignore[arg-type]
    flask_app = create_app(runtime=runtime)
    yield flask_app


def _secret(value: str) -> Any:
    from connector.secrets import Secret

    return Secret(value)


def _routes(app: Any) -> list[tuple[str, str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"x_\1", rule.rule)
            routes.append((rule.endpoint, method, path))
    return routes


def test_every_route_is_either_role_checked_or_public_for_a_reason(app: Any) -> None:
    endpoints = {endpoint for endpoint, _, _ in _routes(app)}
    assert endpoints == set(REQUIRED) | set(PUBLIC)


def _cases() -> list[tuple[str, str]]:
    return [(endpoint, role) for endpoint in REQUIRED for role in ("none", *RANK)]


@pytest.mark.parametrize(("endpoint", "role"), _cases())
def test_each_route_refuses_roles_below_the_one_it_needs(
    app: Any, endpoint: str, role: str
) -> None:
    client = app.test_client()
    needed = REQUIRED[endpoint]
    for found, method, path in _routes(app):
        if found != endpoint:
            continue
        headers = {} if role == "none" else {"Authorization": f"Bearer {TOKENS[role]}"}
        response = client.open(path, method=method, headers=headers, json={})
        if role == "none":
            assert response.status_code == 401, (method, path)
        elif RANK[role] < RANK[needed]:
            assert response.status_code == 403, (method, path, role)
            body = response.get_json() or {}
            message = body.get("error", {}).get("message") or response.get_data(as_text=True)
            assert f"needs the {needed.replace('_', ' ')} role" in message
        else:
            assert response.status_code not in (401, 403), (method, path, role)


def test_a_refused_page_says_which_role_it_needs(app: Any) -> None:
    client = app.test_client()
    response = client.get(
        "/overview",
        headers={"Authorization": f"Bearer {TOKENS['sales_rep']}", "Accept": "text/html"},
    )
    assert response.status_code == 403
    assert "needs the finance role" in response.get_data(as_text=True)


# --------------------------------------------------------------------------- Canvas


def _envelope(**user: Any) -> dict[str, Any]:
    parameters = user.pop("parameters", {})
    return {
        "algorithm": "HMACSHA256",
        "issuedAt": int(FrozenClock().now.timestamp()),
        "userId": "005xx",
        "context": {
            "user": {"userName": "fin@acme.example", "email": "fin@acme.example",
                     "profileId": "00eSTD", **user},
            "environment": {"parameters": parameters, "record": {}},
        },
    }  # fmt: skip


def _signed_in_role(app: Any, signed_request: str) -> tuple[int, str | None]:
    client = app.test_client()
    response = client.post("/launch/canvas", data={"signed_request": signed_request})
    if response.status_code != 303:
        return response.status_code, None
    followed = client.get(response.headers["Location"], headers={"Accept": "application/json"})
    return followed.status_code, response.headers["Location"]


def test_a_canvas_request_signed_with_the_consumer_secret_signs_in(app: Any) -> None:
    signed = sign_canvas_request(
        CONSUMER_SECRET, _envelope(parameters={"permissionSets": ["Finance Ops"]})
    )
    status, location = _signed_in_role(app, signed)
    assert status == 200 and location is not None and location.startswith("/overview")


def test_a_canvas_user_without_a_mapped_role_is_a_sales_rep(app: Any) -> None:
    envelope = _envelope()
    envelope["context"]["environment"]["record"] = {
        "Id": "006DEAL",
        "attributes": {"type": "Opportunity"},
    }
    client = app.test_client()
    response = client.post(
        "/launch/canvas", data={"signed_request": sign_canvas_request(CONSUMER_SECRET, envelope)}
    )
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/deals/006DEAL/plan")
    refused = client.get("/api/overview")  # the session cookie carries the rep's role
    assert refused.status_code == 403
    assert "needs the finance role" in refused.get_json()["error"]["message"]


def test_the_profile_id_maps_to_a_role_too(app: Any) -> None:
    signed = sign_canvas_request(CONSUMER_SECRET, _envelope(profileId="00eADMIN"))
    client = app.test_client()
    response = client.post("/launch/canvas", data={"signed_request": signed})
    assert response.status_code == 303
    assert client.get("/api/overview").status_code == 200


@pytest.mark.parametrize(
    "signed_request",
    [
        sign_canvas_request("some-other-secret", _envelope(profileId="00eADMIN")),
        "not-a-signed-request",
        "",
    ],
    ids=["wrong secret", "garbage", "missing"],
)
def test_a_canvas_request_not_signed_by_our_connected_app_is_refused(
    app: Any, signed_request: str
) -> None:
    response = app.test_client().post("/launch/canvas", data={"signed_request": signed_request})
    assert response.status_code == 401


# --------------------------------------------------------------------------- CSRF on the API


def _admin_session(app: Any) -> Any:
    client = app.test_client()
    signed = sign_canvas_request(CONSUMER_SECRET, _envelope(profileId="00eADMIN"))
    assert client.post("/launch/canvas", data={"signed_request": signed}).status_code == 303
    return client


def test_a_cross_site_api_change_with_only_the_session_cookie_is_refused(app: Any) -> None:
    client = _admin_session(app)
    response = client.post("/api/plans/no-such-plan/activate")  # what a cross-site form sends
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "csrf"
    assert "X-CSRF-Token" in response.get_json()["error"]["message"]


def test_a_session_api_change_with_the_csrf_header_goes_through(app: Any) -> None:
    client = _admin_session(app)
    secret = TEST_SECRETS["secret_key"].reveal()
    token = csrf_token(secret, Identity(user="fin@acme.example", role="admin", via="session"))
    response = client.post("/api/plans/no-such-plan/activate", headers={"X-CSRF-Token": token})
    assert response.status_code == 404  # past the CSRF check, to the plan that does not exist


def test_a_session_may_still_read_the_api_without_the_header(app: Any) -> None:
    assert _admin_session(app).get("/api/overview").status_code == 200


# --------------------------------------------------------------------------- launch links


def _launch_query(sig: str | None = None) -> str:
    secret = TEST_SECRETS["secret_key"].reveal()
    exp = int(FrozenClock().now.timestamp()) + 600
    sig = sig or launch_signature(secret, "006DEAL", "rep@acme.example", "sales_rep", exp)
    return f"/launch?deal=006DEAL&user=rep@acme.example&role=sales_rep&exp={exp}&sig={sig}"


def test_a_signed_launch_link_opens_the_review_page(app: Any) -> None:
    response = app.test_client().get(_launch_query())
    assert response.status_code == 302
    assert "/deals/006DEAL/plan" in response.headers["Location"]


def test_a_launch_link_with_a_non_ascii_signature_is_refused_not_a_server_error(
    app: Any,
) -> None:
    response = app.test_client().get(_launch_query(sig="%C3%A9"))
    assert response.status_code == 401
    assert b"open it from the CRM again" in response.data  # a page: a person opened the link


# --------------------------------------------------------------------------- links and sessions


JSON = {"Accept": "application/json"}


def _link(deal: str = "006DEAL", *, exp: int | None = None, role: str = "sales_rep") -> str:
    secret = TEST_SECRETS["secret_key"].reveal()
    exp = exp if exp is not None else int(FrozenClock().now.timestamp()) + 600
    sig = launch_signature(secret, deal, "rep@acme.example", role, exp)
    return f"/launch?deal={deal}&user=rep@acme.example&role={role}&exp={exp}&sig={sig}"


def test_a_launch_link_signed_to_expire_in_2200_is_refused(app: Any) -> None:
    response = app.test_client().get(_link(exp=7_258_118_400), headers=JSON)  # 2200-01-01
    assert response.status_code == 401
    assert response.get_json()["error"]["reason"].startswith("expires further ahead")


def test_a_launch_link_expiring_within_the_ttl_is_accepted(app: Any) -> None:
    ttl = app.extensions["dealbridge"].config.section("web")["launch_link_ttl_seconds"]
    exp = int(FrozenClock().now.timestamp()) + ttl
    assert app.test_client().get(_link(exp=exp)).status_code == 302


def test_a_launch_link_opens_one_session_only(app: Any) -> None:
    link = _link()
    assert app.test_client().get(link).status_code == 302
    again = app.test_client().get(link, headers=JSON)
    assert again.status_code == 401
    assert again.get_json()["error"]["reason"] == "already used"


def _plan(app: Any, plan_id: str, deal_id: str) -> None:
    from connector.store.models import Plan

    with app.extensions["dealbridge"].db.session() as session:
        session.add(Plan(id=plan_id, deal_id=deal_id, status="draft"))


def test_a_session_opened_for_one_deal_cannot_read_adjust_or_activate_another(app: Any) -> None:
    _plan(app, "plan-a", "006DEALA")
    _plan(app, "plan-b", "006DEALB")
    client = app.test_client()
    assert client.get(_link("006DEALA")).status_code == 302
    for method, path in [
        ("GET", "/api/plans/plan-b"),
        ("GET", "/api/deals/006DEALB/plan"),
        ("GET", "/plans/plan-b"),
        ("POST", "/api/plans/plan-b/adjust"),
        ("POST", "/api/plans/plan-b/activate"),
        ("POST", "/plans/plan-b/activate"),
    ]:
        response = client.open(path, method=method, headers={"Accept": "application/json"})
        assert response.status_code == 403, (method, path)
        assert response.get_json()["error"]["code"] == "other_deal"
    assert client.get("/api/plans/plan-a").status_code != 403


def test_a_finance_session_opened_for_a_deal_cannot_open_the_overview(app: Any) -> None:
    client = app.test_client()
    assert client.get(_link("006DEALA", role="finance")).status_code == 302
    assert client.get("/api/overview").status_code == 403


def test_a_canvas_request_issued_in_2000_is_refused(app: Any) -> None:
    envelope = _envelope(profileId="00eADMIN")
    envelope["issuedAt"] = 946_684_800  # 2000-01-01
    response = app.test_client().post(
        "/launch/canvas",
        data={"signed_request": sign_canvas_request(CONSUMER_SECRET, envelope)},
        headers=JSON,
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "stale_signed_request"


def test_a_canvas_request_without_an_issued_at_time_is_refused(app: Any) -> None:
    envelope = _envelope(profileId="00eADMIN")
    envelope["issuedAt"] = None
    response = app.test_client().post(
        "/launch/canvas", data={"signed_request": sign_canvas_request(CONSUMER_SECRET, envelope)}
    )
    assert response.status_code == 401


def test_a_canvas_request_in_milliseconds_is_read_as_such(app: Any) -> None:
    envelope = _envelope(profileId="00eADMIN")
    envelope["issuedAt"] = int(FrozenClock().now.timestamp()) * 1000
    response = app.test_client().post(
        "/launch/canvas", data={"signed_request": sign_canvas_request(CONSUMER_SECRET, envelope)}
    )
    assert response.status_code == 303


def test_a_canvas_request_replayed_is_refused(app: Any) -> None:
    signed = sign_canvas_request(CONSUMER_SECRET, _envelope(profileId="00eADMIN"))
    assert (
        app.test_client().post("/launch/canvas", data={"signed_request": signed}).status_code == 303
    )
    again = app.test_client().post("/launch/canvas", data={"signed_request": signed}, headers=JSON)
    assert again.status_code == 401
    assert again.get_json()["error"]["code"] == "replayed_signed_request"


def test_the_browser_a_launch_link_signed_in_may_open_it_again(app: Any) -> None:
    client = app.test_client()
    link = _link("006DEALA")
    assert client.get(link).status_code == 302
    again = client.get(link)  # a reload or a double click, with the session cookie
    assert again.status_code == 302
    assert "/deals/006DEALA/plan" in again.headers["Location"]


def test_two_links_made_in_one_second_differ_by_their_nonce(app: Any) -> None:
    secret = TEST_SECRETS["secret_key"].reveal()
    exp = int(FrozenClock().now.timestamp()) + 600
    for nonce in ("n1", "n2"):
        sig = launch_signature(secret, "006DEAL", "rep@acme.example", "sales_rep", exp, nonce)
        link = (
            f"/launch?deal=006DEAL&user=rep@acme.example&role=sales_rep&exp={exp}"
            f"&nonce={nonce}&sig={sig}"
        )
        assert app.test_client().get(link).status_code == 302
