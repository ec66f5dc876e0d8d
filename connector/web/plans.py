"""The review page (embedded in the CRM) and the JSON API for plans: thin over services."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers.response import Response as WerkzeugResponse

from connector.billing.gateway import StripeGatewayError
from connector.crm.base import CrmError
from connector.domain.adjustments import (
    BILLING_CHOICES,
    ONE_TIME,
    billing_choice_of,
    changes_for_billing_choice,
)
from connector.domain.deal import Problem
from connector.domain.money import format_money
from connector.domain.plan import InvalidOverrides
from connector.domain.plan_status import Status
from connector.domain.timestamps import date_from_unix
from connector.services import deal_changes, invoice_preview, linking, plan_intake
from connector.services import plans as plan_service
from connector.services.activation import activate
from connector.services.plans import PlanNotFound, PlanStateError
from connector.store.once import use_once
from connector.web.auth import (
    SESSION_COOKIE,
    Identity,
    LinkRefused,
    check_form_csrf,
    check_launch_window,
    csrf_token,
    current_identity,
    issue_session_token,
    launch_signature,
    require,
    same_secret,
    secret_key,
)
from connector.web.context import current_runtime
from connector.web.errors import ApiError

blueprint = Blueprint("plans", __name__)


def _runtime() -> Any:
    return current_runtime()


def _view(plan_id: str) -> dict[str, Any]:
    runtime = _runtime()
    with runtime.db.session() as session:
        try:
            row = plan_service.get_plan(session, plan_id)
        except PlanNotFound as exc:
            raise ApiError(404, "not_found", f"No plan {plan_id}.") from exc
        return plan_service.plan_view(runtime, row)


def _plan_id_for_deal(deal_id: str, *, refresh: bool) -> str:
    runtime = _runtime()
    if refresh:
        try:
            crm_deal = runtime.crm.get_deal(deal_id)
        except CrmError as exc:
            raise ApiError(502 if exc.retryable else 404, "crm_error", str(exc)) from exc
        if not crm_deal.closed:
            raise ApiError(
                409, "deal_not_closed", "The deal is not closed yet; plans start at closing."
            )
        try:
            plan_intake.intake_deal(runtime, crm_deal, actor=_actor())
        except StripeGatewayError as exc:
            raise ApiError(
                503, "stripe_unavailable", f"Stripe could not be reached: {exc}"
            ) from exc
    with runtime.db.session() as session:
        row = plan_service.plan_for_deal(session, deal_id)
        if row is None:
            raise ApiError(404, "not_found", f"No plan for deal {deal_id} yet.")
        return row.id


def _actor() -> str:
    identity = current_identity()
    return identity.user if identity else "anonymous"


# --------------------------------------------------------------------------- API


@blueprint.get("/api/deals/<deal_id>/plan")
@require("sales_rep")
def api_deal_plan(deal_id: str) -> Response:
    return jsonify(_view(_plan_id_for_deal(deal_id, refresh=False)))


@blueprint.post("/api/deals/<deal_id>/plan")
@require("sales_rep")
def api_refresh_deal_plan(deal_id: str) -> Response:
    """Read the deal from the CRM now (a CRM button), suggesting or refreshing its plan."""
    return jsonify(_view(_plan_id_for_deal(deal_id, refresh=True)))


@blueprint.get("/api/plans/<plan_id>")
@require("sales_rep")
def api_plan(plan_id: str) -> Response:
    return jsonify(_view(plan_id))


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Send a JSON object.")
    return body


@blueprint.post("/api/plans/<plan_id>/adjust")
@require("sales_rep")
def api_adjust(plan_id: str) -> Response:
    _do_adjust(plan_id, _json_body())
    return jsonify(_view(plan_id))


@blueprint.get("/api/plans/<plan_id>/first-invoice")
@require("sales_rep")
def api_first_invoice(plan_id: str) -> Response:
    """The plan's first invoice from Stripe: previewed before activation, as created after
    (the review page's table). ``available`` is false, with the ``reason``, when there is
    none to show yet; amounts are minor units, dates ``YYYY-MM-DD``."""
    _view(plan_id)  # 404 for an unknown plan
    first = invoice_preview.first_invoice(_runtime(), plan_id)
    if isinstance(first, invoice_preview.Unavailable):
        return jsonify({"available": False, "reason": first.reason})
    return jsonify({"available": True, **invoice_preview.to_json(first)})


@blueprint.post("/api/plans/<plan_id>/customer")
@require("sales_rep")
def api_choose_customer(plan_id: str) -> Response:
    customer_id = _json_body().get("customer_id")
    if not isinstance(customer_id, str):
        raise ApiError(422, "invalid", "customer_id is required.")
    _guard(lambda: plan_service.choose_customer(_runtime(), plan_id, customer_id, actor=_actor()))
    return jsonify(_view(plan_id))


@blueprint.post("/api/plans/<plan_id>/activate")
@require("sales_rep")
def api_activate(plan_id: str) -> tuple[Response, int]:
    """200: activated (or scheduled, or retrying); 202: approved but waiting on credit -- the
    plan activates by itself once the hold is lifted or the exposure fits the limit, and
    ``status_reason`` says why it waits. A plan already waiting answers 409 with the reason."""
    _do_activate(plan_id)
    view = _view(plan_id)
    return jsonify(view), 202 if view["status"] == Status.AWAITING_CREDIT else 200


@blueprint.post("/api/plans/<plan_id>/manual")
@require("sales_rep")
def api_manual(plan_id: str) -> Response:
    _guard(lambda: plan_service.mark_manual(_runtime(), plan_id, actor=_actor()))
    return jsonify(_view(plan_id))


@blueprint.post("/api/plans/<plan_id>/manual/undo")
@require("sales_rep")
def api_undo_manual(plan_id: str) -> Response:
    """Back to review from manual invoicing; 409 once an invoice was sent by hand."""
    _guard(lambda: plan_service.undo_manual(_runtime(), plan_id, actor=_actor()))
    return jsonify(_view(plan_id))


def _guard(action: Any) -> Any:
    try:
        return action()
    except PlanNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except PlanStateError as exc:
        raise ApiError(409, "not_allowed_now", str(exc)) from exc
    except InvalidOverrides as exc:
        raise ApiError(
            422,
            "invalid_adjustment",
            "Some changes are not valid.",
            problems=[{"field": p.field, "message": p.message} for p in exc.problems],
        ) from exc


def _do_adjust(plan_id: str, changes: dict[str, Any]) -> None:
    _guard(lambda: plan_service.adjust(_runtime(), plan_id, changes, actor=_actor()))


def _do_activate(plan_id: str) -> None:
    runtime = _runtime()
    _guard(lambda: linking.ensure_customer(runtime, plan_id))
    _guard(lambda: plan_service.approve(runtime, plan_id, actor=_actor()))
    activate(runtime, plan_id)


# --------------------------------------------------------------------------- pages


@blueprint.get("/launch")
def launch() -> Response:
    """Verify a signed launch link from the CRM and open the deal's review page."""
    args = request.args
    deal, user, role = args.get("deal", ""), args.get("user", ""), args.get("role", "sales_rep")
    try:
        exp = int(args.get("exp", "0"))
    except ValueError:
        exp = 0
    expected = launch_signature(secret_key(), deal, user, role, exp, args.get("nonce", ""))
    runtime = _runtime()
    now = runtime.clock()
    ttl = int(runtime.config.section("web")["launch_link_ttl_seconds"])
    try:
        if (
            not deal
            or not user
            or role not in ("sales_rep", "finance", "admin")
            or not same_secret(args.get("sig", ""), expected)
        ):
            raise LinkRefused("invalid")
        check_launch_window(exp, now=now.timestamp(), ttl_seconds=ttl)
        if not use_once(
            runtime.db, "launch", expected, now=now, expires=datetime.fromtimestamp(exp, UTC)
        ):
            # A reload or a double click by the browser the link already signed in: it
            # keeps the session it has; anyone else is refused.
            current = current_identity()
            if current is None or (current.user, current.role, current.deal) != (user, role, deal):
                raise LinkRefused("already used")
            return make_response(redirect(url_for("plans.deal_page", deal_id=deal)))
    except LinkRefused as refused:
        raise ApiError(
            401,
            "bad_launch_link",
            "This link is invalid, has expired or was already used; open it from the CRM again.",
            reason=str(refused),
        ) from refused
    token = issue_session_token(
        secret_key(), Identity(user=user, role=role, via="launch", deal=deal)
    )
    response = make_response(redirect(url_for("plans.deal_page", deal_id=deal, t=token)))
    secure = request.is_secure
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=secure,
        samesite="None" if secure else "Lax",
        max_age=_runtime().config.section("web")["launch_link_ttl_seconds"],
    )
    return response


@blueprint.get("/deals/<deal_id>/plan")
@require("sales_rep")
def deal_page(deal_id: str) -> WerkzeugResponse:
    try:
        plan_id = _plan_id_for_deal(deal_id, refresh=False)
    except ApiError as exc:
        if exc.status != 404:
            raise
        plan_id = _plan_id_for_deal(deal_id, refresh=True)
    return redirect(url_for("plans.plan_page", plan_id=plan_id, t=_token_param()))


def _token_param() -> str | None:
    return request.args.get("t") or request.form.get("t")


@blueprint.get("/plans/<plan_id>")
@require("sales_rep")
def plan_page(plan_id: str) -> Response:
    return _render(plan_id)


def _render(
    plan_id: str,
    *,
    message: str | None = None,
    problems: list[dict[str, str]] | None = None,
    status: int = 200,
    confirm_manual: bool = False,
) -> Response:
    identity = current_identity()
    assert identity is not None
    view = _view(plan_id)
    manual_sent: list[str] = []
    first = invoice_preview.first_invoice(_runtime(), plan_id) if view["plan"] else None
    if view["status"] == Status.MANUAL:
        try:
            manual_sent = plan_service.manual_invoices_sent(_runtime(), plan_id)
        except StripeGatewayError:
            manual_sent = []  # the undo itself asks Stripe again and says why it cannot
    html = render_template(
        "plan.html",
        view=view,
        message=message,
        problems=problems or [],
        token=_token_param(),
        csrf=csrf_token(secret_key(), identity),
        identity=identity,
        confirm_manual=confirm_manual,
        manual_sent=manual_sent,
        first_invoice=first,
        money=format_money,
        billing_choices=BILLING_CHOICES,
        billing_choice=(
            billing_choice_of(
                view["plan"]["invoice_type"],
                view["plan"]["interval"],
                view["plan"]["interval_count"],
            )
            if view["plan"]
            else ONE_TIME
        ),
    )
    return make_response(html, status)


def _form_overrides() -> dict[str, Any]:
    """The form's fields as overrides. "How is it billed?" is one choice standing for the
    invoice type or the frequency, never both, and the send date goes only with a one-time
    bill: the form cannot post a contradiction, whatever was preselected."""
    form = request.form
    changes: dict[str, Any] = {}
    billing = form.get("billing", "")
    chosen = changes_for_billing_choice(billing)
    if chosen is None and billing:
        raise InvalidOverrides([Problem("billing", f"{billing!r} is not one of the choices")])
    changes.update(chosen or {})
    methods = form.getlist("payment_method_types")
    if methods:
        expanded: list[str] = []
        for method in methods:
            expanded.extend(method.split(","))
        changes["payment_method_types"] = expanded
    if form.get("days_until_due", "") != "":
        raw = form["days_until_due"]
        changes["days_until_due"] = int(raw) if raw.lstrip("-").isdigit() else raw
    if form.get("start_date"):
        changes["start_date"] = form["start_date"]
    if form.get("send_date") and billing == ONE_TIME:
        changes["send_date"] = form["send_date"]
    confirmed = form.getlist("confirmed")
    if confirmed:
        changes["confirmed"] = confirmed
    for key in ("change", "proration_behavior"):  # amendments (plan_change_kind.html)
        if form.get(key):
            changes[key] = form[key]
    if form.get("cancel_when") == "now":
        # At period end is the default: not posted as a choice, so switching the deal to
        # another kind in the same form is not refused for it.
        changes["cancel_when"] = "now"
        if form.get("cancel_credit"):
            changes["cancel_credit"] = form["cancel_credit"]
    return changes


@blueprint.post("/plans/<plan_id>/adjust")
@require("sales_rep")
def page_adjust(plan_id: str) -> Response:
    check_form_csrf()
    try:
        _do_adjust(plan_id, _guard(_form_overrides))
    except ApiError as exc:
        problems = exc.details.get("problems")
        return _render(
            plan_id,
            message=exc.message,
            problems=problems if isinstance(problems, list) else None,
            status=exc.status,
        )
    return _render(plan_id, message="Changes saved. Check the summary, then activate.")


@blueprint.post("/plans/<plan_id>/activate")
@require("sales_rep")
def page_activate(plan_id: str) -> Response:
    check_form_csrf()
    try:
        _do_activate(plan_id)
    except ApiError as exc:
        return _render(plan_id, message=exc.message, status=exc.status)
    view = _view(plan_id)
    if view["status"] == Status.ACTIVE:
        return _render(plan_id, message="Activated in Stripe.")
    return _render(plan_id, message=view["status_reason"] or view["status_label"])


@blueprint.get("/plans/<plan_id>/manual")
@require("sales_rep")
def page_confirm_manual(plan_id: str) -> Response:
    """What manual invoicing means, with the button that confirms it (nothing changes yet)."""
    return _render(plan_id, confirm_manual=True)


@blueprint.post("/plans/<plan_id>/manual")
@require("sales_rep")
def page_manual(plan_id: str) -> Response:
    check_form_csrf()
    if request.form.get("confirm") != "yes":
        return _render(plan_id, confirm_manual=True)
    try:
        _guard(lambda: plan_service.mark_manual(_runtime(), plan_id, actor=_actor()))
    except ApiError as exc:
        return _render(plan_id, message=exc.message, status=exc.status)
    return _render(
        plan_id,
        message="Manual invoicing: nothing was created in Stripe. Invoice the customer from "
        "their Stripe page; you can undo this until an invoice is sent.",
    )


@blueprint.post("/plans/<plan_id>/manual/undo")
@require("sales_rep")
def page_undo_manual(plan_id: str) -> Response:
    check_form_csrf()
    try:
        _guard(lambda: plan_service.undo_manual(_runtime(), plan_id, actor=_actor()))
    except ApiError as exc:
        return _render(plan_id, message=exc.message, status=exc.status)
    return _render(plan_id, message="Back in review: nothing was sent. Check, then activate.")


@blueprint.post("/api/plans/<plan_id>/changed/<action>")
@require("sales_rep")
def api_changed_after_activation(plan_id: str, action: str) -> Response:
    """A deal changed after activation: ``ignore`` it or ``amend`` the subscription (a rep);
    ``cancel`` goes through ``/cancel`` (finance)."""
    if action not in ("ignore", "amend"):
        raise ApiError(404, "not_found", f"No action {action!r}; use ignore or amend.")
    _guard(lambda: deal_changes.act(_runtime(), plan_id, action, actor=_actor()))
    return jsonify(_view(plan_id))


@blueprint.post("/api/plans/<plan_id>/changed/cancel")
@require("finance")
def api_changed_cancel(plan_id: str) -> Response:
    _guard(lambda: deal_changes.act(_runtime(), plan_id, "cancel", actor=_actor()))
    return jsonify(_view(plan_id))


@blueprint.post("/plans/<plan_id>/changed/<action>")
@require("sales_rep")
def page_changed_after_activation(plan_id: str, action: str) -> Response:
    check_form_csrf()
    identity = current_identity()
    if action == "cancel" and (identity is None or not identity.has("finance")):
        return _render(plan_id, message="Canceling the subscription needs the finance role.")
    try:
        _guard(lambda: deal_changes.act(_runtime(), plan_id, action, actor=_actor()))
    except ApiError as exc:
        return _render(plan_id, message=exc.message, status=exc.status)
    done = {
        "ignore": "The change is noted; Stripe stays as it is.",
        "cancel": "The subscription ends at the end of its current period.",
        "amend": "Review the change to the subscription below, then activate it.",
    }
    return _render(plan_id, message=done.get(action, "Done."))


@blueprint.post("/plans/<plan_id>/customer")
@require("sales_rep")
def page_choose_customer(plan_id: str) -> Response:
    check_form_csrf()
    customer_id = request.form.get("customer_id", "")
    try:
        _guard(
            lambda: plan_service.choose_customer(_runtime(), plan_id, customer_id, actor=_actor())
        )
    except ApiError as exc:
        return _render(plan_id, message=exc.message, status=exc.status)
    return _render(plan_id, message="Customer linked.")


@blueprint.app_template_filter("unix_date")
def _unix_date(value: Any) -> str:
    """A Stripe timestamp as the date a person reads (``2026-12-06``), not seconds."""
    try:
        day = date_from_unix(value)
    except (TypeError, ValueError):
        return ""
    return day.isoformat() if day else ""


@blueprint.after_app_request
def _frame_policy(response: Response) -> Response:
    """Only the configured CRM origins may frame our pages; nobody else can clickjack them."""
    if response.mimetype == "text/html":
        origins = " ".join(_runtime().config.section("web")["frame_ancestors"])
        response.headers["Content-Security-Policy"] = (
            f"frame-ancestors 'self' {origins}".strip() + "; default-src 'self'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
    return response
