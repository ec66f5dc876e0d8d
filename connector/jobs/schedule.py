"""Every periodic job dealbridge runs, in the order a round runs them, from the services'
public functions.

Clock jobs notice what happens by time or elsewhere (poll the CRM, reconcile with Stripe,
check overdue invoices); worker jobs drain what is due (the inboxes, the outbox, approved
plans). ``JobRegistry.run_once`` runs every clock job once and the worker jobs until idle.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from connector.jobs.dispatch import (
    CRM_EVENT_HANDLERS,
    IMPORT_SENDERS,
    OUTBOX_SENDERS,
    STRIPE_EVENT_HANDLERS,
)
from connector.jobs.housekeeping import prune_inbox, prune_outbox
from connector.jobs.registry import Interval, Job
from connector.runtime import Runtime
from connector.services import (
    account_metrics,
    activation,
    catalog_mirror,
    credit,
    crm_intake,
    reconcile,
    subscription_changes,
)
from connector.services.inbox import busy as inbox_busy
from connector.services.inbox import process_due_events, received_since, spooled_waiting
from connector.services.outbox import FillWait, drain_outbox

DAY_SECONDS = 86_400
#: Messages one drain run sends at most: room for a whole burst's full batches (a Dataverse
#: ``$batch`` of 1,000, a Bulk API job of 2,001), so none is cut short by the run's end.
DRAIN_LIMIT = 5_000


def _every(setting: str) -> Interval:
    """The period a ``jobs`` setting names, read from config when the job is scheduled."""
    return lambda runtime: int(runtime.config.section("jobs")[setting])


def start_up(runtime: Runtime) -> None:
    """What a process running the clock does when it starts: it may have been stopped while
    Stripe changed things, so catch up from Stripe's events at once (the ``catch_up_stripe``
    job runs it within seconds) rather than at the first ``reconcile_seconds``."""
    reconcile.request_catch_up(runtime, "start-up")


def process_inbox(runtime: Runtime) -> int:
    """Handle due Stripe events (webhooks, reconciliation)."""
    return process_due_events(runtime, STRIPE_EVENT_HANDLERS)


def process_crm_inbox(runtime: Runtime) -> int:
    """Handle due CRM changes and their follow-ups."""
    return process_due_events(runtime, CRM_EVENT_HANDLERS)


def fill_wait(runtime: Runtime, *, timed: bool = True) -> FillWait:
    """How the worker fills CRM batches in a burst (``jobs.batch_wait_seconds`` and
    ``batch_wait_max_seconds``): Stripe events still in the inbox are more on its way, and
    so, when the worker keeps up with a stream, are events still arriving (one received
    within ``batch_wait_seconds``); ``sync --once`` waits for the inbox only."""
    jobs = runtime.config.section("jobs")
    quiet = timedelta(seconds=float(jobs["batch_wait_seconds"]))
    source = STRIPE_EVENT_HANDLERS.source

    def upstream_busy(session: Session, now: datetime) -> bool:
        if inbox_busy(session, source, now) or spooled_waiting(runtime, session):
            return True
        return timed and received_since(session, source, now - quiet)

    return FillWait(
        quiet=quiet,
        longest=timedelta(seconds=float(jobs["batch_wait_max_seconds"])),
        upstream_busy=upstream_busy,
        timed=timed,
    )


def drain(runtime: Runtime) -> int:
    """Send due outbox messages: CRM writes, subscriber events, follow-up work; in a burst,
    CRM writes go in full batches (``fill_wait``)."""
    return drain_outbox(runtime, OUTBOX_SENDERS, limit=DRAIN_LIMIT, fill=fill_wait(runtime))


def drain_now(runtime: Runtime) -> int:
    """``sync --once``'s drain: no waiting for time to pass, only for the inbox it drains."""
    return drain_outbox(
        runtime, OUTBOX_SENDERS, limit=DRAIN_LIMIT, fill=fill_wait(runtime, timed=False)
    )


def run_imports(runtime: Runtime) -> int:
    """Run an import from Stripe an admin queued (one per run: each may take hours)."""
    return drain_outbox(runtime, IMPORT_SENDERS, limit=1)


JOBS = (
    Job(
        "prune_inbox", prune_inbox, "clock", lambda _runtime: DAY_SECONDS, "old inbox events pruned"
    ),
    Job(
        "prune_outbox",
        prune_outbox,
        "clock",
        lambda _runtime: DAY_SECONDS,
        "old outbox messages pruned",
    ),
    Job(
        "reconcile_stripe",
        reconcile.reconcile_stripe_events,
        "clock",
        _every("reconcile_seconds"),
        "missed Stripe events found and queued",
    ),
    Job(
        "catch_up_stripe",
        reconcile.catch_up_stripe,
        "clock",
        _every("worker_seconds"),
        "Stripe events caught up (or objects re-read)",
    ),
    Job("poll_crm", crm_intake.poll_crm, "clock", _every("poll_crm_seconds"), "CRM changes queued"),
    Job(
        "process_crm_inbox",
        process_crm_inbox,
        "worker",
        _every("worker_seconds"),
        "CRM changes processed",
        wakes_on=frozenset({"inbox"}),
    ),
    Job(
        "activate_due_plans",
        activation.activate_due_plans,
        "worker",
        _every("worker_seconds"),
        "plans activated or resumed",
        wakes_on=frozenset({"approvals"}),
    ),
    Job(
        "process_inbox",
        process_inbox,
        "worker",
        _every("worker_seconds"),
        "Stripe events processed",
        wakes_on=frozenset({"inbox"}),
    ),
    Job(
        "drain_outbox",
        drain,
        "worker",
        _every("worker_seconds"),
        "outbox messages sent or retried",
        once=drain_now,
        recheck=lambda runtime: float(runtime.config.section("jobs")["batch_wait_seconds"]),
        wakes_on=frozenset({"outbox"}),
    ),
    Job(
        "check_credit",
        credit.check_credit,
        "clock",
        _every("credit_check_seconds"),
        "accounts whose credit hold or state changed",
    ),
    Job(
        "overview_account_metrics",
        account_metrics.write_account_metrics,
        "clock",
        _every("reconcile_seconds"),
        "accounts' MRR and balances queued for the CRM",
    ),
    Job(
        "overview_catalog",
        catalog_mirror.refresh_catalog_when_due,
        "clock",
        _every("reconcile_seconds"),
        "catalogue objects refreshed",
    ),
    Job(
        "run_imports",
        run_imports,
        "worker",
        _every("worker_seconds"),
        "imports from Stripe run",
        wakes_on=frozenset({"outbox"}),
    ),
    Job(
        "complete_reactivations",
        subscription_changes.complete_reactivations,
        "worker",
        _every("worker_seconds"),
        "reactivated subscriptions started",
    ),
)
