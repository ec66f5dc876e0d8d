"""Is this webhook body from Stripe? The ``Stripe-Signature`` check, with our own clock.

The signature is checked against the raw body with every configured secret
(``STRIPE_WEBHOOK_SECRET`` may list several while rotating), by stripe-python's
``WebhookSignature.verify_header``. stripe-python compares the signed timestamp with the wall
clock and offers no clock to inject, so it gets no tolerance and the age is checked here
against the caller's clock -- the same rule, testable with a frozen clock, and also refusing
timestamps that far in the future.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import stripe

from connector.secrets import Secret

#: Longer than any header Stripe sends (a timestamp and a few 64-hex-digit signatures).
MAX_HEADER_CHARS = 2048


class SignatureRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _signed_timestamp(header: str) -> int:
    """The timestamp stripe-python's ``verify_header`` checked the signature with.

    Parsed exactly as stripe-python parses it (the first item whose key is exactly ``t``,
    no whitespace stripped): a lenient parse could read a second, fresher ``t`` that the
    signature does not cover and let an old signed event pass the age check.
    """
    items = [item.split("=", 2) for item in header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


def verify_signature(
    payload: str,
    header: str | None,
    secrets: Sequence[Secret],
    *,
    tolerance_seconds: int,
    now: datetime,
) -> None:
    """Raise SignatureRefused unless one secret signed ``payload`` within the tolerance."""
    if not header:
        raise SignatureRefused("missing_signature", "the Stripe-Signature header is missing")
    if not header.isascii() or len(header) > MAX_HEADER_CHARS:
        # stripe-python compares str digests with hmac.compare_digest, which raises TypeError
        # (not SignatureVerificationError) for non-ASCII text; Stripe never sends any.
        raise SignatureRefused(
            "invalid_signature",
            "the Stripe-Signature header is not a Stripe signature (non-ASCII or oversized)",
        )
    verified = False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret.reveal(), tolerance=None)
        except (stripe.SignatureVerificationError, TypeError, ValueError):
            continue
        verified = True
        break
    if not verified:
        raise SignatureRefused(
            "invalid_signature",
            "the Stripe-Signature header does not match the body for any configured secret",
        )
    timestamp = _signed_timestamp(header)  # parsed fine, or verify_header would have refused
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise SignatureRefused(
            "stale_signature",
            f"the signature's timestamp is more than {tolerance_seconds} seconds from now",
        )
