"""Salesforce REST error responses: ``[{"message": ..., "errorCode": ..., "fields": [...]}]``.

Handlers raise :class:`ApiError`; the WSGI layer turns it into the status and JSON body
Salesforce sends. sObject Collections report per-record errors with ``statusCode`` instead of
``errorCode``; :meth:`ApiError.as_record_errors` gives that shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ApiError(Exception):
    """One failed REST call: an HTTP status and one or more Salesforce errors."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        fields: Sequence[str] | None = None,
        *,
        extra: list[dict[str, Any]] | None = None,
        raw_body: Any = None,
    ) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = list(fields) if fields is not None else None
        self.extra = extra or []
        self.raw_body = raw_body

    def body(self) -> Any:
        if self.raw_body is not None:
            return self.raw_body
        error: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error, *self.extra]

    def as_record_errors(self) -> list[dict[str, Any]]:
        """The error in sObject Collections' per-record form."""
        return [
            {
                "statusCode": self.error_code,
                "message": self.message,
                "fields": self.fields or [],
            }
        ]


def invalid_field(message: str) -> ApiError:
    return ApiError(400, "INVALID_FIELD", message)


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def not_found_sobject(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"The requested resource does not exist: {name}")


def json_parser_error(message: str) -> ApiError:
    return ApiError(400, "JSON_PARSER_ERROR", message)


def malformed_query(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_QUERY", message)


def invalid_type(sobject: str) -> ApiError:
    return ApiError(
        400,
        "INVALID_TYPE",
        f"sObject type '{sobject}' is not supported. If you are attempting to use a custom "
        "object, be sure to append the '__c' after the entity name. Please reference your "
        "WSDL or the describe call for the appropriate names.",
    )


def invalid_session() -> ApiError:
    return ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def request_limit_exceeded() -> ApiError:
    return ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
