"""`dealbridge import stripe` from the command line: the dry run's plan, the progress line,
and exit codes (against the Stripe and Salesforce sandboxes on loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
from click.testing import CliRunner

from connector.cli import main
from connector.cli.import_cmd import ProgressLine
from connector.demo import salesforce_sandbox
from connector.demo.world import DEMO_STRIPE_KEY
from connector.store.migrate import upgrade
from sandboxes.salesforce import (
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceSandbox,
)
from sandboxes.stripe import StripeSandbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def salesforce() -> Iterator[SalesforceSandbox]:
    sandbox = salesforce_sandbox().start()
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


@pytest.fixture
def stripe_sandbox() -> Iterator[StripeSandbox]:
    sandbox = StripeSandbox()
    sandbox.start()
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


def setup(tmp_path: Path, salesforce: SalesforceSandbox, stripe_url: str) -> list[str]:
    config = tmp_path / "dealbridge.yaml"
    config.write_text(
        f"crm:\n  kind: salesforce\n  mapping: {REPO / 'mappings' / 'salesforce.yaml'}\n"
        f"  salesforce:\n    instance_url: {salesforce.url}\n"
        f"stripe:\n  api_base: {stripe_url}\n  max_network_retries: 0\n"
    )
    return ["--config", str(config), "import", "stripe"]


def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    upgrade(url)
    return {
        "STRIPE_API_KEY": DEMO_STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_abc",
        "DEALBRIDGE_SECRET_KEY": "y" * 40,
        "DATABASE_URL": url,
        "SALESFORCE_USERNAME": DEMO_USERNAME,
        "SALESFORCE_PASSWORD": DEMO_PASSWORD,
        "SALESFORCE_SECURITY_TOKEN": DEMO_SECURITY_TOKEN or "",
    }


def test_a_dry_run_prints_what_it_would_link_create_and_upsert_and_exits_0(
    tmp_path: Path, salesforce: SalesforceSandbox, stripe_sandbox: StripeSandbox
) -> None:
    client = stripe.StripeClient(
        DEMO_STRIPE_KEY, base_addresses={"api": stripe_sandbox.url}, max_network_retries=0
    )
    acme = salesforce.ids_by_ref()["acme"]
    linked = client.v1.customers.create(params={"metadata": {"crm_account_id": acme}})
    client.v1.customers.create(params={"name": "Wayne Corp"})
    platform = client.v1.products.create(params={"name": "Platform"})
    monthly = client.v1.prices.create(
        params={"product": platform.id, "currency": "usd", "unit_amount": 1000}
    )

    result = CliRunner().invoke(
        main,
        [*setup(tmp_path, salesforce, stripe_sandbox.url), "--dry-run",
         "--create-missing-accounts"],
        env=env(tmp_path),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was changed. It would:" in result.output
    assert f"would link {linked.id} → account {acme} (metadata)" in result.output
    assert "(new account 'Wayne Corp') (created)" in result.output
    assert f"would upsert product {platform.id}" in result.output
    assert f"would upsert price {monthly.id}" in result.output
    assert "  customers: 2 (" in result.output  # the progress line


def test_an_unreachable_stripe_stops_the_import_with_a_non_zero_exit_naming_stripe(
    tmp_path: Path, salesforce: SalesforceSandbox
) -> None:
    result = CliRunner().invoke(
        main, setup(tmp_path, salesforce, "http://127.0.0.1:9"), env=env(tmp_path)
    )

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Import stopped: Stripe unavailable:")
    assert "Run the same command again to resume." in result.stderr


def test_a_bad_config_exits_non_zero_naming_the_setting(
    tmp_path: Path, salesforce: SalesforceSandbox
) -> None:
    args = setup(tmp_path, salesforce, "http://127.0.0.1:9")
    config = Path(args[1])
    config.write_text(config.read_text() + "import:\n  match_rule: fuzzy\n")

    result = CliRunner().invoke(main, args, env=env(tmp_path))

    assert result.exit_code != 0
    assert "import.match_rule" in result.output


def test_the_progress_line_shows_the_running_count_and_rate() -> None:
    lines: list[str] = []
    ticks = iter([100.0, 102.0, 104.0])
    progress = ProgressLine(lines.append, clock=lambda: next(ticks))

    progress("customers", 1000)
    progress("customers", 1000)
    progress("customers", 2000)

    assert lines == [
        "  customers: 1,000 (-)",
        "  customers: 2,000 (1,000/s)",
        "  customers: 4,000 (1,000/s)",
    ]
