"""`dealbridge sandbox stripe|salesforce|dynamics`: run a local stand-in in the foreground."""

from __future__ import annotations

from typing import Any

import click

from connector.bundled import salesforce_metadata_dir
from connector.demo import SAMPLE_ORG
from connector.demo.dataverse import customize, load_seed, snippet
from connector.demo.dynamics_world import DEMO_APP_ROLES
from sandboxes import salesforce as salesforce_emulator
from sandboxes import stripe as stripe_emulator


@click.group()
def sandbox() -> None:
    """Local Stripe, Salesforce and Dataverse sandboxes speaking the real wire protocols."""


@sandbox.command("stripe")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12111, show_default=True)
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding beyond loopback.")
def stripe_sandbox(host: str, port: int, allow_non_loopback: bool) -> None:
    """Serve the Stripe sandbox until interrupted."""
    stripe_emulator.serve_forever(host, port, allow_non_loopback=allow_non_loopback)


@sandbox.command("salesforce")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12112, show_default=True)
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A YAML/JSON seed to load instead of dealbridge's sample org.",
)
@click.option("--empty", is_flag=True, help="Start with no records (the schema only).")
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding beyond loopback.")
def salesforce_sandbox(
    host: str, port: int, seed: str | None, empty: bool, allow_non_loopback: bool
) -> None:
    """Serve the Salesforce sandbox until interrupted.

    dealbridge's custom objects and fields are deployed, and the sample org (the four demo
    deals) is loaded unless --seed or --empty says otherwise.
    """
    salesforce_emulator.serve_forever(
        host,
        port,
        seed=None if empty else (seed or SAMPLE_ORG),
        metadata_dir=salesforce_metadata_dir(),
        allow_non_loopback=allow_non_loopback,
    )


@sandbox.command("dynamics")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12113, show_default=True)
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A YAML/JSON seed (Dataverse rows, or a Salesforce-format org to translate) to load "
    "instead of dealbridge's sample org.",
)
@click.option("--empty", is_flag=True, help="Start with no rows (dealbridge's columns only).")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    default=["http://127.0.0.1:8000/auth/entra/callback"],
    show_default=True,
    help="A Web redirect URI of the app registration (dealbridge's app.base_url + "
    "/auth/entra/callback), for signing in from the plan URL; repeatable.",
)
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding beyond loopback.")
def dynamics_sandbox(
    host: str,
    port: int,
    seed: str | None,
    empty: bool,
    redirect_uris: tuple[str, ...],
    allow_non_loopback: bool,
) -> None:
    """Serve the Dataverse (Dynamics 365) sandbox until interrupted.

    Its Entra tenant signs the demo users in (an account picker, no password) for the
    registered redirect URIs.

    dealbridge's tables and columns are deployed (as `python -m
    connector.crm.dynamics.definitions --apply` deploys them), change tracking is on for
    opportunity and account, and the sample org (the four demo deals) is loaded unless
    --seed or --empty says otherwise. Prints the app registration's credentials and an msal +
    requests snippet to act on it.
    """
    from sandboxes.dataverse import serve_forever

    def prepare(sandbox: Any) -> None:
        customize(sandbox)
        for uri in redirect_uris:
            sandbox.allow_redirect_uri(uri)
        if not empty:
            load_seed(sandbox, seed or SAMPLE_ORG)

    def banner(sandbox: Any) -> str:
        config = (
            "crm:\n  kind: dynamics\n  dynamics:\n"
            f"    environment_url: {sandbox.url}\n"
            f"    tenant_id: {sandbox.tenant_id}\n"
            f"    client_id: {sandbox.client_id}\n"
            "web:\n  entra:\n    roles: {"
            + ", ".join(f'"{value}": {role}' for value, role in DEMO_APP_ROLES.items())
            + "}\n"
        )
        return (
            "\nPoint dealbridge at it (dealbridge.yaml, with DYNAMICS_CLIENT_SECRET="
            f"{sandbox.client_secret}):\n\n{config}\nAct on it with msal + requests:\n\n"
            f"{snippet(sandbox)}\n"
        )

    try:
        serve_forever(
            host, port, prepare=prepare, banner=banner, allow_non_loopback=allow_non_loopback
        )
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from exc


COMMANDS = [sandbox]
