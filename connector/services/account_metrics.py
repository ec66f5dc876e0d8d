"""Each account's MRR, net billing and open balance, written to its CRM record when they
change (batched, through the outbox).

Two triggers: the events that change a figure (a subscription, invoice or credit note of the
account was written to the mirror) queue ``crm_outbound.ACCOUNT_FIGURES_DUE`` for the account,
and ``send_figures`` recomputes those accounts within seconds; the clock job
(``write_account_metrics`` for every account) stays as the safety net.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from connector.crm.base import Money
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.outbox import SendResult
from connector.services.overview import CustomerRow, compute
from connector.store.models import AccountMetrics


def _main_currency(row: CustomerRow) -> str | None:
    """The currency an account's CRM figures are written in: where its MRR is largest, else
    its net billing, else its open balance (a CRM field holds one amount)."""
    for amounts in (row.mrr, row.net_billing, row.open_balance):
        positive = {c: a for c, a in amounts.items() if a}
        if positive:
            return max(sorted(positive), key=lambda c: positive[c])
    return None


def write_account_metrics(runtime: Runtime, only: Collection[str] | None = None) -> int:
    """Queue (batched, via the outbox) each account's MRR, net billing and open balance for
    its CRM record, when they differ from what was last queued (``only``: these accounts).
    Returns the accounts queued."""
    queued = 0
    with runtime.db.session() as session:
        for row in compute(runtime, session).customers:
            if only is not None and row.crm_account_id not in only:
                continue
            currency = _main_currency(row)
            if currency is None:
                continue
            figures = (
                row.mrr.get(currency, 0),
                row.net_billing.get(currency, 0),
                row.open_balance.get(currency, 0),
            )
            last = session.get(AccountMetrics, row.crm_account_id)
            if last is not None and (
                last.currency,
                last.mrr,
                last.net_billing,
                last.open_balance,
            ) == (currency, *figures):
                continue
            if last is None:
                last = AccountMetrics(crm_account_id=row.crm_account_id)
                session.add(last)
            last.currency = currency
            last.mrr, last.net_billing, last.open_balance = figures
            last.written_at = runtime.clock()
            crm_outbound.update_account(
                runtime,
                session,
                row.crm_account_id,
                {
                    "mrr": Money(figures[0], currency),
                    "net_billing": Money(figures[1], currency),
                    "open_balance": Money(figures[2], currency),
                },
            )
            queued += 1
    return queued


def send_figures(runtime: Runtime, payloads: list[dict[str, Any]]) -> list[SendResult]:
    """The ``account.figures_due`` sender: recompute the accounts' figures once for the
    batch and queue the ones that changed for the CRM."""
    write_account_metrics(runtime, only={str(p["account_id"]) for p in payloads})
    return [SendResult.sent() for _ in payloads]
