"""``dealbridge web`` runs the app under gunicorn (``web/server.py``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from connector.web.server import GunicornApp


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_loading_the_app_takes_what_it_built_out_of_the_collectors_view(unfrozen: None) -> None:
    """Full collections then scan only what requests create (they paused the web process
    for 60-90 ms under load before: docs/benchmarks.md)."""
    built: list[Any] = []

    def factory() -> Flask:
        built.append([object() for _ in range(1_000)])  # long-lived, like the runtime
        return Flask("probe")

    gc.unfreeze()
    app = GunicornApp(factory, {"bind": "127.0.0.1:0"}).load()
    assert isinstance(app, Flask)
    assert gc.get_freeze_count() >= 1_000
