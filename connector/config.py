"""Configuration: one YAML file, environment overrides, secrets from the environment only.

Start-up validates everything at once and refuses to run on any problem, so a deployment
never half-starts with a typo in a key. Every problem names its key and what to do.

Sources, lowest precedence first:
1. the YAML file (``--config PATH`` or ``DEALBRIDGE_CONFIG``);
2. ``DEALBRIDGE__SECTION__KEY=value`` environment variables (values parsed as YAML scalars);
3. the PaaS conventions ``DATABASE_URL`` and ``PORT``.

Secrets never come from the file: a secret-looking key in YAML is itself a problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate

from connector.bundled import default_mapping, mappings_dir
from connector.secrets import Secret

DEFAULT_SQLITE_URL = "sqlite:///var/dealbridge.sqlite3"
ENV_PREFIX = "DEALBRIDGE__"

#: Environment variables holding secrets, by purpose. Documented in config.example.yaml.
SECRET_ENV = {
    "stripe_api_key": "STRIPE_API_KEY",
    "stripe_webhook_secrets": "STRIPE_WEBHOOK_SECRET",
    "secret_key": "DEALBRIDGE_SECRET_KEY",
    "api_tokens": "DEALBRIDGE_API_TOKENS",
    "salesforce_username": "SALESFORCE_USERNAME",
    "salesforce_password": "SALESFORCE_PASSWORD",
    "salesforce_security_token": "SALESFORCE_SECURITY_TOKEN",
    "salesforce_client_id": "SALESFORCE_CLIENT_ID",
    "salesforce_client_secret": "SALESFORCE_CLIENT_SECRET",
    "salesforce_outbound_token": "SALESFORCE_OUTBOUND_TOKEN",
    "dynamics_client_secret": "DYNAMICS_CLIENT_SECRET",
    "dynamics_certificate_key": "DYNAMICS_CERTIFICATE_KEY",
    "dynamics_webhook_key": "DYNAMICS_WEBHOOK_KEY",
    "entra_client_secret": "DEALBRIDGE_ENTRA_CLIENT_SECRET",
    "metrics_token": "DEALBRIDGE_METRICS_TOKEN",
}
SECRET_WORDS = ("secret", "password", "token", "api_key", "apikey", "private_key")
ROLES = ("sales_rep", "finance", "admin")


class ConfigError(Exception):
    """Every configuration problem found, one per line, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --------------------------------------------------------------------------- schemas


class _Strict(Schema):
    """Unknown keys are errors; absent sections load as empty so their defaults apply."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _fill_absent_sections(self, data: Any, **_kwargs: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        for name, declared in self.fields.items():
            key = declared.data_key or name
            if isinstance(declared, fields.Nested) and filled.get(key) is None:
                filled[key] = {}
        return filled


class AppSchema(_Strict):
    base_url = fields.Url(
        load_default="http://127.0.0.1:8000", require_tld=False, schemes={"http", "https"}
    )
    log_format = fields.String(load_default="text", validate=validate.OneOf(["text", "json"]))
    log_level = fields.String(
        load_default="INFO", validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])
    )


class DatabaseSchema(_Strict):
    url = fields.String(load_default=DEFAULT_SQLITE_URL, validate=validate.Length(min=1))


GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class EntraSchema(_Strict):
    """Entra ID sign-in for pages embedded in Dynamics 365 (``POST /launch/entra``)."""

    tenant_id = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(GUID))
    audience = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    scope = fields.String(load_default="access_as_user", validate=validate.Length(min=1))
    roles = fields.Dict(
        keys=fields.String(), values=fields.String(validate=validate.OneOf(ROLES)),
        load_default=dict,
    )  # fmt: skip
    default_role = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(ROLES))
    #: The web app registration the plan URL's sign-in uses (with
    #: ``DEALBRIDGE_ENTRA_CLIENT_SECRET``); null: crm.dynamics's app registration.
    client_id = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(GUID))
    authority_host = fields.Url(load_default="https://login.microsoftonline.com", schemes={"https"})
    jwks_cache_seconds = fields.Integer(
        load_default=3600, validate=validate.Range(min=60, max=86_400)
    )
    leeway_seconds = fields.Integer(load_default=60, validate=validate.Range(min=0, max=300))


class WebSchema(_Strict):
    host = fields.String(load_default="127.0.0.1")
    port = fields.Integer(load_default=8000, validate=validate.Range(min=1, max=65535))
    frame_ancestors = fields.List(fields.String(), load_default=list)
    max_webhook_bytes = fields.Integer(load_default=1_048_576, validate=validate.Range(min=1024))
    launch_link_ttl_seconds = fields.Integer(load_default=3600, validate=validate.Range(min=60))
    canvas_roles = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(["sales_rep", "finance", "admin"])),
        load_default=dict,
    )
    canvas_default_role = fields.String(
        load_default="sales_rep", validate=validate.OneOf(["sales_rep", "finance", "admin"])
    )
    #: Oldest Canvas signed request accepted, by its ``issuedAt`` (when Salesforce issued
    #: the OAuth token it carries; those live about two hours).
    canvas_max_age_seconds = fields.Integer(
        load_default=7200, validate=validate.Range(min=60, max=86_400)
    )
    entra = fields.Nested(EntraSchema, load_default=dict)


class SalesforceSchema(_Strict):
    login_url = fields.String(load_default="https://login.salesforce.com")
    instance_url = fields.String(load_default=None, allow_none=True)
    api_version = fields.String(load_default="59.0", validate=validate.Regexp(r"^\d{2,3}\.0$"))
    auth_flow = fields.String(
        load_default="password", validate=validate.OneOf(["password", "client_credentials"])
    )
    organization_id = fields.String(load_default=None, allow_none=True)
    lightning_url = fields.String(load_default=None, allow_none=True)
    bulk_threshold = fields.Integer(load_default=2000, validate=validate.Range(min=1))


class DynamicsSchema(_Strict):
    environment_url = fields.String(load_default=None, allow_none=True)
    tenant_id = fields.String(load_default=None, allow_none=True)
    client_id = fields.String(load_default=None, allow_none=True)
    authority_host = fields.String(load_default="https://login.microsoftonline.com")
    certificate_thumbprint = fields.String(load_default=None, allow_none=True)
    api_version = fields.String(load_default="9.2")


class CrmSchema(_Strict):
    kind = fields.String(
        load_default="salesforce", validate=validate.OneOf(["salesforce", "dynamics"])
    )
    mapping = fields.String(load_default=None, allow_none=True)
    salesforce = fields.Nested(SalesforceSchema, load_default=dict)
    dynamics = fields.Nested(DynamicsSchema, load_default=dict)


class StripeSchema(_Strict):
    api_base = fields.String(load_default=None, allow_none=True)
    dashboard_url = fields.String(load_default="https://dashboard.stripe.com/test")
    webhook_tolerance_seconds = fields.Integer(
        load_default=300, validate=validate.Range(min=1, max=3600)
    )
    max_network_retries = fields.Integer(load_default=3, validate=validate.Range(min=0, max=10))
    timeout_seconds = fields.Integer(load_default=30, validate=validate.Range(min=1, max=120))


class PlansSchema(_Strict):
    default_payment_method_types = fields.List(
        fields.String(validate=validate.OneOf(["card", "us_bank_account", "customer_balance"])),
        load_default=lambda: ["card"],
        validate=validate.Length(min=1),
    )
    default_days_until_due = fields.Integer(
        load_default=30, validate=validate.Range(min=0, max=365)
    )
    auto_activate = fields.String(
        load_default="never", validate=validate.OneOf(["never", "when_confirmed", "always"])
    )
    closed_stage = fields.String(load_default="Closed Won")


class AmendmentsSchema(_Strict):
    # How Stripe bills a change to a running subscription, unless chosen on the review page.
    proration_behavior = fields.String(
        load_default="create_prorations",
        validate=validate.OneOf(["create_prorations", "always_invoice", "none"]),
    )


class NonPaymentSchema(_Strict):
    hold_when_overdue_days = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=0)
    )
    hold_when_uncollectible = fields.Boolean(load_default=False)
    hold_after_payment_failures = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1)
    )
    release_when_paid = fields.Boolean(load_default=True)


class CreditSchema(_Strict):
    zero_limit_means_no_limit = fields.Boolean(load_default=True)
    hold_policy = fields.String(
        load_default="keep_running",
        validate=validate.OneOf(["keep_running", "pause_keep_as_draft", "pause_void"]),
    )
    non_payment = fields.Nested(NonPaymentSchema, load_default=dict)


class JobsSchema(_Strict):
    enabled = fields.Boolean(load_default=True)
    poll_crm_seconds = fields.Integer(load_default=60, validate=validate.Range(min=1))
    worker_seconds = fields.Integer(load_default=2, validate=validate.Range(min=1))
    reconcile_seconds = fields.Integer(load_default=900, validate=validate.Range(min=10))
    credit_check_seconds = fields.Integer(load_default=3600, validate=validate.Range(min=10))
    max_attempts = fields.Integer(load_default=8, validate=validate.Range(min=1, max=50))
    backoff_base_seconds = fields.Integer(load_default=30, validate=validate.Range(min=1))
    # Filling CRM batches in a burst (services/outbox.py, "Filling batches"): a partial batch
    # waits while Stripe events wait in the inbox or until nothing joined it for
    # batch_wait_seconds, and never longer than batch_wait_max_seconds.
    batch_wait_seconds = fields.Float(load_default=0.5, validate=validate.Range(min=0, max=60))
    batch_wait_max_seconds = fields.Float(
        load_default=30.0, validate=validate.Range(min=0, max=300)
    )
    # Stripe invoice events handled together by one worker pass (one fetch per invoice,
    # one transaction, one CRM record per invoice however many events it had).
    event_batch_size = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=5000))
    # Longer than Stripe's three days of webhook retries, so a redelivery still finds its
    # event and is not handled twice.
    retention_days = fields.Integer(load_default=30, validate=validate.Range(min=4))


class SubscriberSchema(_Strict):
    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_]+$"))
    url = fields.Url(required=True, require_tld=False, schemes={"http", "https"})
    events = fields.List(fields.String(), load_default=lambda: ["*"])


class OutboundSchema(_Strict):
    allowed_schemes = fields.List(fields.String(), load_default=lambda: ["https"])
    allowed_hosts = fields.List(fields.String(), load_default=list)
    allow_private_addresses = fields.Boolean(load_default=False)
    subscribers = fields.List(fields.Nested(SubscriberSchema), load_default=list)


class ImportSchema(_Strict):
    account_id_metadata_key = fields.String(load_default="crm_account_id")
    match_rule = fields.String(
        load_default="none", validate=validate.OneOf(["none", "name", "metadata"])
    )
    match_metadata_key = fields.String(load_default=None, allow_none=True)
    create_missing_accounts = fields.Boolean(load_default=False)
    chunk_size = fields.Integer(load_default=5000, validate=validate.Range(min=1, max=100_000))


class ConfigSchema(_Strict):
    app = fields.Nested(AppSchema, load_default=dict)
    database = fields.Nested(DatabaseSchema, load_default=dict)
    web = fields.Nested(WebSchema, load_default=dict)
    crm = fields.Nested(CrmSchema, load_default=dict)
    stripe = fields.Nested(StripeSchema, load_default=dict)
    plans = fields.Nested(PlansSchema, load_default=dict)
    amendments = fields.Nested(AmendmentsSchema, load_default=dict)
    credit = fields.Nested(CreditSchema, load_default=dict)
    jobs = fields.Nested(JobsSchema, load_default=dict)
    outbound = fields.Nested(OutboundSchema, load_default=dict)
    import_ = fields.Nested(ImportSchema, load_default=dict, data_key="import", attribute="import")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Secrets:
    """Credentials read from the environment; each value is masked in any repr."""

    stripe_api_key: Secret | None = None
    stripe_webhook_secrets: tuple[Secret, ...] = ()
    secret_key: Secret | None = None
    api_tokens: Mapping[str, str] = field(default_factory=dict)  # token -> role
    salesforce_username: str | None = None
    salesforce_password: Secret | None = None
    salesforce_security_token: Secret | None = None
    salesforce_client_id: str | None = None
    salesforce_client_secret: Secret | None = None
    salesforce_outbound_token: Secret | None = None
    dynamics_client_secret: Secret | None = None
    dynamics_certificate_key: Secret | None = None
    dynamics_webhook_key: Secret | None = None
    entra_client_secret: Secret | None = None
    subscriber_secrets: Mapping[str, Secret] = field(default_factory=dict)
    #: When set, ``/metrics`` answers only ``Authorization: Bearer <this>``.
    metrics_token: Secret | None = None

    def all_values(self) -> list[str]:
        """Every secret string, so the log filter can redact them wherever they appear."""
        values: list[str] = []
        for value in self.__dict__.values():
            if isinstance(value, Secret):
                values.append(value.reveal())
            elif isinstance(value, tuple):
                values.extend(v.reveal() for v in value if isinstance(v, Secret))
        values.extend(self.api_tokens.keys())
        values.extend(s.reveal() for s in self.subscriber_secrets.values())
        return [v for v in values if v]


@dataclass(frozen=True)
class Config:
    """Validated settings. ``raw`` keeps the validated nested dict for sections read by key."""

    raw: Mapping[str, Any]
    secrets: Secrets
    source: str | None = None

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.raw[name]
        assert isinstance(value, Mapping)
        return value

    @property
    def database_url(self) -> str:
        return str(self.raw["database"]["url"])

    @property
    def crm_kind(self) -> Literal["salesforce", "dynamics"]:
        kind = self.raw["crm"]["kind"]
        assert kind in ("salesforce", "dynamics")
        return kind  # type: ignore[no-any-return]

    @property
    def mapping_path(self) -> Path:
        configured = self.raw["crm"]["mapping"]
        if configured:
            path = Path(configured)
            return path if path.is_absolute() else _resolve_relative(path)
        return default_mapping(self.crm_kind)

    @property
    def base_url(self) -> str:
        return str(self.raw["app"]["base_url"]).rstrip("/")


def _resolve_relative(path: Path) -> Path:
    """A relative ``crm.mapping`` is read from the working folder, else the default mappings'
    folder (so ``mappings/dynamics.yaml`` works both in a checkout and installed)."""
    for candidate in (Path.cwd() / path, mappings_dir().parent / path):
        if candidate.exists():
            return candidate
    return Path.cwd() / path


# --------------------------------------------------------------------------- loading


def _flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    problems: list[str] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                problems.extend(_flatten_errors(value, prefix))
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            problems.extend(_flatten_errors(value, path))
    elif isinstance(messages, list):
        for message in messages:
            problems.extend(_flatten_errors(message, prefix))
    else:
        text = str(messages)
        if text == "Unknown field.":
            text = "unknown key; remove it or check its spelling against config.example.yaml"
        problems.append(f"{prefix}: {text}" if prefix else text)
    return problems


def _find_secret_keys(data: Any, prefix: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            lowered = str(key).lower()
            if any(word in lowered for word in SECRET_WORDS) and value not in (None, ""):
                found.append(
                    f"{path}: secrets must not be stored in the config file; "
                    "remove the key and set the matching environment variable instead "
                    "(see config.example.yaml)"
                )
            found.extend(_find_secret_keys(value, path))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found.extend(_find_secret_keys(item, f"{prefix}[{index}]"))
    return found


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, value in env.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            parsed = yaml.safe_load(value) if value != "" else None
        except yaml.YAMLError:
            parsed = value
        target = data
        for part in path[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                problems.append(f"{'.'.join(path)}: {name} overrides a key that is not a section")
                break
            target = nested
        else:
            target[path[-1]] = parsed
    if env.get("DATABASE_URL"):
        url = env["DATABASE_URL"]
        # Heroku-style postgres:// URLs name no driver; SQLAlchemy needs psycopg 3 named.
        for legacy in ("postgres://", "postgresql://"):
            if url.startswith(legacy):
                url = "postgresql+psycopg://" + url[len(legacy) :]
        data.setdefault("database", {})["url"] = url
    if env.get("PORT"):
        try:
            data.setdefault("web", {})["port"] = int(env["PORT"])
        except ValueError:
            problems.append(f"web.port: PORT={env['PORT']!r} is not a port number")
    return problems


def _read_yaml(path: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return {}, [f"config file {path}: cannot be read ({exc.strerror}); check --config"]
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        return {}, [f"config file {path}: is not valid YAML ({exc})"]
    if not isinstance(data, dict):
        return {}, [f"config file {path}: the top level must be a mapping of sections"]
    return data, []


def _read_secrets(env: Mapping[str, str], subscriber_names: list[str]) -> tuple[Secrets, list[str]]:
    problems: list[str] = []

    def secret(purpose: str) -> Secret | None:
        value = env.get(SECRET_ENV[purpose], "")
        return Secret(value) if value else None

    tokens: dict[str, str] = {}
    for entry in filter(
        None, (e.strip() for e in env.get(SECRET_ENV["api_tokens"], "").split(","))
    ):
        role, sep, token = entry.partition(":")
        if not sep or role not in ROLES or len(token) < 16:
            problems.append(
                f"{SECRET_ENV['api_tokens']}: each entry must be ROLE:TOKEN with ROLE one of "
                f"{', '.join(ROLES)} and a token of at least 16 characters"
            )
            continue
        tokens[token] = role
    webhook_secrets = tuple(
        Secret(s.strip())
        for s in env.get(SECRET_ENV["stripe_webhook_secrets"], "").split(",")
        if s.strip()
    )
    subscriber_secrets: dict[str, Secret] = {}
    for name in subscriber_names:
        var = f"DEALBRIDGE_SUBSCRIBER_{name.upper()}_SECRET"
        if env.get(var):
            subscriber_secrets[name] = Secret(env[var])
        else:
            problems.append(
                f"outbound.subscribers[{name}]: set {var} to the secret that signs its events"
            )
    secrets = Secrets(
        stripe_api_key=secret("stripe_api_key"),
        stripe_webhook_secrets=webhook_secrets,
        secret_key=secret("secret_key"),
        api_tokens=tokens,
        salesforce_username=env.get(SECRET_ENV["salesforce_username"]) or None,
        salesforce_password=secret("salesforce_password"),
        salesforce_security_token=secret("salesforce_security_token"),
        salesforce_client_id=env.get(SECRET_ENV["salesforce_client_id"]) or None,
        salesforce_client_secret=secret("salesforce_client_secret"),
        salesforce_outbound_token=secret("salesforce_outbound_token"),
        dynamics_client_secret=secret("dynamics_client_secret"),
        dynamics_certificate_key=secret("dynamics_certificate_key"),
        metrics_token=secret("metrics_token"),
        dynamics_webhook_key=secret("dynamics_webhook_key"),
        entra_client_secret=secret("entra_client_secret"),
        subscriber_secrets=subscriber_secrets,
    )
    return secrets, problems


def _required_secret_problems(raw: Mapping[str, Any], secrets: Secrets) -> list[str]:
    """Secrets the configured deployment cannot run without."""
    problems: list[str] = []

    def need(purpose: str, why: str) -> None:
        problems.append(f"{SECRET_ENV[purpose]}: not set; {why}")

    if secrets.stripe_api_key is None:
        need("stripe_api_key", "set it to your Stripe secret key (sk_test_... or sk_live_...)")
    elif not secrets.stripe_api_key.reveal().startswith(("sk_", "rk_")):
        problems.append(
            f"{SECRET_ENV['stripe_api_key']}: must be a Stripe secret or restricted key"
        )
    if not secrets.stripe_webhook_secrets:
        need(
            "stripe_webhook_secrets",
            "set it to the endpoint's signing secret (whsec_...; comma-separate several "
            "while rotating); `dealbridge stripe webhook-setup` prints it",
        )
    if secrets.secret_key is None or len(secrets.secret_key.reveal()) < 32:
        need("secret_key", "set it to a random string of at least 32 characters")
    crm = raw.get("crm", {})
    if crm.get("kind", "salesforce") == "salesforce":
        sf = crm.get("salesforce", {})
        if sf.get("auth_flow", "password") == "password":
            if not secrets.salesforce_username:
                need("salesforce_username", "the Salesforce integration user's username")
            if secrets.salesforce_password is None:
                need("salesforce_password", "the Salesforce integration user's password")
        if sf.get("auth_flow") == "client_credentials" or secrets.salesforce_client_id:
            if not secrets.salesforce_client_id:
                need("salesforce_client_id", "the connected app's consumer key")
            if secrets.salesforce_client_secret is None:
                need("salesforce_client_secret", "the connected app's consumer secret")
    else:
        dyn = crm.get("dynamics", {})
        for key in ("environment_url", "tenant_id", "client_id"):
            if not dyn.get(key):
                problems.append(f"crm.dynamics.{key}: required when crm.kind is dynamics")
        if secrets.dynamics_client_secret is None and not (
            dyn.get("certificate_thumbprint") and secrets.dynamics_certificate_key
        ):
            need(
                "dynamics_client_secret",
                "the app registration's client secret (or set crm.dynamics."
                "certificate_thumbprint and DYNAMICS_CERTIFICATE_KEY)",
            )
    if raw.get("web", {}).get("entra", {}).get("client_id") and secrets.entra_client_secret is None:
        need("entra_client_secret", "the client secret of the app registration web.entra.client_id")
    return problems


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_secrets: bool = True,
) -> Config:
    """Load, override, validate. Raises ConfigError listing every problem found."""
    env = os.environ if env is None else env
    source = str(path) if path is not None else env.get("DEALBRIDGE_CONFIG") or None
    problems: list[str] = []
    data: dict[str, Any] = {}
    if source:
        data, problems = _read_yaml(Path(source))
    problems.extend(_find_secret_keys(data))
    problems.extend(_apply_env_overrides(data, env))
    raw: dict[str, Any] = {}
    schema_valid = False
    try:
        raw = ConfigSchema().load(data)
        schema_valid = True
    except ValidationError as exc:
        problems.extend(_flatten_errors(exc.messages))
        # Keep checking secrets against the defaults, so one run reports everything.
        valid: Any = exc.valid_data if isinstance(exc.valid_data, dict) else {}
        raw = ConfigSchema(unknown=EXCLUDE).load({}) | {
            k: v for k, v in valid.items() if isinstance(v, dict)
        }
    subscriber_names = [
        s["name"] for s in raw.get("outbound", {}).get("subscribers", []) if "name" in s
    ]
    secrets, secret_problems = _read_secrets(env, subscriber_names)
    problems.extend(secret_problems)
    if require_secrets:
        problems.extend(_required_secret_problems(raw, secrets))
    if schema_valid:
        problems.extend(_semantic_problems(raw))
    if problems:
        raise ConfigError(problems)
    return Config(raw=raw, secrets=secrets, source=source)


def _semantic_problems(raw: Mapping[str, Any]) -> list[str]:
    problems = []
    url = raw["database"]["url"]
    if not url.startswith(("sqlite:", "postgresql")):
        problems.append(
            "database.url: only sqlite:///PATH and postgresql+psycopg://... are supported"
        )
    rule = raw["import"]
    if rule["match_rule"] == "metadata" and not rule["match_metadata_key"]:
        problems.append(
            "import.match_metadata_key: required when import.match_rule is metadata "
            "(the customer metadata key holding the account name)"
        )
    for index, origin in enumerate(raw["web"]["frame_ancestors"]):
        if not origin.startswith("https://") and not origin.startswith("http://127.0.0.1"):
            problems.append(
                f"web.frame_ancestors[{index}]: {origin!r} must be an https:// origin of your CRM"
            )
    entra = raw["web"]["entra"]
    if entra["tenant_id"] and not entra["audience"]:
        problems.append(
            "web.entra.audience: required with web.entra.tenant_id; list the dealbridge API "
            "registration's Application ID URI (api://...) and/or its client id"
        )
    if entra["audience"] and not entra["tenant_id"]:
        problems.append(
            "web.entra.tenant_id: required with web.entra.audience; the Directory (tenant) ID "
            "whose users may sign in"
        )
    return problems


def config_for_tests(overrides: Mapping[str, Any] | None = None, **secrets: Any) -> Config:
    """A valid Config built in code (tests, the demo): defaults plus the given sections."""
    data: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        data[key] = value
    raw = ConfigSchema(unknown=EXCLUDE).load(data)
    return Config(raw=raw, secrets=Secrets(**secrets))
