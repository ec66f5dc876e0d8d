"""`dealbridge demo`: the whole main job on this machine, against local sandboxes.

It starts the Stripe sandbox and a CRM sandbox (Salesforce, or Dataverse with
``--crm dynamics``) in-process with the sample org, configures dealbridge against them (its
own SQLite file, webhooks registered through the Stripe sandbox's API, Outbound Messages from
Salesforce or a Dataverse web hook), activates the closed deals, and keeps serving so a
person can open the review page and act on either sandbox with stripe-python and
simple-salesforce or msal + requests. ``--once`` does the work, prints a JSON summary, exits.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from connector.demo.dataverse import snippet
from connector.demo.dynamics_world import DEMO_APP_ROLES, DynamicsLocalWorld
from connector.demo.world import DEMO_STRIPE_KEY, LocalWorld
from connector.logs import configure_logging
from connector.services.plans import review_url
from connector.store.models import InvoiceMirror, Plan
from connector.web.auth import launch_signature
from sandboxes.dataverse import DEMO_USERS
from sandboxes.salesforce import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_USERNAME,
)

log = logging.getLogger(__name__)

DEMO_SECTIONS: dict[str, Any] = {
    # Plans that need no confirmation activate by themselves; the rest wait for review.
    "plans": {"auto_activate": "when_confirmed"},
    "jobs": {"poll_crm_seconds": 5, "worker_seconds": 1, "reconcile_seconds": 60},
    "credit": {
        "non_payment": {
            "hold_when_overdue_days": 30,
            "hold_when_uncollectible": True,
            "release_when_paid": True,
        }
    },
}


#: The roles the demo prints launch links for, and who signs in with each.
ROLES = ("sales_rep", "finance", "admin")
_DEMO_USERS = {
    "sales_rep": "demo.rep@dealbridge.example",
    "finance": "demo.finance@dealbridge.example",
    "admin": "demo.admin@dealbridge.example",
}


def launch_link(world: LocalWorld, deal_id: str, role: str = "finance") -> str:
    """A signed link opening the deal's review page as a demo user with ``role``.

    Launch links are single-use (a nonce keeps two links made in one second apart) and
    live at most web.launch_link_ttl_seconds, by the app's own clock.
    """
    assert world.runtime is not None
    ttl = int(world.runtime.config.section("web")["launch_link_ttl_seconds"])
    exp = int(world.runtime.clock().timestamp()) + ttl
    user = _DEMO_USERS.get(role, "demo.rep@dealbridge.example")
    nonce = uuid.uuid4().hex[:16]
    sig = launch_signature(world.secret_key, deal_id, user, role, exp, nonce)
    return (
        f"{world.app_url}/launch?deal={deal_id}&user={user}&role={role}&exp={exp}"
        f"&nonce={nonce}&sig={sig}"
    )


def summary(world: LocalWorld) -> dict[str, Any]:
    assert world.runtime is not None
    deals: list[dict[str, Any]] = []
    with world.runtime.db.session() as session:
        for plan in session.scalars(select(Plan).order_by(Plan.created_at, Plan.deal_id)):
            of_deal = InvoiceMirror.crm_deal_id == plan.deal_id
            if plan.stripe_subscription_id:
                of_deal = of_deal | (InvoiceMirror.subscription_id == plan.stripe_subscription_id)
            invoices = session.scalars(
                select(InvoiceMirror).where(of_deal).order_by(InvoiceMirror.created)
            )
            deals.append(
                {
                    "deal_id": plan.deal_id,
                    "deal": (plan.deal_data or {}).get("name"),
                    "account": ((plan.deal_data or {}).get("account") or {}).get("name"),
                    "status": plan.status,
                    "reason": plan.status_reason,
                    "stripe_customer": plan.stripe_customer_id,
                    "subscription": plan.stripe_subscription_id,
                    "subscription_schedule": plan.stripe_schedule_id,
                    "invoice": plan.stripe_invoice_id,
                    "invoices": [
                        {
                            "id": invoice.id,
                            "status": invoice.status,
                            "amount_due": invoice.amount_due,
                            "currency": invoice.currency,
                        }
                        for invoice in invoices
                    ],
                    "review_page": launch_link(world, plan.deal_id, role="sales_rep"),
                    "review_page_by_role": {
                        role: launch_link(world, plan.deal_id, role=role) for role in ROLES
                    },
                    **_sign_in_link(world, plan.id),
                }
            )
    return {
        "app": world.app_url,
        "stripe_sandbox": world.stripe_url,
        f"{world.crm_name}_sandbox": world.crm_url,
        "deals": deals,
    }


def _sign_in_link(world: LocalWorld, plan_id: str) -> dict[str, str]:
    """With Dynamics, the plan URL dealbridge writes to the opportunity: opened without a
    session it signs the person in through the sandbox's Entra ID (issue 17). Salesforce's
    demo has no connected app configured, so its plan URL would answer 401: not printed."""
    if not isinstance(world, DynamicsLocalWorld) or world.runtime is None:
        return {}
    return {"plan_url": review_url(world.runtime, plan_id)}


def _crm_lines(world: LocalWorld) -> list[str]:
    if isinstance(world, DynamicsLocalWorld):
        sandbox = world.dataverse
        roles = dict(DEMO_APP_ROLES)
        return [
            f"  Dataverse sandbox     {sandbox.url}   (environment {sandbox.environment_url})",
            f"      tenant id {sandbox.tenant_id}",
            f"      client id {sandbox.client_id}  secret {sandbox.client_secret}",
            "      Microsoft sign-in (the plan URLs): pick one of these users, no password:",
            *(
                f"        {user.username:<45} "
                + (
                    ", ".join(roles[r].replace("_", " ") for r in user.roles)
                    or "no app role: refused"
                )
                for user in DEMO_USERS
            ),
            "",
            "  Act on it with msal + requests (paste into python):",
            "",
            *(f"      {line}" for line in snippet(sandbox).splitlines()),
        ]
    return [
        f"  Salesforce sandbox    {world.salesforce_url}",
        f"      username {DEMO_USERNAME}  password {DEMO_PASSWORD}  (no security token)",
        f"      OAuth client id {DEMO_CLIENT_ID}  secret {DEMO_CLIENT_SECRET}",
    ]


def new_plan_links(world: LocalWorld, seen: set[str]) -> list[str]:
    """Launch links, one per role, for plans made since ``seen`` (which is updated): how a
    deal closed while the demo runs is opened, as a rep or otherwise."""
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        fresh = [
            (plan.deal_id, (plan.deal_data or {}).get("name") or plan.deal_id, plan.id)
            for plan in session.scalars(select(Plan).order_by(Plan.created_at, Plan.deal_id))
            if plan.deal_id not in seen
        ]
    lines: list[str] = []
    for deal_id, name, plan_id in fresh:
        seen.add(deal_id)
        lines.append(f"  New plan: {name}")
        if plan_url := _sign_in_link(world, plan_id).get("plan_url"):
            lines.append(f"        plan URL (in Dynamics; signs in through Entra ID): {plan_url}")
        lines += [
            f"        review as {role.replace('_', ' ')}: {launch_link(world, deal_id, role=role)}"
            for role in ROLES
        ]
    return lines


def banner(world: LocalWorld, result: dict[str, Any]) -> str:
    lines = [
        "",
        "dealbridge demo is running. Press Ctrl-C to stop.",
        "",
        f"  dealbridge app        {world.app_url}   (health: {world.app_url}/healthz)",
        f"  Stripe sandbox        {world.stripe_url}   api key: {DEMO_STRIPE_KEY}",
        *_crm_lines(world),
        "",
        "  API tokens (Authorization: Bearer ...):",
        *(f"      {role:<10} {token}" for role, token in world.api_tokens.items()),
        "",
        "  Deals:",
    ]
    for deal in result["deals"]:
        lines.append(f"    - {deal['deal']} ({deal['account']}): {deal['status']}")
        if deal["reason"]:
            lines.append(f"        {deal['reason']}")
        if deal.get("plan_url"):
            lines.append(
                f"        plan URL (in Dynamics; signs in through Entra ID): {deal['plan_url']}"
            )
        for role, link in deal["review_page_by_role"].items():
            lines.append(f"        review as {role.replace('_', ' ')}: {link}")
    credit = "creditonhold" if isinstance(world, DynamicsLocalWorld) else "Credit_Hold__c"
    lines += [
        "",
        f"  Try: close a deal or toggle {credit} in the CRM sandbox, or pay an invoice in",
        "  the Stripe sandbox, and watch dealbridge react (README: 'The demo'). Each link",
        "  opens its own deal for 8 hours; a deal closed while the demo runs gets its links",
        "  printed here as soon as dealbridge makes its plan.",
        "",
    ]
    return "\n".join(lines)


@click.command()
@click.option("--once", is_flag=True, help="Do the work, print a JSON summary and exit.")
@click.option("--port", type=int, default=None, help="dealbridge app port (default 8000).")
@click.option("--stripe-port", type=int, default=None, help="Stripe sandbox port (default 12111).")
@click.option(
    "--crm",
    type=click.Choice(["salesforce", "dynamics"]),
    default="salesforce",
    show_default=True,
    help="The CRM sandbox to run: Salesforce, or Dynamics 365 (Dataverse).",
)
@click.option(
    "--crm-port",
    "--salesforce-port",
    "crm_port",
    type=int,
    default=None,
    help="CRM sandbox port (default 12112 for Salesforce, 12113 for Dynamics).",
)
@click.option(
    "--database",
    type=click.Path(dir_okay=False),
    default="var/demo.sqlite3",
    show_default=True,
    help="SQLite file for the demo (recreated on every run).",
)
def demo(
    once: bool,
    port: int | None,
    stripe_port: int | None,
    crm: str,
    crm_port: int | None,
    database: str,
) -> None:
    """Run the main job against local Stripe and CRM (Salesforce or Dynamics) sandboxes."""
    configure_logging("WARNING" if once else "INFO", "text", ())
    db_path = Path(database)
    for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        stale.unlink(missing_ok=True)
    default_ports = (0, 0, 0) if once else (8000, 12111, 12113 if crm == "dynamics" else 12112)
    world_class = DynamicsLocalWorld if crm == "dynamics" else LocalWorld
    world = world_class(
        f"sqlite:///{db_path}",
        app_port=port if port is not None else default_ports[0],
        stripe_port=stripe_port if stripe_port is not None else default_ports[1],
        salesforce_port=crm_port if crm_port is not None else default_ports[2],
        sections=DEMO_SECTIONS,
        auto_deliver=not once,
    )
    try:
        world.start()
    except OSError as exc:
        click.echo(f"cannot start the demo: {exc}; choose other ports with --port etc.", err=True)
        sys.exit(2)
    try:
        world.sync()
        result = summary(world)
        if once:
            click.echo(json.dumps(result, indent=2))
            return
        click.echo(banner(world, result))
        assert world.runtime is not None
        scheduler = world.jobs.build_scheduler(world.runtime, ("clock", "worker"), blocking=False)
        scheduler.start()
        stop = threading.Event()
        seen = {deal["deal_id"] for deal in result["deals"]}
        try:
            while not stop.wait(2):
                try:
                    lines = new_plan_links(world, seen)
                except Exception:  # a busy store: the next round prints them
                    log.exception("listing new plans for their launch links failed")
                    continue
                for line in lines:
                    click.echo(line)
        except KeyboardInterrupt:
            click.echo("stopping")
        finally:
            scheduler.shutdown(wait=False)
    finally:
        world.stop()


COMMANDS = [demo]
