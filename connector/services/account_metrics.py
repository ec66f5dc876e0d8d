"""Each account's MRR, net billing and open balance, written to its CRM record when they
change (batched, through the outbox).

A CRM money field is in its record's currency (Salesforce ``CurrencyIsoCode``, Dataverse
``transactioncurrencyid``), so an account gets the figures **in its own currency** only. An
account billed only in other currencies gets nothing written (a JPY MRR must not show as
USD 33,333.00) and the overview says why; amounts in different currencies are never compared
with each other to pick one.

Two triggers: the events that change a figure (a subscription, invoice or credit note of the
account was written to the mirror) queue ``crm_outbound.ACCOUNT_FIGURES_DUE`` for the account,
and ``send_figures`` recomputes those accounts within seconds; the clock job
(``write_account_metrics`` for every account) stays as the safety net. Read, call, write: the
accounts' currencies are read from the CRM between two store sessions, never inside one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from connector.crm.base import Money
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.outbox import SendResult
from connector.services.overview import CustomerRow, compute, customer_rows
from connector.store.models import AccountMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What an account's CRM record gets: figures in ``currency``, or nothing (``None``)."""

    currency: str | None
    note: str | None
    figures: tuple[int, int, int] = (0, 0, 0)


def _billed(row: CustomerRow) -> list[str]:
    return sorted(set(row.mrr) | set(row.net_billing) | set(row.open_balance))


def _codes(currencies: list[str]) -> str:
    return ", ".join(c.upper() for c in currencies)


def decide(row: CustomerRow, account_currency: str | None) -> Decision:
    """The currency the account's figures are written in, and why when it is none.

    * The account's currency is known: its figures in that currency (0 where it has none, as
      long as it is billed in it or in nothing); figures only in other currencies are not
      written, and the note names them.
    * Unknown (the CRM did not say): the one currency the account is billed in; with several,
      nothing, because picking one would compare amounts across currencies.
    """
    billed = _billed(row)
    if account_currency is not None:
        own = account_currency.lower()
        others = [c for c in billed if c != own]
        if billed and own not in billed:
            return Decision(
                None,
                f"figures are in {_codes(others)}, the account is in {own.upper()}: "
                "not written to the CRM",
            )
        note = (
            f"also billed in {_codes(others)}: not written (the account is in {own.upper()})"
            if others
            else None
        )
        return Decision(own, note, _figures(row, own))
    if len(billed) == 1:
        return Decision(billed[0], None, _figures(row, billed[0]))
    if not billed:
        return Decision(None, None)
    return Decision(
        None,
        f"billed in {_codes(billed)} and the CRM gives the account no currency: not written",
    )


def _figures(row: CustomerRow, currency: str) -> tuple[int, int, int]:
    return (
        row.mrr.get(currency, 0),
        row.net_billing.get(currency, 0),
        row.open_balance.get(currency, 0),
    )


def _same(last: AccountMetrics | None, decision: Decision) -> bool:
    if last is None:
        return False
    written = (last.currency, last.mrr, last.net_billing, last.open_balance)
    if decision.currency is None:
        return last.note == decision.note
    return written == (decision.currency, *decision.figures) and last.note == decision.note


def _read_account_currencies(runtime: Runtime, account_ids: list[str]) -> dict[str, str | None]:
    """Each account's CRM record currency now (None: the record has none), read together
    (``get_accounts``: one call per hundred or two accounts, not one per account). An account
    the CRM could not be asked about, or does not have, is left out: nothing is written for
    it, rather than a figure in a guessed currency."""
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}
    try:
        accounts = runtime.crm.get_accounts(wanted)
    except Exception:
        log.warning(
            "the currencies of %d accounts could not be read; their figures were not written",
            len(wanted),
        )
        return {}
    for missing in [a for a in wanted if a not in accounts]:
        log.warning("account %s: not found in the CRM; figures not written", missing)
    return {
        account_id: (account.currency.lower() if account.currency else None)
        for account_id, account in accounts.items()
    }


def _record(
    runtime: Runtime,
    session: Session,
    row: CustomerRow,
    last: AccountMetrics | None,
    account_currency: str | None,
    decision: Decision,
) -> bool:
    """Remember the decision; queue the CRM write when there are figures. True if queued."""
    if last is None:
        last = AccountMetrics(crm_account_id=row.crm_account_id)
        session.add(last)
    last.account_currency = account_currency
    last.note = decision.note
    last.written_at = runtime.clock()
    if decision.currency is None:
        last.currency = last.currency or (account_currency or "")[:3]
        last.mrr = last.mrr or 0
        last.net_billing = last.net_billing or 0
        last.open_balance = last.open_balance or 0
        return False
    last.currency = decision.currency
    last.mrr, last.net_billing, last.open_balance = decision.figures
    crm_outbound.queue_account_update(
        runtime,
        session,
        row.crm_account_id,
        {
            "mrr": Money(decision.figures[0], decision.currency),
            "net_billing": Money(decision.figures[1], decision.currency),
            "open_balance": Money(decision.figures[2], decision.currency),
        },
    )
    return True


def write_account_metrics(runtime: Runtime, only: Collection[str] | None = None) -> int:
    """Queue (batched, via the outbox) each account's MRR, net billing and open balance for
    its CRM record, in the record's currency, when they differ from what was last queued
    (``only``: these accounts). Returns the accounts queued.

    The currencies of the accounts whose figures changed are read from the CRM together
    (the only accounts that could need a write), outside any store session; what was decided
    is kept, note included, for the overview."""
    due: list[CustomerRow] = []
    # Only reads: on SQLite a write session would hold the write lock while the figures
    # are computed.
    with runtime.db.reading() as session:
        rows = (
            compute(runtime, session).customers
            if only is None
            else customer_rows(runtime, session, only)
        )
        for row in rows:
            last = session.get(AccountMetrics, row.crm_account_id)
            if last is None and not _billed(row):
                continue
            known = last.account_currency if last is not None else None
            if known is not None and _same(last, decide(row, known)):
                continue
            due.append(row)
    currencies = _read_account_currencies(runtime, [row.crm_account_id for row in due])
    queued = 0
    if not currencies:
        return queued
    with runtime.db.session() as session:
        for row in due:
            if row.crm_account_id not in currencies:
                continue
            account_currency = currencies[row.crm_account_id]
            last = session.get(AccountMetrics, row.crm_account_id)
            decision = decide(row, account_currency)
            if _same(last, decision) and (
                last is None or last.account_currency == account_currency
            ):
                continue
            queued += int(_record(runtime, session, row, last, account_currency, decision))
    return queued


def send_figures(runtime: Runtime, payloads: list[dict[str, Any]]) -> list[SendResult]:
    """The ``account.figures_due`` sender: recompute the accounts' figures once for the
    batch and queue the ones that changed for the CRM."""
    write_account_metrics(runtime, only={str(p["account_id"]) for p in payloads})
    return [SendResult.sent() for _ in payloads]
