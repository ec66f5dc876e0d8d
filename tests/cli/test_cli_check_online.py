"""`dealbridge check --online`: the mapping checked against the CRM itself, for each CRM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.crm.dynamics.auth import reset_applications
from connector.crm.dynamics.throttle import reset_gates
from connector.demo import salesforce_sandbox
from connector.demo.dataverse import dataverse_sandbox
from sandboxes.dataverse import DataverseSandbox
from sandboxes.salesforce import (
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceSandbox,
)

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **crm: str) -> dict[str, str]:
    return {
        "STRIPE_API_KEY": "sk_test_abc123def456",
        "STRIPE_WEBHOOK_SECRET": "whsec_abc",
        "DEALBRIDGE_SECRET_KEY": "y" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        **crm,
    }


def _check(config: Path, env: dict[str, str], *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), "check", *options], env=env)
    return result.exit_code, result.output


# --------------------------------------------------------------------------- Salesforce


@pytest.fixture
def salesforce() -> Iterator[SalesforceSandbox]:
    sandbox = salesforce_sandbox(seed=None).start()
    yield sandbox
    sandbox.stop()


def _salesforce_config(tmp_path: Path, sandbox: SalesforceSandbox, mapping: Path) -> Path:
    config = tmp_path / "dealbridge.yaml"
    config.write_text(
        f"crm:\n  kind: salesforce\n  mapping: {mapping}\n"
        f"  salesforce:\n    instance_url: {sandbox.url}\n"
    )
    return config


def _salesforce_env(tmp_path: Path) -> dict[str, str]:
    return _env(
        tmp_path,
        SALESFORCE_USERNAME=DEMO_USERNAME,
        SALESFORCE_PASSWORD=DEMO_PASSWORD,
        SALESFORCE_SECURITY_TOKEN=DEMO_SECURITY_TOKEN or "",
    )


def test_online_check_passes_when_the_org_has_every_mapped_field(
    tmp_path: Path, salesforce: SalesforceSandbox
) -> None:
    config = _salesforce_config(tmp_path, salesforce, REPO / "mappings" / "salesforce.yaml")
    code, output = _check(config, _salesforce_env(tmp_path), "--online")
    assert code == 0, output
    assert "ok: the CRM has every object and field salesforce.yaml maps" in output


def test_online_check_names_a_field_the_org_lacks_and_exits_2(
    tmp_path: Path, salesforce: SalesforceSandbox
) -> None:
    shipped = (REPO / "mappings" / "salesforce.yaml").read_text(encoding="utf-8")
    mapping = tmp_path / "salesforce.yaml"
    mapping.write_text(shipped.replace("credit_note: Credit_Note__c", "credit_note: Dunning__c"))
    config = _salesforce_config(tmp_path, salesforce, mapping)
    env = _salesforce_env(tmp_path)

    assert _check(config, env)[0] == 0  # offline, the mapping is well formed
    code, output = _check(config, env, "--online")

    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1
    assert "Dunning__c" in problems[0]


def test_online_check_names_a_currency_field_mapped_as_the_invoice_status(
    tmp_path: Path, salesforce: SalesforceSandbox
) -> None:
    shipped = (REPO / "mappings" / "salesforce.yaml").read_text(encoding="utf-8")
    mapping = tmp_path / "salesforce.yaml"
    mapping.write_text(shipped.replace("status: Status__c", "status: Amount_Due__c"))
    config = _salesforce_config(tmp_path, salesforce, mapping)
    code, output = _check(config, _salesforce_env(tmp_path), "--online")
    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1
    assert (
        "invoice.status is mapped to Stripe_Invoice__c.Amount_Due__c, a currency field"
        in (problems[0])
    )


def test_online_check_names_a_text_field_too_short_for_a_stripe_id(
    tmp_path: Path, salesforce: SalesforceSandbox
) -> None:
    shipped = (REPO / "mappings" / "salesforce.yaml").read_text(encoding="utf-8")
    mapping = tmp_path / "salesforce.yaml"
    # Currency__c holds three characters; a Stripe customer id needs far more.
    head, invoice = shipped.split("\ninvoice:", 1)
    invoice = invoice.replace(
        "stripe_customer_id: Stripe_Customer_Id__c", "stripe_customer_id: Currency__c"
    )
    mapping.write_text(f"{head}\ninvoice:{invoice}")
    config = _salesforce_config(tmp_path, salesforce, mapping)
    code, output = _check(config, _salesforce_env(tmp_path), "--online")
    assert code == 2
    assert (
        "invoice.stripe_customer_id is mapped to Stripe_Invoice__c.Currency__c, 3 characters"
        in output
    )


# --------------------------------------------------------------------------- Dynamics 365


@pytest.fixture
def dataverse() -> Iterator[DataverseSandbox]:
    reset_applications()
    reset_gates()
    sandbox = dataverse_sandbox(seed=None).start()
    yield sandbox
    sandbox.stop()
    reset_applications()
    reset_gates()


def _dynamics_config(tmp_path: Path, sandbox: DataverseSandbox) -> Path:
    """The config an admin writes for `dealbridge sandbox dynamics` (an http:// environment)."""
    config = tmp_path / "dealbridge.yaml"
    config.write_text(
        "crm:\n  kind: dynamics\n  dynamics:\n"
        f"    environment_url: {sandbox.url}\n    tenant_id: {sandbox.tenant_id}\n"
        f"    client_id: {sandbox.client_id}\n"
    )
    return config


def _dynamics_env(tmp_path: Path, sandbox: DataverseSandbox) -> dict[str, str]:
    return _env(
        tmp_path,
        DYNAMICS_CLIENT_SECRET=sandbox.client_secret,
        DYNAMICS_WEBHOOK_KEY="webhook-key-0123456789",
    )


def test_online_check_passes_when_the_environment_has_every_mapped_column(
    tmp_path: Path, dataverse: DataverseSandbox
) -> None:
    code, output = _check(
        _dynamics_config(tmp_path, dataverse), _dynamics_env(tmp_path, dataverse), "--online"
    )
    assert code == 0, output
    assert "ok: the CRM has every object and field dynamics.yaml maps" in output
    # Seven tables, then the text columns' MaxLength of the three dealbridge writes to
    # (opportunity, account, db_stripeinvoice), String and Memo apart.
    assert dataverse.request_count("GET", "EntityDefinitions") == 7 + 3 * 2


def test_online_check_names_a_column_missing_from_the_environment_and_exits_2(
    tmp_path: Path, dataverse: DataverseSandbox
) -> None:
    dataverse.drop_column("opportunity", "db_contractstart")
    code, output = _check(
        _dynamics_config(tmp_path, dataverse), _dynamics_env(tmp_path, dataverse), "--online"
    )
    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert problems == [
        "  - deal.fields.contract_start: column 'db_contractstart' does not exist on table "
        "'opportunity'; run `python -m connector.crm.dynamics.definitions --apply` or fix the "
        "mapping"
    ]


def test_online_check_names_a_currency_column_mapped_as_the_invoice_status(
    tmp_path: Path, dataverse: DataverseSandbox
) -> None:
    shipped = (REPO / "mappings" / "dynamics.yaml").read_text(encoding="utf-8")
    mapping = tmp_path / "dynamics.yaml"
    mapping.write_text(shipped.replace("    status: db_status\n", "    status: db_amountdue\n"))
    config = _dynamics_config(tmp_path, dataverse)
    config.write_text(
        config.read_text().replace(
            "  kind: dynamics\n", f"  kind: dynamics\n  mapping: {mapping}\n"
        )
    )
    code, output = _check(config, _dynamics_env(tmp_path, dataverse), "--online")
    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, output
    assert problems[0].startswith(
        "  - invoice.fields.status: column db_stripeinvoice.db_amountdue is a Money column"
    )


def test_online_check_names_a_text_column_too_short_for_a_stripe_id(
    tmp_path: Path, dataverse: DataverseSandbox
) -> None:
    shipped = (REPO / "mappings" / "dynamics.yaml").read_text(encoding="utf-8")
    head, invoice = shipped.split("\ninvoice:", 1)
    # db_currency holds three characters; a Stripe customer id needs far more.
    invoice = invoice.replace(
        "stripe_customer_id: db_stripecustomerid", "stripe_customer_id: db_currency"
    )
    mapping = tmp_path / "dynamics.yaml"
    mapping.write_text(f"{head}\ninvoice:{invoice}")
    config = _dynamics_config(tmp_path, dataverse)
    config.write_text(
        config.read_text().replace(
            "  kind: dynamics\n", f"  kind: dynamics\n  mapping: {mapping}\n"
        )
    )
    code, output = _check(config, _dynamics_env(tmp_path, dataverse), "--online")
    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert problems == [
        "  - invoice.fields.stripe_customer_id: column db_stripeinvoice.db_currency holds 3 "
        "characters (MaxLength); it must hold at least 64"
    ], output


def test_online_check_reports_a_crm_it_cannot_reach_as_a_problem(
    tmp_path: Path, dataverse: DataverseSandbox
) -> None:
    env = {**_dynamics_env(tmp_path, dataverse), "DYNAMICS_CLIENT_SECRET": "not-the-secret"}
    code, output = _check(_dynamics_config(tmp_path, dataverse), env, "--online")
    assert code == 2
    assert "crm: could not check the mapping against the CRM" in output
    assert "invalid_client" in output


def test_without_online_the_crm_is_not_called(tmp_path: Path, dataverse: DataverseSandbox) -> None:
    code, output = _check(_dynamics_config(tmp_path, dataverse), _dynamics_env(tmp_path, dataverse))
    assert code == 0, output
    assert dataverse.request_log() == []


def test_online_check_names_a_text_field_mapped_as_the_deal_discount_amount(
    tmp_path: Path, salesforce: SalesforceSandbox
) -> None:
    shipped = (REPO / "mappings" / "salesforce.yaml").read_text(encoding="utf-8")
    mapping = tmp_path / "salesforce.yaml"
    assert "discount_amount: Deal_Discount_Amount__c" in shipped
    mapping.write_text(
        shipped.replace("discount_amount: Deal_Discount_Amount__c", "discount_amount: Name")
    )
    config = _salesforce_config(tmp_path, salesforce, mapping)
    code, output = _check(config, _salesforce_env(tmp_path), "--online")
    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, output
    assert "discount_amount" in problems[0] and "a currency or number field" in problems[0]


def test_online_check_names_the_opportunity_discount_amount_column_when_missing(
    tmp_path: Path, dataverse: DataverseSandbox
) -> None:
    dataverse.drop_column("opportunity", "discountamount")
    code, output = _check(
        _dynamics_config(tmp_path, dataverse), _dynamics_env(tmp_path, dataverse), "--online"
    )
    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert [p.split(":")[0] for p in problems] == ["  - deal.fields.discount_amount"], output
