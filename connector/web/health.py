"""Liveness and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connector import __version__

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    from connector.web.app import get_runtime

    runtime = get_runtime(current_app)
    store_ok = runtime.db.ping()
    body = {
        "status": "ok" if store_ok else "unavailable",
        "version": __version__,
        "store": {"reachable": store_ok, "backend": runtime.db.engine.dialect.name},
    }
    return jsonify(body), 200 if store_ok else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    from connector.web.app import get_runtime

    runtime = get_runtime(current_app)
    return Response(generate_latest(runtime.metrics.registry), mimetype=CONTENT_TYPE_LATEST)
