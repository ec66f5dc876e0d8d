"""The admin's page and JSON API: the queues, imports from Stripe, retention and the audit log.

Admin only (finance and reps get 403, no sign-in 401, as everywhere: ``auth.require``).
Every action writes an audit row with the signed-in user, their role, what was asked and
what came of it (``services/admin.py``), refusals included. Nothing long runs in a request:
an import is queued for the worker (``services/admin_import.py``) and answered with 202
and the URL of its progress. Forms carry the CSRF token; the API takes a bearer token (or a
session with the ``X-CSRF-Token`` header).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, make_response, render_template, request

from connector.jobs import housekeeping
from connector.runtime import Runtime
from connector.services import admin, admin_import
from connector.services.import_run import PHASES
from connector.web.auth import (
    check_form_csrf,
    csrf_token,
    current_identity,
    require,
    secret_key,
)
from connector.web.context import current_runtime
from connector.web.errors import ApiError

blueprint = Blueprint("admin", __name__)

MAX_PAGE = 200
PAGE_ROWS = 50


def _runtime() -> Runtime:
    return current_runtime()


def _actor() -> admin.Actor:
    identity = current_identity()
    assert identity is not None  # require() ran first
    return admin.Actor(identity.user, identity.role)


def _whole(name: str, default: int, *, low: int, high: int | None = None) -> int:
    """A whole-number query parameter in range, or a 422 that names it."""
    text = request.args.get(name)
    if text is None or text == "":
        return default
    number = int(text) if text.isascii() and text.isdigit() else -1
    if number < low or (high is not None and number > high):
        upper = f" to {high}" if high is not None else " or more"
        raise ApiError(422, "invalid", f"{name} must be a whole number from {low}{upper}.")
    return number


def _paging() -> tuple[int, int]:
    return _whole("limit", PAGE_ROWS, low=1, high=MAX_PAGE), _whole("offset", 0, low=0)


def _row_id(text: str, what: str) -> int:
    """A row id from the path: anything but a whole number names no row, so it is a 404."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(404, "not_found", f"There is no {what} with id {text[:40]!r}.")
    return int(text)


def _answer(outcome: admin.Outcome) -> tuple[Response, int]:
    if outcome.status >= 400:
        code = {404: "not_found", 409: "not_allowed_now"}.get(outcome.status, "refused")
        raise ApiError(outcome.status, code, outcome.message, outcome=outcome.outcome)
    body: dict[str, Any] = {"outcome": outcome.outcome, "message": outcome.message}
    if outcome.subject is not None:
        body["subject"] = outcome.subject
    return jsonify(body), outcome.status


def _replay(event_id: str) -> admin.Outcome:
    try:
        number = _row_id(event_id, "inbox event")
    except ApiError as exc:
        admin.record_alone(_runtime(), _actor(), "admin.inbox.replay", "inbox_event",
                           event_id[:200], admin.NOT_FOUND, reason=exc.message)  # fmt: skip
        raise
    return admin.replay_event(_runtime(), _actor(), number)


def _retry(message_id: str) -> admin.Outcome:
    try:
        number = _row_id(message_id, "outbox message")
    except ApiError as exc:
        admin.record_alone(_runtime(), _actor(), "admin.outbox.retry", "outbox_message",
                           message_id[:200], admin.NOT_FOUND, reason=exc.message)  # fmt: skip
        raise
    return admin.retry_message(_runtime(), _actor(), number)


def _start_import(body: dict[str, Any]) -> admin_import.Queued:
    try:
        options = admin_import.parse_options(body)
    except admin_import.BadImportRequest as exc:
        admin.record_alone(_runtime(), _actor(), "admin.import.start", "import", "-",
                           admin.REFUSED, reason=str(exc))  # fmt: skip
        raise ApiError(422, "invalid", str(exc)) from exc
    return admin_import.queue_import(_runtime(), _actor(), options)


def _retention_json(r: housekeeping.Retention) -> dict[str, Any]:
    return {
        "retention_days": r.days,
        "cutoff": r.cutoff.isoformat(),
        "prunable": {"inbox_events": r.inbox_prunable, "outbox_messages": r.outbox_prunable},
        "what_is_pruned": "Inbox events done or ignored, and outbox messages delivered, "
        "longer ago than the cutoff; failed, parked and pending rows are never pruned.",
    }


def _prune() -> dict[str, int]:
    runtime = _runtime()
    removed = {
        "inbox_events": housekeeping.prune_inbox(runtime),
        "outbox_messages": housekeeping.prune_outbox(runtime),
    }
    days = int(runtime.config.section("jobs")["retention_days"])
    admin.record_alone(runtime, _actor(), "admin.retention.prune", "retention", "inbox+outbox",
                       "pruned", removed=removed, retention_days=days)  # fmt: skip
    return removed


# --------------------------------------------------------------------------- API


@blueprint.get("/api/admin/inbox")
@require("admin")
def api_inbox() -> Response:
    limit, offset = _paging()
    with _runtime().db.session() as session:
        return jsonify(admin.failing_events(session, limit=limit, offset=offset).as_json())


@blueprint.get("/api/admin/outbox")
@require("admin")
def api_outbox() -> Response:
    limit, offset = _paging()
    with _runtime().db.session() as session:
        return jsonify(admin.failing_messages(session, limit=limit, offset=offset).as_json())


@blueprint.post("/api/admin/inbox/<event_id>/replay")
@require("admin")
def api_replay(event_id: str) -> tuple[Response, int]:
    return _answer(_replay(event_id))


@blueprint.post("/api/admin/outbox/<message_id>/retry")
@require("admin")
def api_retry(message_id: str) -> tuple[Response, int]:
    return _answer(_retry(message_id))


@blueprint.post("/api/admin/imports")
@require("admin")
def api_start_import() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        raise ApiError(422, "invalid", "The body must be a JSON object of import options.")
    if body is not None and not isinstance(body, dict):
        raise ApiError(422, "invalid", "The body must be a JSON object of import options.")
    queued = _start_import(body or {})
    with _runtime().db.session() as session:
        status = admin_import.get_import(session, queued.message_id)
    return jsonify(
        {
            "outcome": "queued" if queued.created else "already_queued",
            "message": "The import is queued; the worker runs it."
            if queued.created
            else "An import is already waiting or running; this is it.",
            "import": status,
            "status_url": f"/api/admin/imports/{queued.message_id}",
        }
    ), 202 if queued.created else 200


@blueprint.get("/api/admin/imports")
@require("admin")
def api_imports() -> Response:
    limit = _whole("limit", 10, low=1, high=MAX_PAGE)
    with _runtime().db.session() as session:
        return jsonify({"items": admin_import.list_imports(session, limit=limit)})


@blueprint.get("/api/admin/imports/<import_id>")
@require("admin")
def api_import(import_id: str) -> Response:
    number = _row_id(import_id, "import")
    with _runtime().db.session() as session:
        found = admin_import.get_import(session, number)
    if found is None:
        raise ApiError(404, "not_found", f"There is no import with id {number}.")
    return jsonify(found)


@blueprint.get("/api/admin/retention")
@require("admin")
def api_retention() -> Response:
    return jsonify(_retention_json(housekeeping.retention(_runtime())))


@blueprint.post("/api/admin/retention/prune")
@require("admin")
def api_prune() -> Response:
    removed = _prune()
    return jsonify({"outcome": "pruned", "removed": removed,
                    **_retention_json(housekeeping.retention(_runtime()))})  # fmt: skip


@blueprint.get("/api/admin/audit")
@require("admin")
def api_audit() -> Response:
    limit, offset = _paging()
    action = request.args.get("action") or None
    with _runtime().db.session() as session:
        page = admin.audit_log(session, limit=limit, offset=offset, action=action)
    return jsonify(page.as_json())


# --------------------------------------------------------------------------- page


def _render(message: str | None = None, status: int = 200) -> Response:
    identity = current_identity()
    assert identity is not None
    runtime = _runtime()
    inbox_offset = _whole("inbox_offset", 0, low=0)
    outbox_offset = _whole("outbox_offset", 0, low=0)
    with runtime.db.session() as session:
        events = admin.failing_events(session, limit=PAGE_ROWS, offset=inbox_offset)
        messages = admin.failing_messages(session, limit=PAGE_ROWS, offset=outbox_offset)
        imports = admin_import.list_imports(session, limit=5)
        audit_rows = admin.audit_log(session, limit=20, offset=0, action="admin.")
    html = render_template(
        "admin.html",
        events=events,
        messages=messages,
        imports=imports,
        audit=audit_rows,
        retention=housekeeping.retention(runtime),
        phases=PHASES,
        message=message,
        bad=status >= 400,
        token=request.args.get("t") or request.form.get("t"),
        csrf=csrf_token(secret_key(), identity),
        identity=identity,
    )
    return make_response(html, status)


def _page_outcome(outcome: admin.Outcome) -> Response:
    return _render(outcome.message, 200 if outcome.status < 400 else outcome.status)


@blueprint.get("/admin")
@require("admin")
def admin_page() -> Response:
    return _render()


@blueprint.post("/admin/inbox/<event_id>/replay")
@require("admin")
def page_replay(event_id: str) -> Response:
    check_form_csrf()
    try:
        return _page_outcome(_replay(event_id))
    except ApiError as exc:
        return _render(exc.message, exc.status)


@blueprint.post("/admin/outbox/<message_id>/retry")
@require("admin")
def page_retry(message_id: str) -> Response:
    check_form_csrf()
    try:
        return _page_outcome(_retry(message_id))
    except ApiError as exc:
        return _render(exc.message, exc.status)


@blueprint.post("/admin/imports")
@require("admin")
def page_start_import() -> Response:
    check_form_csrf()
    body: dict[str, Any] = {
        "phases": request.form.getlist("phases"),  # none ticked: refused, not "all"
        "dry_run": request.form.get("dry_run") == "1",
    }
    limit = request.form.get("limit", "").strip()
    if limit:
        body["limit"] = int(limit) if limit.isascii() and limit.isdigit() else limit
    try:
        queued = _start_import(body)
    except ApiError as exc:
        return _render(exc.message, exc.status)
    if queued.created:
        return _render(f"Import {queued.message_id} is queued; the worker runs it. Reload this "
                       "page to follow its progress.")  # fmt: skip
    return _render(f"Import {queued.message_id} is already waiting or running; no second one "
                   "was queued.")  # fmt: skip


@blueprint.post("/admin/retention/prune")
@require("admin")
def page_prune() -> Response:
    check_form_csrf()
    removed = _prune()
    return _render(
        f"Pruned {removed['inbox_events']} inbox events and {removed['outbox_messages']} "
        "outbox messages older than the retention period."
    )
