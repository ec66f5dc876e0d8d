"""Configuration: YAML + environment, validated at once, secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
VALID_ENV = {
    "STRIPE_API_KEY": "sk_test_abc123def456",
    "STRIPE_WEBHOOK_SECRET": "whsec_one,whsec_two",
    "DEALBRIDGE_SECRET_KEY": "x" * 40,
    "SALESFORCE_USERNAME": "integration@example.com",
    "SALESFORCE_PASSWORD": "hunter2hunter2",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_example_config_is_valid_with_the_required_environment() -> None:
    config = load_config(REPO / "config.example.yaml", VALID_ENV)
    assert config.crm_kind == "salesforce"
    assert config.database_url == "sqlite:///var/dealbridge.sqlite3"


def test_every_problem_is_reported_at_once_each_naming_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "crm:\n  kind: sugarcrm\nweb:\n  port: 99999\nplans:\n  default_days_until_due: -3\n"
        "colour: blue\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, VALID_ENV)
    text = str(caught.value)
    assert "crm.kind: Must be one of: salesforce, dynamics." in text
    assert "web.port:" in text
    assert "plans.default_days_until_due:" in text
    assert "colour: unknown key" in text
    assert len(caught.value.problems) == 4


def test_missing_secrets_name_the_environment_variable_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "{}"), {})
    problems = caught.value.problems
    assert any(p.startswith("STRIPE_API_KEY: not set") for p in problems)
    assert any(p.startswith("STRIPE_WEBHOOK_SECRET: not set") for p in problems)
    assert any(p.startswith("DEALBRIDGE_SECRET_KEY: not set") for p in problems)
    assert any(p.startswith("SALESFORCE_USERNAME: not set") for p in problems)


def test_a_secret_in_the_config_file_is_refused(tmp_path: Path) -> None:
    fake_live_key = "sk_" + "live_abcdefgh12345678"  # built at run time: not a real key
    path = write(tmp_path, f"stripe:\n  api_key: {fake_live_key}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, VALID_ENV)
    assert any(
        p.startswith("stripe.api_key: secrets must not be stored in the config file")
        for p in caught.value.problems
    )


def test_environment_overrides_nested_keys_with_typed_values(tmp_path: Path) -> None:
    env = {
        **VALID_ENV,
        "DEALBRIDGE__JOBS__POLL_CRM_SECONDS": "15",
        "DEALBRIDGE__APP__LOG_FORMAT": "json",
    }
    config = load_config(write(tmp_path, "{}"), env)
    assert config.raw["jobs"]["poll_crm_seconds"] == 15
    assert config.raw["app"]["log_format"] == "json"


def test_database_url_and_port_follow_paas_conventions(tmp_path: Path) -> None:
    env = {**VALID_ENV, "DATABASE_URL": "postgres://u:p@db.example:5432/app", "PORT": "5123"}
    config = load_config(write(tmp_path, "{}"), env)
    assert config.database_url == "postgresql+psycopg://u:p@db.example:5432/app"
    assert config.raw["web"]["port"] == 5123


def test_rotating_webhook_secrets_are_all_kept(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "{}"), VALID_ENV)
    assert [s.reveal() for s in config.secrets.stripe_webhook_secrets] == ["whsec_one", "whsec_two"]


def test_secrets_never_show_in_a_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "{}"), VALID_ENV)
    assert "sk_test_abc123def456" not in repr(config)
    assert "hunter2hunter2" not in repr(config)


def test_api_tokens_need_a_known_role_and_length(tmp_path: Path) -> None:
    env = {**VALID_ENV, "DEALBRIDGE_API_TOKENS": "boss:abcdefghijklmnopqrstu,finance:short"}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "{}"), env)
    assert sum("DEALBRIDGE_API_TOKENS" in p for p in caught.value.problems) == 2


def test_dynamics_requires_its_environment_and_app_registration(tmp_path: Path) -> None:
    path = write(tmp_path, "crm:\n  kind: dynamics\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {k: v for k, v in VALID_ENV.items() if "SALESFORCE" not in k})
    problems = caught.value.problems
    assert "crm.dynamics.environment_url: required when crm.kind is dynamics" in problems
    assert any(p.startswith("DYNAMICS_CLIENT_SECRET: not set") for p in problems)


def test_a_sign_in_app_registration_of_its_own_needs_its_client_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  entra:\n    client_id: 0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, VALID_ENV)
    assert any(
        p.startswith("DEALBRIDGE_ENTRA_CLIENT_SECRET: not set") for p in caught.value.problems
    )
    env = {**VALID_ENV, "DEALBRIDGE_ENTRA_CLIENT_SECRET": "web-app-secret-value"}
    assert load_config(path, env).secrets.entra_client_secret is not None


def test_an_unreadable_file_is_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml", VALID_ENV)
    assert caught.value.problems[0].startswith(
        f"config file {tmp_path / 'missing.yaml'}: cannot be read"
    )


def test_retention_shorter_than_stripes_retry_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "jobs:\n  retention_days: 3\n"), VALID_ENV)
    assert caught.value.problems[0].startswith("jobs.retention_days:")
