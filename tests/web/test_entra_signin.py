"""Opening a plan's URL without a session signs the person in through Microsoft Entra ID
(Dynamics 365), msal's auth code flow against the Dataverse sandbox's tenant, instead of
answering 401 (issue 16 item 5, issue 17)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from connector.config import config_for_tests
from connector.crm.dynamics.auth import reset_applications
from connector.demo.dataverse import dataverse_sandbox
from connector.demo.dynamics_world import DEMO_APP_ROLES
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.store.db import Database
from connector.store.models import Plan
from connector.web.app import create_app
from connector.web.auth import SESSION_COOKIE, read_session_token
from connector.web.crm_sign_in_start import ENTRA_CALLBACK, entra_flow_cookie
from sandboxes.dataverse import DEMO_USERS, DataverseSandbox
from tests.support import TEST_SECRETS, FrozenClock
from tests.support.html_forms import Form, forms_of

BASE = "http://dealbridge.test"
PAGE = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
REP, FINANCE, _ADMIN, NO_ROLE = (u.username for u in DEMO_USERS)


class PageCrm:
    kind = "dynamics"
    batch_size = 200

    def record_url(self, kind: str, record_id: str) -> None:
        return None


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sandbox(clock: FrozenClock) -> Iterator[DataverseSandbox]:
    reset_applications()  # one msal application per process: a new sandbox, a new one
    started = dataverse_sandbox(seed=None, now=clock).start()
    started.allow_redirect_uri(BASE + ENTRA_CALLBACK)
    started.sign_in_browser_as(REP)
    yield started
    started.stop()
    reset_applications()


def _app(
    db: Database,
    sandbox: DataverseSandbox,
    clock: FrozenClock,
    *,
    client_secret: bool = True,
    entra: dict[str, Any] | None = None,
    **secrets: Any,
) -> Any:
    secret = {"dynamics_client_secret": Secret(sandbox.client_secret)} if client_secret else {}
    config = config_for_tests(
        {
            "database": {"url": db.url},
            "app": {"base_url": BASE},
            "crm": {
                "kind": "dynamics",
                "dynamics": {
                    "environment_url": sandbox.url,
                    "tenant_id": sandbox.tenant_id,
                    "client_id": sandbox.client_id,
                },
            },
            "web": {"entra": {"roles": dict(DEMO_APP_ROLES), **(entra or {})}},
        },
        **{**TEST_SECRETS, **secret, **secrets},
    )
    app = create_app(runtime=Runtime(config, db=db, clock=clock, crm=PageCrm()))  # type: ignore[arg-type]
    with app.extensions["dealbridge"].db.session() as session:
        session.add(Plan(id="plan-a", deal_id="DEAL-A", status="draft"))
        session.add(Plan(id="plan-b", deal_id="DEAL-B", status="draft"))
    return app


@pytest.fixture
def app(sqlite_db: Database, sandbox: DataverseSandbox, clock: FrozenClock) -> Any:
    return _app(sqlite_db, sandbox, clock)


def _at_entra(client: Any, path: str) -> requests.Response:
    """Open ``path`` without a session: dealbridge sends the browser to Entra's page."""
    first = client.get(path, headers=PAGE)
    assert first.status_code == 302, first.get_data(as_text=True)
    return requests.get(first.headers["Location"], allow_redirects=False, timeout=10)


def _answer(page: requests.Response) -> Form:
    """The form Entra's page posts back to dealbridge (by itself, or when clicked)."""
    assert page.status_code == 200, page.text
    form = forms_of(page.text)[-1]
    assert form.method == "POST" and form.action == BASE + ENTRA_CALLBACK
    return form


def _post(client: Any, form: Form, headers: dict[str, str] = PAGE) -> Any:
    return client.post(urlsplit(form.action).path, data=form.fields, headers=headers)


def _signed_in(client: Any) -> tuple[str, str, str | None]:
    cookie = client.get_cookie(SESSION_COOKIE)
    identity = read_session_token(TEST_SECRETS["secret_key"].reveal(), cookie.value, 3600)
    assert identity is not None
    return identity.user, identity.role, identity.deal


def test_opening_a_plan_url_without_a_session_signs_in_through_entra_as_that_rep(
    app: Any,
) -> None:
    client = app.test_client()
    landed = _post(client, _answer(_at_entra(client, "/plans/plan-a")))

    assert landed.status_code == 303
    assert urlsplit(landed.headers["Location"]).path == "/deals/DEAL-A/plan"
    assert _signed_in(client) == (REP, "sales_rep", "DEAL-A")
    assert client.get("/api/plans/plan-a").status_code == 200


def test_the_session_reaches_only_the_deal_it_was_opened_for(app: Any) -> None:
    client = app.test_client()
    _post(client, _answer(_at_entra(client, "/deals/DEAL-A/plan")))

    assert client.get("/api/plans/plan-b").status_code == 403


def test_the_role_comes_from_the_app_roles_in_the_id_token(
    app: Any, sandbox: DataverseSandbox
) -> None:
    sandbox.sign_in_browser_as(FINANCE)
    client = app.test_client()
    _post(client, _answer(_at_entra(client, "/deals/DEAL-A/plan")))

    assert _signed_in(client) == (FINANCE, "finance", "DEAL-A")


def test_a_person_with_none_of_the_app_roles_is_refused_with_403(
    app: Any, sandbox: DataverseSandbox
) -> None:
    sandbox.sign_in_browser_as(NO_ROLE)
    client = app.test_client()
    refused = _post(client, _answer(_at_entra(client, "/deals/DEAL-A/plan")), JSON)

    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "crm_sign_in_refused"
    assert client.get_cookie(SESSION_COOKIE) is None


def test_a_refused_sign_in_is_401_with_entras_reason(app: Any, sandbox: DataverseSandbox) -> None:
    sandbox.sign_in_browser_as(None)  # Entra shows its account picker; the person cancels
    client = app.test_client()
    page = _at_entra(client, "/deals/DEAL-A/plan")
    cancel = next(f for f in forms_of(page.text) if f.id == "cancel")
    refused = _post(client, cancel, JSON)

    assert refused.status_code == 401
    error = refused.get_json()["error"]
    assert error["code"] == "crm_sign_in_refused"
    assert "access_denied" in error["message"]
    assert client.get_cookie(SESSION_COOKIE) is None


def test_an_answer_whose_state_was_not_started_in_this_browser_is_refused(app: Any) -> None:
    started_elsewhere = app.test_client()
    answer = _answer(_at_entra(started_elsewhere, "/deals/DEAL-A/plan"))

    refused = _post(app.test_client(), answer, JSON)  # another browser: no flow cookie

    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "bad_sign_in_state"


def test_a_forged_state_is_refused(app: Any) -> None:
    client = app.test_client()
    answer = _answer(_at_entra(client, "/deals/DEAL-A/plan"))
    cookie = client.get_cookie(entra_flow_cookie(answer.fields["state"]), path=ENTRA_CALLBACK)
    forged = {**answer.fields, "state": "forged"}
    client.set_cookie(entra_flow_cookie("forged"), cookie.value, path=ENTRA_CALLBACK)

    refused = _post(client, Form(answer.action, "POST", fields=forged), JSON)

    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "crm_sign_in_failed"
    assert client.get_cookie(SESSION_COOKIE) is None


def test_an_answer_is_used_once(app: Any) -> None:
    client = app.test_client()
    answer = _answer(_at_entra(client, "/deals/DEAL-A/plan"))
    name = entra_flow_cookie(answer.fields["state"])
    flow_cookie = client.get_cookie(name, path=ENTRA_CALLBACK).value
    assert _post(client, answer).status_code == 303

    replay = app.test_client()
    replay.set_cookie(name, flow_cookie, path=ENTRA_CALLBACK)
    refused = _post(replay, answer, JSON)

    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "bad_sign_in_state"
    assert "already used" in refused.get_json()["error"]["message"]


def test_the_api_still_answers_401_without_a_session(app: Any) -> None:
    assert app.test_client().get("/api/plans/plan-a").status_code == 401


def test_without_a_client_secret_the_page_answers_401(
    sqlite_db: Database, sandbox: DataverseSandbox, clock: FrozenClock
) -> None:
    app = _app(sqlite_db, sandbox, clock, client_secret=False)

    assert app.test_client().get("/deals/DEAL-A/plan", headers=PAGE).status_code == 401


def test_a_web_app_registration_of_its_own_signs_people_in_when_configured(
    sqlite_db: Database, sandbox: DataverseSandbox, clock: FrozenClock
) -> None:
    web_app = "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f"
    sandbox.tenant.clients[web_app] = "dealbridge-web-secret"
    sandbox.tenant.sign_in.add_redirect_uri(web_app, BASE + ENTRA_CALLBACK)
    app = _app(
        sqlite_db, sandbox, clock, entra={"client_id": web_app},
        entra_client_secret=Secret("dealbridge-web-secret"),
    )  # fmt: skip
    client = app.test_client()
    at_entra = _at_entra(client, "/deals/DEAL-A/plan")
    assert f"client_id={web_app}" in at_entra.url

    assert _post(client, _answer(at_entra)).status_code == 303
    assert _signed_in(client) == (REP, "sales_rep", "DEAL-A")


def test_when_entra_cannot_be_reached_the_page_says_so_with_502(
    app: Any, sandbox: DataverseSandbox
) -> None:
    sandbox.stop()  # msal reads the tenant's OpenID configuration on first use: it fails

    response = app.test_client().get("/deals/DEAL-A/plan", headers=PAGE)

    assert response.status_code == 502
    assert "Microsoft Entra ID could not be reached" in response.get_data(as_text=True)
