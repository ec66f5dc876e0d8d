"""Run the app under gunicorn from Python, so `dealbridge serve|web` need no extra script."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication


class GunicornApp(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        app_factory: Callable[[], Flask],
        options: dict[str, Any],
        post_worker_init: Callable[[Any], None] | None = None,
    ) -> None:
        self._factory = app_factory
        self._options = options
        self._post_worker_init = post_worker_init
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if self._post_worker_init is not None:
            self.cfg.set("post_worker_init", self._post_worker_init)

    def load(self) -> Flask:
        app = self._factory()
        # The objects built so far (modules, the app, its runtime) live as long as the
        # process: move them out of the garbage collector's view, so that its full
        # collections scan only what requests create. Without this, a full collection paused
        # the web process for 60-90 ms under load, the tail of every intake figure
        # (bench/serve_intake.py). gc.freeze is CPython's documented way to do this.
        gc.collect()
        gc.freeze()
        return app
