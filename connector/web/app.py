"""Flask app factory: builds the app from a Config (or a Runtime) through register_* steps."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flask import Flask, Request, Response, g, request
from flask.sessions import SessionInterface, SessionMixin

from connector.config import Config
from connector.logs import configure_logging, request_id_var
from connector.runtime import Runtime
from connector.web import (
    admin,
    context,
    crm_signin,
    crm_webhooks,
    customers,
    errors,
    health,
    launch,
    overview,
    plans,
    stripe_webhooks,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"


def create_app(config: Config | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the web app. Pass a Config, or a ready Runtime (tests, the demo, serve)."""
    if runtime is None:
        if config is None:
            raise ValueError("create_app needs a Config or a Runtime")
        runtime = Runtime(config)
        configure_logging(
            runtime.config.raw["app"]["log_level"],
            runtime.config.raw["app"]["log_format"],
            runtime.config.secrets.all_values(),
        )
    app = Flask("connector.web", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = runtime.config.raw["web"]["max_webhook_bytes"]
    secret_key = runtime.config.secrets.secret_key
    app.config["SECRET_KEY"] = secret_key.reveal() if secret_key else uuid.uuid4().hex
    app.session_interface = NoFlaskSession()
    context.install(app, runtime)
    register_request_context(app, runtime)
    errors.register(app)
    app.register_blueprint(health.blueprint)
    register_capabilities(app)
    return app


class NoFlaskSession(SessionInterface):
    """No Flask session: dealbridge signs its own session cookie (``auth.py``) and never uses
    Flask's. The default interface still built a signing serializer and read the cookie on
    every request, webhooks included (about 6% of a webhook's CPU). Writing to
    ``flask.session`` raises instead of being silently dropped."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def register_request_context(app: Flask, runtime: Runtime) -> None:
    """Give every request an id (the caller's, if sane) that every log line carries."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if incoming.isascii() and 8 <= len(incoming) <= 64 else uuid.uuid4().hex
        g.request_id = rid
        g.request_token = request_id_var.set(rid)
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        # No browser may guess a JSON answer or a webhook echo into HTML or script.
        response.headers["X-Content-Type-Options"] = "nosniff"
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        runtime.metrics.http_requests.labels(
            endpoint=endpoint, method=request.method, status=str(response.status_code)
        ).inc()
        if endpoint not in ("/healthz", "/metrics"):
            log.info(
                "%s %s -> %s",
                request.method,
                request.path,
                response.status_code,
                extra={"duration_ms": round((time.perf_counter() - g.get("started", 0)) * 1000)},
            )
        return response

    @app.teardown_request
    def _reset(_exc: BaseException | None) -> None:
        token: Any = g.pop("request_token", None)
        if token is not None:
            request_id_var.reset(token)


def register_capabilities(app: Flask) -> None:
    """Blueprints of later capabilities (webhooks, pages, API) hook in here."""
    app.register_blueprint(stripe_webhooks.blueprint)
    app.register_blueprint(crm_webhooks.blueprint)
    app.register_blueprint(plans.blueprint)
    app.register_blueprint(overview.blueprint)
    app.register_blueprint(customers.blueprint)
    app.register_blueprint(launch.blueprint)
    app.register_blueprint(crm_signin.blueprint)
    app.register_blueprint(admin.blueprint)
