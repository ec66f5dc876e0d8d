"""`dealbridge plan suggest`: the plan a deal would get, or one line per problem and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "deal.json"


def test_the_documented_example_deal_gets_its_plan() -> None:
    result = CliRunner().invoke(
        main, ["plan", "suggest", "--file", str(EXAMPLE), "--today", "2026-11-21"]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert (plan["invoice_type"], plan["interval"], plan["interval_count"]) == (
        "recurring",
        "year",
        1,
    )
    assert plan["periods"] == 3
    assert plan["recurring_amount"] == 25 * 120000
    assert plan["one_time_amount"] == 500000
    assert plan["total_amount"] == 3 * 25 * 120000 + 500000
    assert plan["payment_method_types"] == ["card", "us_bank_account", "customer_balance"]
    assert plan["days_until_due"] == 30
    assert plan["needs_confirmation"] == []


def test_a_deal_from_standard_input() -> None:
    deal = json.loads(EXAMPLE.read_text())
    deal["payment_terms"] = None
    result = CliRunner().invoke(
        main, ["plan", "suggest", "--file", "-", "--today", "2026-11-21"], input=json.dumps(deal)
    )
    assert result.exit_code == 0
    assert json.loads(result.output)["needs_confirmation"] == ["days_until_due"]


def test_an_unusable_deal_exits_2_with_one_line_per_problem() -> None:
    deal = json.loads(EXAMPLE.read_text())
    deal["billing_contact"]["email"] = ""
    deal["line_items"][0]["quantity"] = -1
    deal["contract_start"] = "next spring"
    result = CliRunner().invoke(main, ["plan", "suggest", "--file", "-"], input=json.dumps(deal))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line]
    fields = [line.split(":")[0] for line in lines]
    assert fields == ["contract_start", "billing_contact.email", "line_items[0].quantity"]


def test_malformed_json_is_one_clear_line() -> None:
    result = CliRunner().invoke(main, ["plan", "suggest", "--file", "-"], input="{nope")
    assert result.exit_code == 2
    assert result.stderr.startswith("deal: not valid JSON")


def test_unknown_deal_fields_are_refused_by_name() -> None:
    deal = json.loads(EXAMPLE.read_text())
    deal["contract_days"] = 45
    deal["line_items"][0]["discount"] = 10
    result = CliRunner().invoke(
        main, ["plan", "suggest", "--file", "-", "--today", "2026-11-21"], input=json.dumps(deal)
    )
    assert result.exit_code == 2
    fields = sorted(line.partition(":")[0] for line in result.output.splitlines())
    assert fields == ["contract_days", "line_items[0].discount"]


def test_the_plan_json_carries_its_invoice_schedule_adding_up_to_the_total() -> None:
    result = CliRunner().invoke(
        main, ["plan", "suggest", "--file", str(EXAMPLE), "--today", "2026-11-21"]
    )
    plan = json.loads(result.output)
    assert len(plan["invoices"]) == plan["periods"]
    assert sum(i["amount"] for i in plan["invoices"]) == plan["total_amount"]


def test_unknown_override_fields_are_refused_by_name(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({"days_due": 45, "confirmed": ["amount"]}))
    result = CliRunner().invoke(
        main,
        ["plan", "suggest", "--file", str(EXAMPLE), "--overrides", str(overrides),
         "--today", "2026-11-21"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert [line.partition(":")[0] for line in result.output.splitlines()] == ["days_due"]
