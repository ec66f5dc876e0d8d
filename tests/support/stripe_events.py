"""Helpers for the event machinery tests: fixtures on disk, Stripe-style signing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import stripe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stripe" / "events"
WEBHOOK_SECRET = "whsec_dealbridgeTestWebhookSecret"  # matches tests.support.TEST_SECRETS


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.json"))


def load_event(name: str) -> dict[str, Any]:
    """A Stripe event fixture by file name, e.g. ``invoice.paid__ach.json``."""
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def raw_event(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def stripe_signature(payload: str, timestamp: int, secret: str = WEBHOOK_SECRET) -> str:
    """The Stripe-Signature header Stripe would send for ``payload`` at ``timestamp``."""
    return str(stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp))
