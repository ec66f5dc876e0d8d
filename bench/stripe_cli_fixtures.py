"""`python -m bench.stripe_cli_fixtures [--version V] [DIR]`: replay the Stripe CLI's billing
trigger fixtures against the Stripe sandbox with stripe-python.

The Stripe CLI's ``stripe trigger EVENT`` runs a fixture: a sequence of API requests
(``pkg/fixtures/triggers/EVENT.json`` in github.com/stripe/stripe-cli, Apache-2.0) after
which Stripe has emitted EVENT. They are Stripe's own statement of what a request sequence
does, so replaying them measures the sandbox. The fixture files are not part of this
repository: fetch them into DIR (default ``/work/shared/reference/stripe-cli-fixtures``).

Each fixture runs on a fresh sandbox, through ``StripeClient.raw_request`` (the official
client, form-encoding the fixture's parameters as the CLI does), with ``${name:path}``
references resolved from earlier responses. A request whose fixture names an
``expected_error_type`` may fail with that type. A fixture passes when every request
succeeds and its event was recorded (``subscription.payment_*`` triggers emit
``invoice.payment_*``). The CLI sends no ``Stripe-Version``, so the account's default
applies; the fixtures were written for accounts older than 2025-09-30 (some send schedule
phase ``iterations``), so the client is pinned to ``--version`` (default
``2025-08-27.basil``). Printed: each fixture's outcome and the total.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stripe

from sandboxes.stripe import StripeSandbox

DEFAULT_DIR = Path("/work/shared/reference/stripe-cli-fixtures")
#: Event families of Stripe Billing and of the payment objects billing uses.
BILLING_PREFIXES = (
    "coupon.",
    "credit_note.",
    "customer.",
    "invoice.",
    "invoiceitem.",
    "payment_method.",
    "plan.",
    "price.",
    "product.",
    "promotion_code.",
    "setup_intent.",
    "subscription.",
    "subscription_schedule.",
    "tax_rate.",
    "test_helpers.test_clock.",
)
EMITTED_AS = {
    "subscription.payment_failed": "invoice.payment_failed",
    "subscription.payment_succeeded": "invoice.payment_succeeded",
}
_REFERENCE = re.compile(r"\$\{([^}]+)\}")


def billing_fixtures(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.glob("*.json")
        if path.stem.startswith(BILLING_PREFIXES) and path.stem.count(".") >= 1
    )


def _lookup(responses: dict[str, Any], reference: str) -> str:
    if reference == "generate-uuid":
        return str(uuid.uuid4())
    if reference == "time-now-RFC3339":
        return datetime.now(UTC).isoformat()
    name, _, path = reference.partition(":")
    value: Any = responses[name]
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return str(value)


def _resolve(value: Any, responses: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, responses) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, responses) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _REFERENCE.sub(lambda m: _lookup(responses, m.group(1)), value)
    return value


def _form(params: dict[str, Any]) -> dict[str, Any]:
    """The CLI's parameters as stripe-python encodes them: ``{"0": {...}}`` maps become lists
    in index order; keys already in bracket form stay as they are."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            if value and all(k.isdigit() for k in value):
                return [convert(value[k]) for k in sorted(value, key=int)]
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    converted: dict[str, Any] = convert(params)
    return converted


def run_fixture(path: Path, version: str) -> tuple[bool, str]:
    fixture = json.loads(path.read_text())
    sandbox = StripeSandbox().start()
    client = stripe.StripeClient(
        "sk_test_cli_fixtures",
        base_addresses={"api": sandbox.url, "files": sandbox.url, "connect": sandbox.url},
        max_network_retries=0,
    )
    responses: dict[str, Any] = {}
    try:
        for request in fixture["fixtures"]:
            path_ = _resolve(request["path"], responses)
            if not path_.startswith("/v1/"):
                return False, f"{request['name']}: {path_} is not a /v1 API"
            params = _form(_resolve(request.get("params", {}), responses))
            try:
                result = client.raw_request(
                    request.get("method", "post"), path_, stripe_version=version, **params
                )
                body = client.deserialize(result, api_mode="V1")
                responses[request["name"]] = json.loads(str(body))
            except stripe.StripeError as error:
                expected = request.get("expected_error_type")
                got = getattr(error.error, "type", None) if error.error else None
                if expected is None or got != expected:
                    return False, f"{request['name']}: {error.http_status} {error.user_message}"
                responses[request["name"]] = {}
        sandbox.run_billing()
        event = EMITTED_AS.get(path.stem, path.stem)
        seen = {e["type"] for e in sandbox.state.store.all("event")}
        if event not in seen:
            return False, f"ran, but no {event} event"
        return True, "ok"
    finally:
        sandbox.stop()


def main(argv: list[str]) -> None:
    version = "2025-08-27.basil"
    if argv[:1] == ["--version"]:
        version, argv = argv[1], argv[2:]
    directory = Path(argv[0]) if argv else DEFAULT_DIR
    fixtures = billing_fixtures(directory)
    passed = 0
    for path in fixtures:
        ok, detail = run_fixture(path, version)
        passed += ok
        print(f"{'PASS' if ok else 'FAIL'} {path.stem}: {detail}", flush=True)
    total = len(fixtures)
    print(
        f"{passed} of {total} billing trigger fixtures ran to completion (Stripe-Version {version})"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
