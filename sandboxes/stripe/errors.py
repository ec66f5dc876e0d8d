"""Stripe's error envelope: ``{"error": {"type", "code", "param", "message", "doc_url"}}``."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class StripeError(Exception):
    """An API error, rendered exactly like Stripe's v1 error responses."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        extra: JSON | None = None,
        headers: dict[str, str] | None = None,
        rollback: bool | None = None,
    ) -> None:
        super().__init__(message)
        #: Whether the request's effects are undone: every refusal but a 402 (a declined
        #: payment is part of the invoice's history) unless said otherwise.
        self.rollback = status != 402 if rollback is None else rollback
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> JSON:
        error: JSON = {"message": self.message, "type": self.type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def missing_param(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def unknown_param(param: str) -> StripeError:
    return StripeError(
        400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param
    )


def invalid_param(param: str, message: str, code: str | None = "parameter_invalid") -> StripeError:
    return StripeError(400, message, code=code, param=param)


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A request that is well formed but not allowed in the object's current state."""
    return StripeError(400, message, param=param, code=code)


def no_such(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> StripeError:
    return StripeError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def card_declined(decline_code: str = "generic_decline") -> StripeError:
    messages = {
        "generic_decline": "Your card was declined.",
        "insufficient_funds": "Your card has insufficient funds.",
    }
    return StripeError(
        402,
        messages.get(decline_code, "Your card was declined."),
        type="card_error",
        code="card_declined",
        extra={"decline_code": decline_code},
    )


def rate_limited() -> StripeError:
    return StripeError(
        429,
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
    )


def api_error(status: int = 500) -> StripeError:
    return StripeError(
        status,
        "An unknown error occurred. Please try again later.",
        type="api_error",
        headers={"Stripe-Should-Retry": "true"},
    )


def fault(status: int) -> StripeError:
    """The error Stripe would answer with ``status``, for fault injection."""
    if status == 429:
        return rate_limited()
    if status == 409:
        return StripeError(
            409,
            "This object cannot be accessed right now because another API request or Stripe "
            "process is currently accessing it.",
            code="lock_timeout",
            headers={"Stripe-Should-Retry": "true"},
        )
    if status >= 500:
        return api_error(status)
    if status == 402:
        return card_declined()
    return StripeError(status, "Injected sandbox fault.")
