"""The runtime of the app serving the current request, for blueprints and helpers.

The app factory stores the runtime on the app (``install``); everything that handles a
request reads it back with ``current_runtime()``. Blueprints import this small module, never
the factory, so the factory can import them (like flaskr's ``db.py`` and ``get_db()``).
"""

from __future__ import annotations

from flask import Flask, current_app

from connector.runtime import Runtime

EXTENSION = "dealbridge"


def install(app: Flask, runtime: Runtime) -> None:
    """Make ``runtime`` the one ``current_runtime()`` returns in ``app``'s requests."""
    app.extensions[EXTENSION] = runtime


def runtime_of(app: Flask) -> Runtime:
    """The runtime installed on ``app`` (outside a request: the CLI's server hooks)."""
    runtime = app.extensions[EXTENSION]
    assert isinstance(runtime, Runtime)
    return runtime


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return runtime_of(app)
