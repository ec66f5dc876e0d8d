"""The overview page and API say what each month of the MRR trend can and cannot know."""

from __future__ import annotations

from markupsafe import escape

from connector.runtime import Runtime
from connector.services.overview import TREND_BASIS
from connector.store.db import Database
from connector.web.app import create_app
from connector.web.auth import Identity, issue_session_token
from tests.support import TEST_SECRETS, FrozenClock, make_config


def test_the_trend_states_that_past_months_use_todays_items(sqlite_db: Database) -> None:
    config = make_config(
        sqlite_db.url, {"stripe": {"api_base": "http://127.0.0.1:9", "max_network_retries": 0}}
    )
    app = create_app(runtime=Runtime(config, db=sqlite_db, clock=FrozenClock()))
    secret = TEST_SECRETS["secret_key"].reveal()
    token = issue_session_token(
        secret, Identity(user="fin@acme.example", role="finance", via="launch")
    )
    client = app.test_client()

    page = client.get(f"/overview?t={token}").get_data(as_text=True)
    api = client.get(f"/api/overview?t={token}").get_json()

    assert f'<p class="muted small" id="trend-basis">{escape(TREND_BASIS)}</p>' in page
    assert api["mrr_trend_basis"] == TREND_BASIS
    assert "Stripe keeps no history of them, so dealbridge keeps" in TREND_BASIS
