"""The command line: version, check, db upgrade and sync --once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.cli import run as run_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "STRIPE_API_KEY": "sk_test_abc123def456",
        "STRIPE_WEBHOOK_SECRET": "whsec_abc",
        "DEALBRIDGE_SECRET_KEY": "y" * 40,
        "SALESFORCE_USERNAME": "integration@example.com",
        "SALESFORCE_PASSWORD": "hunter2hunter2",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
    }


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("dealbridge, version ")


def test_check_passes_with_the_example_config(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["--config", str(REPO / "config.example.yaml"), "check"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "ok: configuration and salesforce.yaml are valid" in result.output


def test_check_lists_every_problem_and_exits_non_zero(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("crm:\n  kind: salesforce\n  mapping: nowhere.yaml\nweb:\n  port: 0\n")
    result = CliRunner().invoke(
        main, ["--config", str(config), "check"], env={"STRIPE_API_KEY": ""}
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert any("web.port:" in line for line in lines)
    assert any("STRIPE_API_KEY: not set" in line for line in lines)
    assert any("DEALBRIDGE_SECRET_KEY: not set" in line for line in lines)
    assert len(lines) >= 5


def test_check_validates_the_mapping_the_config_names(tmp_path: Path, env: dict[str, str]) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\ncrm: salesforce\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"crm:\n  mapping: {mapping}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "check"], env=env)
    assert result.exit_code == 2
    assert f"{mapping}: deal: required" in result.output


def test_db_upgrade_migrates_the_configured_store(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "database at revision" in result.output


def test_sync_once_runs_every_job_and_reports_counts(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["sync", "--once"], env=env)
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output.strip().splitlines()[-1])
    assert totals["prune_inbox"] == 0


def test_check_names_a_subscriber_event_dealbridge_does_not_emit(
    tmp_path: Path, env: dict[str, str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "outbound:\n  subscribers:\n    - name: provisioning\n"
        "      url: https://provisioning.example.com/hooks\n"
        "      events: [account.credit_state_changed, invoice.payed]\n"
    )
    env = {**env, "DEALBRIDGE_SUBSCRIBER_PROVISIONING_SECRET": "s" * 32}
    result = CliRunner().invoke(main, ["--config", str(config), "check"], env=env)
    assert result.exit_code == 2
    assert "outbound.subscribers[0].events: 'invoice.payed' is not an event" in result.output


@pytest.mark.parametrize("command", ["worker", "clock"])
def test_with_jobs_disabled_the_worker_and_clock_refuse_to_start_saying_why(
    env: dict[str, str], command: str
) -> None:
    result = CliRunner().invoke(main, [command], env={**env, "DEALBRIDGE__JOBS__ENABLED": "false"})

    assert result.exit_code == 1
    assert f"jobs.enabled is false in this configuration, so the {command} does not run" in (
        result.output
    )


@pytest.mark.parametrize(("enabled", "processes"), [("true", ["web", "worker", "clock"]),
                                                     ("false", ["web"])])  # fmt: skip
def test_serve_supervises_the_background_jobs_only_when_enabled(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, enabled: str, processes: list[str]
) -> None:
    supervised: list[list[str]] = []

    def supervise(commands: dict[str, list[str]], **_options: object) -> int:
        supervised.append(list(commands))
        return 0

    monkeypatch.setattr(run_module, "supervise", supervise)

    result = CliRunner().invoke(main, ["serve"], env={**env, "DEALBRIDGE__JOBS__ENABLED": enabled})

    assert result.exit_code == 0, result.output
    assert supervised == [processes]
