"""Opening a plan's URL without a session signs the person in through Salesforce (OAuth
web-server flow with the connected app) instead of answering 401 (issue 16, item 5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from connector.config import config_for_tests
from connector.demo import salesforce_sandbox
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.store.db import Database
from connector.store.models import Plan
from connector.web.app import create_app
from sandboxes.salesforce import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_USERNAME,
    SalesforceSandbox,
)
from tests.support import TEST_SECRETS, FrozenClock

BASE = "http://dealbridge.test"
PAGE = {"Accept": "text/html"}


class PageCrm:
    kind = "salesforce"
    batch_size = 200

    def record_url(self, kind: str, record_id: str) -> None:
        return None


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    started = salesforce_sandbox(seed=None).start()
    yield started
    started.stop()


def _app(db: Database, sandbox: SalesforceSandbox, **secrets: Any) -> Any:
    config = config_for_tests(
        {
            "database": {"url": db.url},
            "app": {"base_url": BASE},
            "crm": {"kind": "salesforce", "salesforce": {"login_url": sandbox.url}},
        },
        **{**TEST_SECRETS, **secrets},
    )
    app = create_app(runtime=Runtime(config, db=db, clock=FrozenClock(), crm=PageCrm()))  # type: ignore[arg-type]
    with app.extensions["dealbridge"].db.session() as session:
        session.add(Plan(id="plan-a", deal_id="006DEALA", status="draft"))
        session.add(Plan(id="plan-b", deal_id="006DEALB", status="draft"))
    return app


@pytest.fixture
def app(sqlite_db: Database, sandbox: SalesforceSandbox) -> Any:
    return _app(
        sqlite_db,
        sandbox,
        salesforce_client_id=DEMO_CLIENT_ID,
        salesforce_client_secret=Secret(DEMO_CLIENT_SECRET),
    )


def _through_salesforce(client: Any, path: str) -> Any:
    """Open ``path`` as a browser would: to Salesforce and back to dealbridge."""
    first = client.get(path, headers=PAGE)
    assert first.status_code == 302, first.get_data(as_text=True)
    at_salesforce = requests.get(first.headers["Location"], allow_redirects=False, timeout=10)
    assert at_salesforce.status_code == 302
    back = urlsplit(at_salesforce.headers["Location"])
    assert f"{back.scheme}://{back.netloc}" == BASE
    return client.get(f"{back.path}?{back.query}", headers=PAGE)


def test_opening_a_plan_url_without_a_session_signs_in_through_salesforce(app: Any) -> None:
    client = app.test_client()
    landed = _through_salesforce(client, "/deals/006DEALA/plan")
    assert landed.status_code == 303
    assert urlsplit(landed.headers["Location"]).path == "/deals/006DEALA/plan"
    assert client.get("/api/plans/plan-a").status_code not in (401, 403)


def test_the_salesforce_session_reaches_only_the_deal_it_was_opened_for(app: Any) -> None:
    client = app.test_client()
    _through_salesforce(client, "/plans/plan-a")
    response = client.get("/api/plans/plan-b")
    assert response.status_code == 403


def test_the_signed_in_user_is_the_one_salesforce_names(app: Any) -> None:
    from connector.web.auth import SESSION_COOKIE, read_session_token

    client = app.test_client()
    _through_salesforce(client, "/deals/006DEALA/plan")
    cookie = client.get_cookie(SESSION_COOKIE)
    identity = read_session_token(TEST_SECRETS["secret_key"].reveal(), cookie.value, 3600)
    assert identity is not None
    assert (identity.user, identity.role, identity.deal) == (DEMO_USERNAME, "sales_rep", "006DEALA")


def test_a_sign_in_callback_is_used_once(app: Any) -> None:
    client = app.test_client()
    first = client.get("/deals/006DEALA/plan", headers=PAGE)
    at_salesforce = requests.get(first.headers["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(at_salesforce.headers["Location"])
    assert client.get(f"{back.path}?{back.query}", headers=PAGE).status_code == 303
    again = app.test_client().get(
        f"{back.path}?{back.query}", headers={"Accept": "application/json"}
    )
    assert again.status_code == 401


def test_a_forged_state_is_refused(app: Any) -> None:
    response = app.test_client().get(
        "/auth/salesforce/callback?code=x&state=forged", headers={"Accept": "application/json"}
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "bad_sign_in_state"


def test_the_api_still_answers_401_without_a_session(app: Any) -> None:
    assert app.test_client().get("/api/plans/plan-a").status_code == 401


def test_without_a_connected_app_the_page_answers_401(
    sqlite_db: Database, sandbox: SalesforceSandbox
) -> None:
    app = _app(sqlite_db, sandbox)
    assert app.test_client().get("/deals/006DEALA/plan", headers=PAGE).status_code == 401
