"""WSGI entry point for gunicorn: ``gunicorn 'connector.web.wsgi:create_app_from_env()'``."""

from __future__ import annotations

from flask import Flask

from connector.config import load_config
from connector.web.app import create_app


def create_app_from_env() -> Flask:
    """Config from DEALBRIDGE_CONFIG and the environment; invalid config stops the worker."""
    return create_app(load_config())
