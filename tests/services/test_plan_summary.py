"""The plan summary written to the CRM: the invoice schedule, short enough for its field."""

from __future__ import annotations

from datetime import date

from connector.domain.deal import parse_deal
from connector.domain.plan import PlanDefaults, PlanOverrides, suggest_plan
from connector.services.plans import summary_lines
from tests.domain.builders import deal_json, line_item

TODAY = date(2025, 3, 1)


def test_a_36_month_schedule_is_summarised_in_a_few_lines_that_add_up() -> None:
    deal = parse_deal(
        deal_json(
            contract_months=36,
            contract_start="2025-01-10",
            line_items=[
                line_item(unit_amount=100000, quantity=10, pricing_schedule="annual"),
                line_item(product="Setup", pricing_schedule="one_time", unit_amount=50000),
            ],
        )
    )
    plan = suggest_plan(deal, PlanDefaults(), TODAY, PlanOverrides(interval="month"))
    lines = summary_lines(plan, "Ada", TODAY)
    text = "\n".join(lines)
    assert "  2025-03-01  USD 2,166.78  First invoice: months 1 to 2" in text
    assert "  2025-03-10 to 2027-12-10  34 invoices of USD 833.33, one per period" in lines
    assert lines[-1] == "Contract total: USD 30,500.00."
    assert 216678 + 34 * 83333 == plan.total_amount == 3050000
    assert len(text) < 2000  # Dataverse's plan summary memo holds 2,000 characters
