"""Liveness and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connector import __version__
from connector.web.context import current_runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    runtime = current_runtime()
    store_ok = runtime.db.ping()
    body = {
        "status": "ok" if store_ok else "unavailable",
        "version": __version__,
        "store": {"reachable": store_ok, "backend": runtime.db.engine.dialect.name},
    }
    return jsonify(body), 200 if store_ok else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    runtime = current_runtime()
    return Response(generate_latest(runtime.metrics.registry), mimetype=CONTENT_TYPE_LATEST)
