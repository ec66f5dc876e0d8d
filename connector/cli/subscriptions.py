"""`dealbridge subscriptions ...`: a customer's subscriptions and the lifecycle actions.

The same service as the customer page and the API: every action is audited (the actor is
``cli:<user>``, or ``--actor``) and refused on an account on credit hold when it bills.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from connector.cli.state import CliState, pass_state
from connector.runtime import Runtime
from connector.services import bill_again as billing_again
from connector.services import (
    catalog_changes,
    subscription_changes,
    subscription_listing,
)
from connector.services.lifecycle_operations import LifecycleError


@click.group()
def subscriptions() -> None:
    """Subscriptions of linked customers: list, cancel, reactivate, bill again, archive."""


def _run(state: CliState, action: Callable[[Runtime], Any]) -> None:
    runtime = Runtime(state.config())
    try:
        result = action(runtime)
    except LifecycleError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        runtime.close()
    click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


actor_option = click.option(
    "--actor", default=None, help="Who is acting, for the audit log (default cli:<user>)."
)


def _actor(actor: str | None) -> str:
    return actor or f"cli:{getpass.getuser()}"


@subscriptions.command("list")
@click.argument("customer_id")
@pass_state
def list_(state: CliState, customer_id: str) -> None:
    """Current, one-time and inactive subscriptions of a Stripe customer, as JSON."""
    _run(state, lambda rt: subscription_listing.list_subscriptions(rt, customer_id).as_json())


@subscriptions.command("cancel")
@click.argument("subscription_id")
@click.option("--at-period-end", is_flag=True, help="End at the current period's end.")
@actor_option
@pass_state
def cancel(state: CliState, subscription_id: str, at_period_end: bool, actor: str | None) -> None:
    """Cancel a subscription now (or at the end of its period)."""
    _run(
        state,
        lambda rt: {
            "subscription_id": subscription_id,
            "outcome": subscription_changes.cancel(
                rt, subscription_id, at_period_end=at_period_end, actor=_actor(actor)
            ),
        },
    )


@subscriptions.command("reactivate")
@click.argument("subscription_id")
@actor_option
@pass_state
def reactivate(state: CliState, subscription_id: str, actor: str | None) -> None:
    """Send an invoice for the first period; the new subscription starts when it is paid."""

    def run(rt: Runtime) -> dict[str, Any]:
        op = subscription_changes.reactivate(rt, subscription_id, actor=_actor(actor))
        return {"operation_id": op.id, "status": op.status, "invoice_id": op.invoice_id}

    _run(state, run)


@subscriptions.command("bill-again")
@click.argument("invoice_id")
@actor_option
@pass_state
def bill_again(state: CliState, invoice_id: str, actor: str | None) -> None:
    """Send a new invoice with the same prices and quantities as a one-time invoice."""
    _run(
        state,
        lambda rt: {"invoice_id": billing_again.bill_again(rt, invoice_id, actor=_actor(actor))},
    )


@subscriptions.command("archive")
@click.argument("object_id")
@actor_option
@pass_state
def archive(state: CliState, object_id: str, actor: str | None) -> None:
    """Archive a product (prod_...) or a price (price_...); never deletes, and existing
    subscriptions keep billing."""

    def run(rt: Runtime) -> dict[str, Any]:
        if object_id.startswith("prod_"):
            catalog_changes.archive_product(rt, object_id, actor=_actor(actor))
        elif object_id.startswith("price_"):
            catalog_changes.archive_price(rt, object_id, actor=_actor(actor))
        else:
            raise LifecycleError("Give a product (prod_...) or a price (price_...) id.")
        return {"archived": object_id}

    _run(state, run)


@subscriptions.command("change-price")
@click.argument("price_id")
@click.option("--unit-amount", type=click.IntRange(min=0), help="New amount, minor units.")
@click.option("--interval", type=click.Choice(["day", "week", "month", "year"]))
@click.option("--interval-count", type=click.IntRange(min=1))
@actor_option
@pass_state
def change_price(
    state: CliState,
    price_id: str,
    unit_amount: int | None,
    interval: str | None,
    interval_count: int | None,
    actor: str | None,
) -> None:
    """Create a new price with the change and archive the old one (prices are immutable)."""
    _run(
        state,
        lambda rt: {
            "price_id": catalog_changes.change_price(
                rt, price_id, unit_amount=unit_amount, interval=interval,
                interval_count=interval_count, actor=_actor(actor),
            ),
            "replaces": price_id,
        },
    )  # fmt: skip


COMMANDS = [subscriptions]
