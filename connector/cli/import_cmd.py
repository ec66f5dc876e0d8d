"""`dealbridge import stripe`: bring an existing Stripe account under dealbridge.

    dealbridge import stripe [--dry-run] [--create-missing-accounts]
                             [--phase customers|products|invoices|all] [--limit N] [--restart]
                             [--announce-invoices]

Links Stripe customers to CRM accounts, imports products and prices as CRM products and
price book entries, and backfills invoice records (``connector/services/importer.py``). It
prints a progress line per step (counts and rate), resumes where an interrupted run
stopped, and with ``--dry-run`` only prints what it would do.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from connector.billing.gateway import StripeGatewayError
from connector.cli.state import CliState, pass_state
from connector.crm.base import CrmError
from connector.runtime import Runtime
from connector.services import importer
from connector.services.import_run import (
    PHASES,
    ImportInterrupted,
    ImportOptions,
    ImportReport,
    reset,
)


class ProgressLine:
    """``customers: 1,200 (340/s)``, rewritten in place on a terminal, one line otherwise."""

    def __init__(self, echo: Callable[..., None], clock: Callable[[], float] = time.monotonic):
        self.echo = echo
        self.clock = clock
        self.started: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, phase: str, count: int) -> None:
        now = self.clock()
        start = self.started.setdefault(phase, now)
        total = self.counts[phase] = self.counts.get(phase, 0) + count
        elapsed = now - start
        rate = f"{total / elapsed:,.0f}/s" if elapsed > 0 else "-"
        self.echo(f"  {phase}: {total:,} ({rate})")


def print_report(report: ImportReport, echo: Callable[..., None]) -> None:
    heading = "Dry run: nothing was changed. It would:" if report.dry_run else "Imported:"
    echo(heading)
    for line in report.planned:
        echo(f"  {line}")
    linked = ", ".join(f"{n} by {how}" for how, n in sorted(report.linked.items())) or "none"
    echo(f"  customers linked: {report.linked_total} ({linked}); already linked: "
         f"{report.already_linked}")  # fmt: skip
    echo(f"  products: {report.products}; prices: {report.prices}")
    echo(f"  invoices: {report.invoices} (of {report.invoice_customers} linked customers)")
    if report.unmatched:
        echo(f"  {len(report.unmatched)} customers need a person (no account found):")
        for item in report.unmatched:
            who = ", ".join(v for v in (item.name, item.email) if v)
            echo(f"    {item.customer_id} {who}: {item.reason}")
        echo("  Link them by setting metadata crm_account_id on the Stripe customer, or rerun "
             "with --create-missing-accounts.")  # fmt: skip
    if report.failures:
        echo(f"  {len(report.failures)} records the CRM refused:")
        for key, error in report.failures:
            echo(f"    {key}: {error}")


@click.group("import")
def import_group() -> None:
    """Import existing data into dealbridge."""


@import_group.command("stripe")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option(
    "--create-missing-accounts",
    is_flag=True,
    default=None,
    help="Create a CRM account for a customer no account matches (default: config).",
)
@click.option(
    "--phase",
    type=click.Choice([*PHASES, "all"]),
    default="all",
    show_default=True,
    help="Run one phase only.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most N Stripe objects per phase.")
@click.option("--restart", is_flag=True, help="Forget an interrupted import; start from the top.")
@click.option(
    "--announce-invoices",
    is_flag=True,
    help="Emit invoice.status_changed to subscribers for backfilled invoices (default: no, "
    "history is not news).",
)
@pass_state
def import_stripe_command(
    state: CliState,
    dry_run: bool,
    create_missing_accounts: bool | None,
    phase: str,
    limit: int | None,
    restart: bool,
    announce_invoices: bool,
) -> None:
    """Link Stripe customers to CRM accounts, import the catalog, backfill invoices."""
    runtime = Runtime(state.config())
    try:
        if restart and not dry_run:
            reset(runtime)
        options = ImportOptions(
            dry_run=dry_run,
            phases=PHASES if phase == "all" else (phase,),
            create_missing_accounts=create_missing_accounts,
            limit=limit,
            announce_invoices=announce_invoices,
        )
        try:
            report = importer.import_stripe(runtime, options, progress=ProgressLine(click.echo))
        except ImportInterrupted as exc:
            click.echo(f"Import stopped: {exc}", err=True)
            sys.exit(1)
        except (StripeGatewayError, CrmError) as exc:
            # Everything done so far is saved with its cursor: running again resumes.
            click.echo(f"Import stopped: {exc}. Run the same command again to resume.", err=True)
            sys.exit(1)
        print_report(report, click.echo)
    finally:
        runtime.close()


COMMANDS = [import_group]
