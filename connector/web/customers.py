"""A customer's subscriptions and the lifecycle actions on them: page, forms and JSON API.

Finance (and admin) only; every action is audited by the service and refused on a held
account when it would bill. Forms carry the CSRF token; the API takes a bearer token.

The catalogue page (``/catalog``, linked from the overview and each customer page) lists
the products and prices of dealbridge's catalogue mirror, with forms to archive a product
or a price and to change a price's amount or interval (a new price, the old archived).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, make_response, render_template, request
from sqlalchemy import select

from connector.billing.gateway import StripeGatewayError
from connector.domain.money import format_money, from_minor_units, to_minor_units
from connector.runtime import Runtime
from connector.services import (
    bill_again,
    cancel_now,
    catalog_changes,
    subscription_changes,
    subscription_listing,
)
from connector.services.catalog_mirror import refresh_catalog
from connector.services.lifecycle_operations import LifecycleError, OnCreditHold
from connector.store.models import PriceMirror, ProductMirror
from connector.web.auth import (
    check_form_csrf,
    csrf_token,
    current_identity,
    require,
    secret_key,
)
from connector.web.context import current_runtime
from connector.web.errors import ApiError

blueprint = Blueprint("customers", __name__)


def _runtime() -> Runtime:
    return current_runtime()


def _actor() -> str:
    identity = current_identity()
    return identity.user if identity else "anonymous"


def _guard(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except LifecycleError as exc:
        code = {404: "not_found", 502: "stripe_error"}.get(exc.status, "not_allowed_now")
        if isinstance(exc, OnCreditHold):
            code = "credit_hold"
        raise ApiError(exc.status, code, str(exc)) from exc


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


# --------------------------------------------------------------------------- API


@blueprint.get("/api/customers/<customer_id>/subscriptions")
@require("finance")
def api_subscriptions(customer_id: str) -> Response:
    return jsonify(
        _guard(lambda: subscription_listing.list_subscriptions(_runtime(), customer_id)).as_json()
    )


@blueprint.post("/api/subscriptions/<subscription_id>/cancel")
@require("finance")
def api_cancel(subscription_id: str) -> Response:
    """``{"at_period_end": true}`` or ``{}`` as before; ``{"now": true, "credit": ...}``
    previews cancelling now with a credit note (``confirm`` false, the default), and
    ``{"now": true, "confirm": true, "operation_id": <the preview's>}`` does it, once."""
    body = _json()
    if body.get("now") is True:
        return _api_cancel_now(subscription_id, body)
    at_period_end = bool(body.get("at_period_end"))
    status = _guard(
        lambda: subscription_changes.cancel(
            _runtime(), subscription_id, at_period_end=at_period_end, actor=_actor()
        )
    )
    return jsonify({"subscription_id": subscription_id, "outcome": status})


def _api_cancel_now(subscription_id: str, body: dict[str, Any]) -> Response:
    if body.get("confirm") is True:
        operation_id = body.get("operation_id")
        if not isinstance(operation_id, str) or not operation_id:
            raise ApiError(
                422,
                "invalid",
                "Confirm needs the operation_id of a preview; preview first "
                "(confirm false) and check the amount.",
            )
        outcome, done_now = _guard(
            lambda: cancel_now.confirm(
                _runtime(), operation_id, actor=_actor(), subscription_id=subscription_id
            )
        )
        return jsonify({**outcome.as_json(), "done_by_this_request": done_now})
    if body.get("confirm", False) is not False:
        raise ApiError(422, "invalid", "confirm must be true or false.")
    credit = body.get("credit", "customer_balance")
    if credit not in cancel_now.CREDIT_CHOICES:
        raise ApiError(422, "invalid", "credit must be customer_balance, refund or none.")
    shown = _guard(
        lambda: cancel_now.preview(_runtime(), subscription_id, credit=credit, actor=_actor())
    )
    return jsonify(shown.as_json())


@blueprint.post("/api/subscriptions/<subscription_id>/reactivate")
@require("finance")
def api_reactivate(subscription_id: str) -> Response:
    op = _guard(
        lambda: subscription_changes.reactivate(_runtime(), subscription_id, actor=_actor())
    )
    return jsonify({"operation_id": op.id, "status": op.status, "invoice_id": op.invoice_id})


@blueprint.post("/api/invoices/<invoice_id>/bill-again")
@require("finance")
def api_bill_again(invoice_id: str) -> Response:
    new_id = _guard(lambda: bill_again.bill_again(_runtime(), invoice_id, actor=_actor()))
    return jsonify({"invoice_id": new_id, "billed_again_from": invoice_id})


@blueprint.post("/api/products/<product_id>/archive")
@require("finance")
def api_archive_product(product_id: str) -> Response:
    _guard(lambda: catalog_changes.archive_product(_runtime(), product_id, actor=_actor()))
    return jsonify({"product_id": product_id, "active": False})


@blueprint.post("/api/prices/<price_id>/archive")
@require("finance")
def api_archive_price(price_id: str) -> Response:
    _guard(lambda: catalog_changes.archive_price(_runtime(), price_id, actor=_actor()))
    return jsonify({"price_id": price_id, "active": False})


@blueprint.post("/api/prices/<price_id>/change")
@require("finance")
def api_change_price(price_id: str) -> Response:
    body = _json()
    amount, count = body.get("unit_amount"), body.get("interval_count")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise ApiError(422, "invalid", "unit_amount must be a whole number of minor units.")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise ApiError(422, "invalid", "interval_count must be a whole number.")
    new_id = _guard(
        lambda: catalog_changes.change_price(
            _runtime(), price_id, unit_amount=amount, interval=body.get("interval"),
            interval_count=count, actor=_actor(),
        )
    )  # fmt: skip
    return jsonify({"price_id": new_id, "replaces": price_id})


# --------------------------------------------------------------------------- page


def _render(customer_id: str, message: str | None = None, status: int = 200) -> Response:
    identity = current_identity()
    assert identity is not None
    runtime = _runtime()
    groups = _guard(lambda: subscription_listing.list_subscriptions(runtime, customer_id))
    html = render_template(
        "customer.html",
        groups=groups,
        message=message,
        bad=status >= 400,
        token=request.args.get("t") or request.form.get("t"),
        csrf=csrf_token(secret_key(), identity),
        identity=identity,
        money=format_money,
        crm_url=runtime.crm.record_url("account", groups.crm_account_id),
        stripe_url=runtime.stripe.customer_url(customer_id),
    )
    return make_response(html, status)


@blueprint.get("/customers/<customer_id>")
@require("finance")
def customer_page(customer_id: str) -> Response:
    return _render(customer_id)


def _act(customer_id: str, action: Callable[[], str]) -> Response:
    check_form_csrf()
    return _act_checked(customer_id, action)


@blueprint.post("/customers/<customer_id>/subscriptions/<subscription_id>/cancel")
@require("finance")
def page_cancel(customer_id: str, subscription_id: str) -> Response:
    """``when``: ``period_end``; ``now`` shows the credit to confirm (nothing sent);
    ``confirm`` (with the preview's ``operation_id``) cancels now and issues the credit note."""
    when = request.form.get("when")
    if when in ("now", "confirm"):
        return _page_cancel_now(customer_id, subscription_id, when)
    at_end = when == "period_end"

    def run() -> str:
        subscription_changes.cancel(
            _runtime(), subscription_id, at_period_end=at_end, actor=_actor()
        )
        return (
            f"Subscription {subscription_id} will end at the end of its period."
            if at_end
            else f"Subscription {subscription_id} is canceled."
        )

    return _act(customer_id, run)


def _page_cancel_now(customer_id: str, subscription_id: str, when: str) -> Response:
    check_form_csrf()
    identity = current_identity()
    assert identity is not None
    if when == "confirm":

        def run() -> str:
            outcome, done_now = cancel_now.confirm(
                _runtime(), request.form.get("operation_id", ""), actor=_actor(),
                subscription_id=subscription_id,
            )  # fmt: skip
            note = outcome.figures.get("credit_note_id")
            credited = (
                f" Credit note {note} credits {outcome.figures['credit_amount_text']}."
                if note
                else ""
            )
            again = "" if done_now else " (already done by an earlier confirmation)"
            return f"Subscription {subscription_id} is canceled{again}.{credited}"

        return _act_checked(customer_id, run)
    credit = request.form.get("credit", "customer_balance")
    try:
        shown = _guard(
            lambda: cancel_now.preview(_runtime(), subscription_id, credit=credit, actor=_actor())
        )
    except ApiError as exc:
        if exc.status == 404:
            raise
        return _render(customer_id, exc.message, exc.status)
    html = render_template(
        "cancel_now_confirm.html", p=shown, customer_id=customer_id, identity=identity,
        token=request.args.get("t") or request.form.get("t"),
        csrf=csrf_token(secret_key(), identity), money=format_money,
    )  # fmt: skip
    return make_response(html, 200)


def _act_checked(customer_id: str, action: Callable[[], str]) -> Response:
    """``_act`` for a form whose CSRF token was already checked."""
    try:
        message = _guard(action)
    except ApiError as exc:
        if exc.status == 404:
            raise
        return _render(customer_id, exc.message, exc.status)
    return _render(customer_id, message)


@blueprint.post("/customers/<customer_id>/subscriptions/<subscription_id>/reactivate")
@require("finance")
def page_reactivate(customer_id: str, subscription_id: str) -> Response:
    def run() -> str:
        op = subscription_changes.reactivate(_runtime(), subscription_id, actor=_actor())
        return (
            f"Invoice {op.invoice_id} for the first period was sent; the subscription starts "
            "when it is paid."
        )

    return _act(customer_id, run)


@blueprint.post("/customers/<customer_id>/invoices/<invoice_id>/bill-again")
@require("finance")
def page_bill_again(customer_id: str, invoice_id: str) -> Response:
    def run() -> str:
        new_id = bill_again.bill_again(_runtime(), invoice_id, actor=_actor())
        return f"Invoice {new_id} was sent with the same items."

    return _act(customer_id, run)


# --------------------------------------------------------------------------- catalogue page

INTERVALS = ("day", "week", "month", "year")


def _catalog() -> list[dict[str, Any]]:
    """Products of the catalogue mirror with their prices: active ones first, then by name."""
    with _runtime().db.session() as session:
        products = {p.id: p for p in session.scalars(select(ProductMirror))}
        prices = list(session.scalars(select(PriceMirror)))
        by_product: dict[str, list[dict[str, Any]]] = {}
        for price in prices:
            by_product.setdefault(price.product_id, []).append(
                {"id": price.id, "active": price.active, "type": price.type,
                 "currency": price.currency, "unit_amount": price.unit_amount,
                 "amount": None if price.unit_amount is None
                 else from_minor_units(price.unit_amount, price.currency),
                 "interval": price.interval, "interval_count": price.interval_count}
            )  # fmt: skip
        rows = []
        for product_id in set(products) | set(by_product):
            product = products.get(product_id)
            rows.append(
                {"id": product_id, "name": product.name if product else product_id,
                 "active": product.active if product else True,
                 "prices": sorted(by_product.get(product_id, []),
                                  key=lambda p: (not p["active"], p["id"]))}
            )  # fmt: skip
    return sorted(rows, key=lambda r: (not r["active"], r["name"].lower(), r["id"]))


def _render_catalog(message: str | None = None, status: int = 200) -> Response:
    identity = current_identity()
    assert identity is not None
    html = render_template(
        "catalog.html",
        products=_catalog(),
        message=message,
        bad=status >= 400,
        token=request.args.get("t") or request.form.get("t"),
        csrf=csrf_token(secret_key(), identity),
        identity=identity,
        money=format_money,
        intervals=INTERVALS,
    )
    return make_response(html, status)


@blueprint.get("/catalog")
@require("finance")
def catalog_page() -> Response:
    if request.args.get("refresh") not in ("1", "true", "yes"):
        return _render_catalog()
    try:
        products, prices = refresh_catalog(_runtime())
    except StripeGatewayError as exc:
        return _render_catalog(f"Could not refresh from Stripe: {exc}", 502)
    return _render_catalog(f"Refreshed from Stripe: {products} products, {prices} prices.")


def _catalog_act(action: Callable[[], str]) -> Response:
    """Run a catalogue action (CSRF already checked): the page again, with what happened."""
    try:
        message = _guard(action)
    except ApiError as exc:
        return _render_catalog(exc.message, exc.status)
    return _render_catalog(message)


@blueprint.post("/catalog/products/<product_id>/archive")
@require("finance")
def page_archive_product(product_id: str) -> Response:
    check_form_csrf()

    def run() -> str:
        catalog_changes.archive_product(_runtime(), product_id, actor=_actor())
        return (
            f"Product {product_id} is archived: it can no longer be added to new "
            "subscriptions; existing subscriptions keep billing."
        )

    return _catalog_act(run)


@blueprint.post("/catalog/prices/<price_id>/archive")
@require("finance")
def page_archive_price(price_id: str) -> Response:
    check_form_csrf()

    def run() -> str:
        catalog_changes.archive_price(_runtime(), price_id, actor=_actor())
        return (
            f"Price {price_id} is archived: new subscriptions cannot use it; existing "
            "subscriptions keep billing at it."
        )

    return _catalog_act(run)


class _FormProblem(Exception):
    pass


def _change_form(price_id: str) -> tuple[int | None, str | None, int | None]:
    """The form's amount (in minor units), interval and interval count; blank keeps each."""
    with _runtime().db.session() as session:
        price = session.get(PriceMirror, price_id)
        currency = price.currency if price is not None else None
    amount_text = request.form.get("amount", "").strip().replace(",", "")
    amount: int | None = None
    if amount_text:
        if currency is None:
            raise _FormProblem(
                f"Price {price_id} is not in dealbridge's catalogue yet; refresh from Stripe "
                "and try again."
            )
        try:
            amount = to_minor_units(amount_text, currency)
        except ValueError as exc:
            raise _FormProblem(f"The amount {amount_text!r} cannot be used: {exc}.") from exc
        if amount < 0:
            raise _FormProblem("The amount must be 0 or more.")
    interval = request.form.get("interval", "").strip() or None
    if interval is not None and interval not in INTERVALS:
        raise _FormProblem("The interval must be day, week, month or year.")
    count_text = request.form.get("interval_count", "").strip()
    count: int | None = None
    if count_text:
        if not count_text.isdigit() or int(count_text) < 1:
            raise _FormProblem("Every how many intervals must be a whole number from 1.")
        count = int(count_text)
    if amount is None and interval is None and count is None:
        raise _FormProblem("Nothing to change: give a new amount, interval or interval count.")
    return amount, interval, count


@blueprint.post("/catalog/prices/<price_id>/change")
@require("finance")
def page_change_price(price_id: str) -> Response:
    check_form_csrf()
    try:
        amount, interval, count = _change_form(price_id)
    except _FormProblem as exc:
        return _render_catalog(str(exc), 422)

    def run() -> str:
        new_id = catalog_changes.change_price(
            _runtime(), price_id, unit_amount=amount, interval=interval,
            interval_count=count, actor=_actor(),
        )  # fmt: skip
        return (
            f"Price {price_id} is replaced by {new_id}, which new subscriptions will use; "
            f"{price_id} is archived, and subscriptions already on it keep their price."
        )

    return _catalog_act(run)
