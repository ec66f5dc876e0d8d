"""Errors as JSON for machine clients (API, webhooks); HTML pages render their own."""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal with a status, a stable code and a message a person can act on."""

    def __init__(self, status: int, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(status: int, code: str, message: str, **details: object) -> tuple[Response, int]:
    body: dict[str, object] = {"error": {"code": code, "message": message, **details}}
    return jsonify(body), status


def wants_json() -> bool:
    return (
        request.path.startswith(("/api/", "/webhooks/", "/healthz"))
        or request.accept_mimetypes.best == "application/json"
    )


#: The store could not be reached or stayed locked (PostgreSQL down or failing over, the pool
#: exhausted, SQLite's write lock held past its wait): nothing was written, try again.
STORE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, sqlite3.OperationalError)
#: Seconds a client is asked to wait before retrying when the store is unavailable.
STORE_RETRY_AFTER_SECONDS = 5


def register(app: Flask) -> None:
    def _store_unavailable(exc: Exception) -> Response:
        # Not 500: nothing is wrong with the request, and Stripe and the CRMs retry a 503.
        log.error("the store is unavailable on %s %s: %s", request.method, request.path, exc)
        message = "The store cannot be reached right now; nothing was saved. Try again shortly."
        if wants_json():
            response = error_response(503, "store_unavailable", message)[0]
        else:
            response = app.make_response(
                render_template("message.html", title="Try again shortly", message=message,
                                status=503, required_role=None)
            )  # fmt: skip
        response.status_code = 503
        response.headers["Retry-After"] = str(STORE_RETRY_AFTER_SECONDS)
        return response

    for unavailable in STORE_UNAVAILABLE:
        app.register_error_handler(unavailable, _store_unavailable)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int] | tuple[str, int]:
        if wants_json():
            return error_response(exc.status, exc.code, exc.message, **exc.details)
        # People get a page that says what happened and what to do, not an error dump.
        title = {401: "Please sign in", 403: "Not allowed", 404: "Not found"}.get(
            exc.status, "Cannot do that now"
        )
        page = render_template(
            "message.html",
            title=title,
            message=exc.message,
            status=exc.status,
            required_role=exc.details.get("required_role"),
        )
        return page, exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int] | HTTPException:
        if (
            request.path.startswith(("/api/", "/webhooks/", "/healthz"))
            or request.accept_mimetypes.best == "application/json"
        ):
            code = (exc.name or "error").lower().replace(" ", "_")
            return error_response(exc.code or 500, code, exc.description or exc.name or "error")
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            500,
            "internal_error",
            "Something went wrong; the request id is in the X-Request-Id header.",
        )
