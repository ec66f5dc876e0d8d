"""The README's first command does the whole main job and says what it did."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main


def test_demo_once_activates_the_sample_orgs_deals_and_exits_cleanly(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    result = CliRunner().invoke(main, ["demo", "--once", "--database", str(database)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    deals = {deal["deal"]: deal for deal in summary["deals"]}
    acme = deals["Acme Robotics - Platform 2027"]
    assert acme["status"] == "active"
    assert acme["stripe_customer"].startswith("cus_")
    assert acme["subscription"].startswith("sub_")
    globex = deals["Globex - Enterprise Licence"]
    assert globex["status"] == "active"
    assert globex["subscription_schedule"].startswith("sub_sched_")
    assert deals["Umbrella Health - Platform and Support"]["status"] == "in_review"
    initech = deals["Initech - Renewal 2027"]
    assert initech["status"] == "awaiting_credit"
    assert "credit hold" in initech["reason"]
    assert all(
        deal["review_page"].startswith(summary["app"] + "/launch?") for deal in deals.values()
    )
    assert database.exists()
