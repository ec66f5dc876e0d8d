"""`dealbridge events ...` and `dealbridge outbox ...`: look into the queues, re-queue work."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Sequence
from datetime import datetime

import click

from connector.cli.state import CliState, pass_state
from connector.runtime import Runtime
from connector.services import inbox, outbox
from connector.store.models import InboxEvent


def _runtime(state: CliState) -> Runtime:
    return Runtime(state.config(require_secrets=False))


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@click.group()
def events() -> None:
    """Inbound events (the inbox): list, inspect, replay."""


@events.command("list")
@click.option("--failed", is_flag=True, help="Only parked events and events awaiting a retry.")
@click.option("--source", default=None, help="Only events from this source (e.g. stripe).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@pass_state
def list_events(state: CliState, failed: bool, source: str | None, limit: int) -> None:
    """The newest events first."""
    runtime = _runtime(state)
    try:
        with runtime.db.session() as session:
            rows = inbox.list_events(session, failed=failed, source=source, limit=limit)
            spooled = 0 if failed else inbox.spooled_waiting(runtime, session)
            table = [
                [
                    str(row.id),
                    row.source,
                    row.event_type,
                    row.status,
                    str(row.attempts),
                    _clip(inbox.first_line(row.last_error), 60),
                    _when(row.received_at),
                ]
                for row in rows
            ]
    finally:
        runtime.close()
    if not table:
        click.echo("no events")
    else:
        print_table(["ID", "SOURCE", "TYPE", "STATUS", "ATTEMPTS", "LAST ERROR", "RECEIVED"], table)
    if spooled:
        # On SQLite the web process spools what it receives; they have no inbox id yet.
        click.echo(
            f"and {spooled} just received, not yet moved into the inbox by the worker "
            "(it moves them within a second while it runs)"
        )


@events.command("show")
@click.argument("event_id", type=int)
@pass_state
def show_event(state: CliState, event_id: int) -> None:
    """Everything about one event, its payload included."""
    runtime = _runtime(state)
    try:
        with runtime.db.session() as session:
            row = session.get(InboxEvent, event_id)
            if row is None:
                click.echo(f"no event with id {event_id}", err=True)
                sys.exit(1)
            fields = [
                ("id", str(row.id)),
                ("source", row.source),
                ("event id", row.event_id),
                ("type", row.event_type),
                ("status", row.status),
                ("attempts", str(row.attempts)),
                ("received", _when(row.received_at)),
                ("next attempt", _when(row.next_attempt_at)),
                ("processed", _when(row.processed_at)),
                ("outcome", row.outcome or "-"),
            ]
            last_error, payload = row.last_error, row.payload
    finally:
        runtime.close()
    for name, value in fields:
        click.echo(f"{name + ':':<14}{value}")
    if last_error:
        click.echo("last error:")
        for line in last_error.splitlines():
            click.echo(f"  {line}")
    click.echo("payload:")
    try:
        click.echo(json.dumps(json.loads(payload), indent=2, sort_keys=True))
    except ValueError:
        click.echo(payload)


@events.command("replay")
@click.argument("event_id", type=int)
@pass_state
def replay(state: CliState, event_id: int) -> None:
    """Re-queue an event (parked, failed, done or ignored) for the worker; audited."""
    runtime = _runtime(state)
    try:
        with runtime.db.session() as session:
            row = inbox.replay_event(session, event_id, actor=cli_actor(), now=runtime.clock())
            summary = f"event {row.id} ({row.source} {row.event_type} {row.event_id})"
    except (LookupError, inbox.NotReplayable) as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        runtime.close()
    click.echo(f"{summary} re-queued; the worker processes it on its next round")


@click.group("outbox")
def outbox_group() -> None:
    """Outbound writes (the outbox): list, retry."""


@outbox_group.command("list")
@click.option("--failed", is_flag=True, help="Only parked messages and messages awaiting a retry.")
@click.option("--kind", default=None, help="Only messages of this kind (e.g. crm.update_deal).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@pass_state
def list_messages(state: CliState, failed: bool, kind: str | None, limit: int) -> None:
    """The newest messages first."""
    runtime = _runtime(state)
    try:
        with runtime.db.session() as session:
            rows = outbox.list_messages(session, failed=failed, kind=kind, limit=limit)
            table = [
                [
                    str(row.id),
                    row.kind,
                    _clip(row.ordering_key, 40),
                    row.status,
                    str(row.attempts),
                    _when(row.next_attempt_at) if row.status == "pending" else "-",
                    _clip(inbox.first_line(row.last_error), 60),
                    _when(row.created_at),
                ]
                for row in rows
            ]
    finally:
        runtime.close()
    if not table:
        click.echo("no messages")
        return
    print_table(
        ["ID", "KIND", "KEY", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR", "QUEUED"], table
    )


@outbox_group.command("retry")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_state
def retry(state: CliState, message_ids: tuple[int, ...]) -> None:
    """Send parked or failing messages again now, with a fresh attempt budget; audited."""
    runtime = _runtime(state)
    failures = 0
    try:
        for message_id in message_ids:
            try:
                with runtime.db.session() as session:
                    row = outbox.retry_message(
                        session, message_id, actor=cli_actor(), now=runtime.clock()
                    )
                    summary = f"message {row.id} ({row.kind} {row.ordering_key})"
            except (LookupError, outbox.NotRetryable) as exc:
                click.echo(str(exc), err=True)
                failures += 1
                continue
            click.echo(f"{summary} re-queued; later messages of its key follow it")
    finally:
        runtime.close()
    if failures:
        sys.exit(1)


COMMANDS = [events, outbox_group]
