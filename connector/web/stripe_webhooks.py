"""``POST /webhooks/stripe``: verify, store raw in the inbox, answer 200. Nothing else.

The request never processes an event (the worker does, see ``services/inbox.py``), so Stripe
gets its answer fast and a slow CRM never makes Stripe retry.

* The ``Stripe-Signature`` header is checked against the raw body with every configured
  secret, within ``stripe.webhook_tolerance_seconds`` of the runtime's clock
  (``billing/webhook_signature.py``: only the billing layer talks to stripe-python).
* A missing, forged or stale signature is refused (400) before anything is parsed or stored.
* Each event id is stored once: a redelivery, or two deliveries racing each other, hit the
  unique (source, event_id) constraint and are answered 200 as "already received".
* Types dealbridge does not subscribe to are stored with status ``ignored`` (so an operator
  can see what arrived, and replay it should dealbridge learn the type later) and answered
  200 so Stripe stops sending them.
"""

from __future__ import annotations

import logging
from typing import TypeGuard

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.billing.webhook_signature import SignatureRefused, verify_signature
from connector.domain.untrusted_json import UntrustedJsonError, parse_object
from connector.services.inbox import receive_event
from connector.services.reconcile import note_delivery
from connector.web.context import current_runtime
from connector.web.errors import error_response

log = logging.getLogger(__name__)

blueprint = Blueprint("stripe_webhooks", __name__)

SOURCE = "stripe"
MAX_EVENT_ID = 255
MAX_EVENT_TYPE = 100


def _identifier(value: object, longest: int) -> TypeGuard[str]:
    """A Stripe id or type: printable ASCII, no spaces (a NUL would not even store on
    PostgreSQL)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= longest
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _refuse(outcome: str, status: int, code: str, message: str) -> tuple[Response, int]:
    current_runtime().metrics.webhooks.labels(source=SOURCE, outcome=outcome).inc()
    log.warning("stripe webhook refused (%s): %s", code, message)
    return error_response(status, code, message)


@blueprint.post("/webhooks/stripe")
def receive() -> tuple[Response, int]:
    runtime = current_runtime()
    if request.mimetype != "application/json":
        return _refuse(
            "unsupported_media_type",
            415,
            "unsupported_media_type",
            "Stripe webhooks are sent as application/json",
        )
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _refuse(
            "too_large",
            413,
            "payload_too_large",
            f"the body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes",
        )
    secrets = runtime.config.secrets.stripe_webhook_secrets
    if not secrets:
        # Not a 4xx: Stripe retries a 5xx, so nothing is lost once the secret is set.
        return _refuse(
            "not_configured",
            503,
            "webhook_secret_not_configured",
            "STRIPE_WEBHOOK_SECRET is not set; this endpoint cannot verify events yet",
        )
    try:
        payload = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse("malformed", 400, "malformed_body", "the body is not UTF-8 text")
    try:
        verify_signature(
            payload,
            request.headers.get("Stripe-Signature"),
            secrets,
            tolerance_seconds=int(runtime.config.section("stripe")["webhook_tolerance_seconds"]),
            now=runtime.clock(),
        )
    except SignatureRefused as refused:
        return _refuse("bad_signature", 400, refused.code, refused.message)
    try:
        event = parse_object(payload)
    except UntrustedJsonError as bad:
        return _refuse("malformed", 400, bad.code, bad.reason)
    event_id, event_type = event.get("id"), event.get("type")
    if not _identifier(event_id, MAX_EVENT_ID):
        return _refuse("malformed", 400, "missing_id", "the event has no valid `id`")
    if not _identifier(event_type, MAX_EVENT_TYPE):
        return _refuse("malformed", 400, "missing_type", "the event has no valid `type`")

    outcome = receive_event(
        runtime,
        SOURCE,
        event_id,
        event_type,
        payload,
        handled=event_type in HANDLED_STRIPE_EVENTS,
    )
    if outcome == "stored":
        # A late (retried) delivery means the endpoint was failing: catch up with Stripe now.
        note_delivery(runtime, event.get("created"), runtime.clock())
    runtime.metrics.webhooks.labels(source=SOURCE, outcome=outcome).inc()
    log.info("stripe event %s (%s): %s", event_id, event_type, outcome)
    return jsonify({"received": True, "id": event_id, "outcome": outcome}), 200
