"""Liveness and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connector import __version__
from connector.mappings import MappingError
from connector.web.auth import same_secret
from connector.web.context import current_runtime
from connector.web.errors import error_response

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    runtime = current_runtime()
    store_ok = runtime.db.ping()
    body: dict[str, object] = {
        "status": "ok" if store_ok else "unavailable",
        "version": __version__,
        "store": {"reachable": store_ok, "backend": runtime.db.engine.dialect.name},
    }
    try:
        runtime.mapping  # noqa: B018 - read and validated now: the file may have changed
        body["mapping"] = {"valid": True}
    except MappingError as exc:
        # Every CRM read and write would fail: say why instead of reporting healthy.
        body["mapping"] = {"valid": False, "problems": exc.problems}
        if store_ok:
            body["status"] = "misconfigured"
        return jsonify(body), 503
    return jsonify(body), 200 if store_ok else 503


@blueprint.get("/metrics")
def metrics() -> Response | tuple[Response, int]:
    """Prometheus text; with ``DEALBRIDGE_METRICS_TOKEN`` set, only for that bearer token
    (Prometheus ``authorization: {credentials: ...}``)."""
    runtime = current_runtime()
    token = runtime.config.secrets.metrics_token
    if token is not None:
        header = request.headers.get("Authorization", "")
        presented = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        if not presented or not same_secret(presented, token.reveal()):
            response, status = error_response(
                401,
                "metrics_token",
                "/metrics needs Authorization: Bearer <DEALBRIDGE_METRICS_TOKEN>",
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response, status
    return Response(generate_latest(runtime.metrics.registry), mimetype=CONTENT_TYPE_LATEST)
