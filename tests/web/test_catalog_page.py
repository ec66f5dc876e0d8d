"""The catalogue page: archive a product or price, change a price, from forms.

These tests are about the page: who may post, what the forms send to the lifecycle service
(amounts in major units become minor units), and that every outcome comes back as the page
with a message, never an error page. The Stripe side is in tests/e2e/test_lifecycle.py;
here the service's actions are replaced by recorders, and Stripe sits on a closed port.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from connector.runtime import Runtime
from connector.services import catalog_changes
from connector.services.lifecycle_operations import StripeRefused
from connector.store.db import Database
from connector.store.models import PriceMirror, ProductMirror
from connector.web.app import create_app
from connector.web.auth import Identity, issue_session_token
from tests.support import TEST_SECRETS, FrozenClock, make_config

USER = "fin@acme.example"


@pytest.fixture
def app(sqlite_db: Database) -> Flask:
    config = make_config(
        sqlite_db.url, {"stripe": {"api_base": "http://127.0.0.1:9", "max_network_retries": 0}}
    )
    runtime = Runtime(config, db=sqlite_db, clock=FrozenClock())
    with runtime.db.session() as session:
        session.add(ProductMirror(id="prod_platform", name="Platform", active=True))
        session.add(ProductMirror(id="prod_legacy", name="Legacy", active=False))
        session.add_all(
            [
                PriceMirror(id="price_monthly", product_id="prod_platform", active=True,
                            type="recurring", currency="usd", unit_amount=50000,
                            interval="month", interval_count=1),
                PriceMirror(id="price_setup_jpy", product_id="prod_platform", active=True,
                            type="one_time", currency="jpy", unit_amount=5000),
                PriceMirror(id="price_old", product_id="prod_platform", active=False,
                            type="recurring", currency="usd", unit_amount=40000,
                            interval="month", interval_count=1),
            ]
        )  # fmt: skip
    return create_app(runtime=runtime)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """What the page asked the lifecycle service to do."""
    recorded: list[tuple[str, str, dict[str, Any]]] = []

    def recorder(name: str, result: Any = None) -> Any:
        def action(_runtime: Runtime, object_id: str, **kwargs: Any) -> Any:
            recorded.append((name, object_id, kwargs))
            return result

        return action

    monkeypatch.setattr(catalog_changes, "archive_product", recorder("archive_product"))
    monkeypatch.setattr(catalog_changes, "archive_price", recorder("archive_price"))
    monkeypatch.setattr(catalog_changes, "change_price", recorder("change_price", "price_new"))
    return recorded


def _token(role: str = "finance") -> str:
    secret = TEST_SECRETS["secret_key"].reveal()
    return issue_session_token(secret, Identity(user=USER, role=role, via="launch"))


def _page(app: Flask) -> tuple[str, str]:
    """The catalogue page's HTML and its form's CSRF token."""
    response = app.test_client().get(f"/catalog?t={_token()}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None
    return html, found.group(1)


def _post(app: Flask, path: str, **form: str) -> Any:
    if "csrf" not in form:
        form["csrf"] = _page(app)[1]
    return app.test_client().post(path, data={"t": _token(), **form})


def _message(response: Any) -> str:
    found = re.search(r'id="message">([^<]*)<', response.get_data(as_text=True))
    assert found is not None, response.get_data(as_text=True)
    return found.group(1)


def test_the_catalogue_lists_products_and_prices_with_forms_for_active_ones(app: Flask) -> None:
    html, _ = _page(app)
    assert 'action="/catalog/products/prod_platform/archive"' in html
    assert 'action="/catalog/prices/price_monthly/change"' in html
    assert 'action="/catalog/prices/price_monthly/archive"' in html
    assert "USD 500.00" in html and "JPY 5,000" in html
    # Archived ones are listed, marked, and offer no actions.
    assert "price_old" in html and "prod_legacy" in html
    assert "/catalog/prices/price_old/" not in html
    assert "/catalog/products/prod_legacy/" not in html


def test_the_overview_links_to_the_catalogue(app: Flask) -> None:
    html = app.test_client().get(f"/overview?t={_token()}").get_data(as_text=True)
    assert 'href="/catalog?t=' in html


def test_changing_a_price_sends_the_amount_in_minor_units_and_confirms(
    app: Flask, calls: list[Any]
) -> None:
    response = _post(app, "/catalog/prices/price_monthly/change", amount="999.00", interval="year")
    assert response.status_code == 200
    assert calls == [
        ("change_price", "price_monthly",
         {"unit_amount": 99900, "interval": "year", "interval_count": None, "actor": USER})
    ]  # fmt: skip
    assert "replaced by price_new" in _message(response)
    assert "price_monthly is archived" in _message(response)


def test_a_zero_decimal_currency_amount_is_taken_as_is(app: Flask, calls: list[Any]) -> None:
    response = _post(app, "/catalog/prices/price_setup_jpy/change", amount="6000")
    assert response.status_code == 200
    assert calls[0][2]["unit_amount"] == 6000


def test_a_new_interval_count_alone_keeps_the_amount(app: Flask, calls: list[Any]) -> None:
    _post(app, "/catalog/prices/price_monthly/change", interval_count="3")
    assert calls[0][2] == {"unit_amount": None, "interval": None, "interval_count": 3,
                           "actor": USER}  # fmt: skip


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"amount": "999.999"}, "not a whole number of minor units"),
        ({"amount": "lots"}, "is not a number"),
        ({"amount": "-5"}, "0 or more"),
        ({"interval": "fortnight"}, "day, week, month or year"),
        ({"interval_count": "0"}, "whole number from 1"),
        ({}, "Nothing to change"),
    ],
    ids=["too many decimals", "not a number", "negative", "bad interval", "zero count", "empty"],
)
def test_a_form_that_cannot_be_used_is_explained_on_the_page_and_changes_nothing(
    app: Flask, calls: list[Any], form: dict[str, str], says: str
) -> None:
    response = _post(app, "/catalog/prices/price_monthly/change", **form)
    assert response.status_code == 422
    assert says in _message(response)
    assert 'class="notice bad"' in response.get_data(as_text=True)
    assert calls == []


def test_a_price_not_in_the_catalogue_asks_for_a_refresh(app: Flask, calls: list[Any]) -> None:
    response = _post(app, "/catalog/prices/price_unknown/change", amount="10.00")
    assert response.status_code == 422
    assert "refresh from Stripe" in _message(response)


def test_archiving_a_product_confirms_and_names_the_actor(app: Flask, calls: list[Any]) -> None:
    response = _post(app, "/catalog/products/prod_platform/archive")
    assert response.status_code == 200
    assert calls == [("archive_product", "prod_platform", {"actor": USER})]
    assert "existing subscriptions keep billing" in _message(response)


def test_archiving_a_price_confirms(app: Flask, calls: list[Any]) -> None:
    response = _post(app, "/catalog/prices/price_monthly/archive")
    assert response.status_code == 200
    assert calls == [("archive_price", "price_monthly", {"actor": USER})]
    assert "Price price_monthly is archived" in _message(response)


def test_a_stripe_refusal_is_shown_on_the_page_not_as_an_error_page(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise StripeRefused("Stripe refused to archive the price: No such price")

    monkeypatch.setattr(catalog_changes, "archive_price", refuse)
    response = _post(app, "/catalog/prices/price_monthly/archive")
    assert response.status_code == 502
    assert "No such price" in _message(response)
    assert "Products and prices</h1>" in response.get_data(as_text=True)


def test_a_post_without_the_pages_csrf_token_is_refused(app: Flask, calls: list[Any]) -> None:
    response = _post(app, "/catalog/prices/price_monthly/archive", csrf="forged")
    assert response.status_code == 400
    assert calls == []


def test_a_sales_rep_cannot_archive(app: Flask, calls: list[Any]) -> None:
    response = app.test_client().post(
        "/catalog/products/prod_platform/archive", data={"t": _token("sales_rep")}
    )
    assert response.status_code == 403
    assert "needs the finance role" in response.get_data(as_text=True)
    assert calls == []
