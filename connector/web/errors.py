"""Errors as JSON for machine clients (API, webhooks); HTML pages render their own."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
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


def register(app: Flask) -> None:
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
