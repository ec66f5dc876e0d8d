"""Import phase ``customers``: link every Stripe customer to a CRM account (see ``importer``
for the order in which an account is found), or list it for a person, or create the account.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from connector.crm.base import AccountDirectory
from connector.domain.deal import Address
from connector.services import crm_outbound
from connector.services.import_run import ACTOR, ImportRun, Unmatched
from connector.store import audit
from connector.store.models import CustomerLink


def import_customers(run: ImportRun) -> None:
    directory = run.runtime.crm.account_directory()
    ids = _AccountIds(directory.ids)
    taken = _linked_accounts(run)
    for chunk, exhausted in run.chunks("customers", "customers", keep=_matched_on):
        _customer_chunk(run, chunk, exhausted, directory, ids, taken)
        run.progress("customers", len(chunk))


#: What matching and creating an account read of a customer; the rest of Stripe's JSON is
#: dropped as each page arrives, so a chunk of thousands of customers stays small.
_CUSTOMER_FIELDS = ("id", "name", "email", "metadata", "address", "deleted")


def _matched_on(customer: dict[str, Any]) -> dict[str, Any]:
    return {key: customer.get(key) for key in _CUSTOMER_FIELDS}


def _linked_accounts(run: ImportRun) -> dict[str, str]:
    with run.runtime.db.session() as session:
        rows = session.execute(
            select(CustomerLink.crm_account_id, CustomerLink.stripe_customer_id)
        ).all()
    return {account: customer for account, customer in rows}


def _customer_chunk(
    run: ImportRun,
    chunk: list[dict[str, Any]],
    exhausted: bool,
    directory: AccountDirectory,
    ids: _AccountIds,
    taken: dict[str, str],
) -> None:
    report = run.report
    linked_customers = set(taken.values())
    links: list[tuple[str, str, str]] = []  # (customer, account, how)
    unmatched: list[Unmatched] = []
    for customer in chunk:
        if customer.get("deleted"):
            continue
        customer_id = customer["id"]
        if customer_id in linked_customers:
            report.already_linked += 1
            continue
        account, how, reason, ambiguous = _match(run, customer, directory, ids)
        # Only a customer no account matches may get a new one: when several accounts
        # match, or the match is linked to someone else, a person decides, not a guess.
        may_create = account is None and not ambiguous
        if account is not None and account in taken:
            reason = f"its account {account} is already linked to {taken[account]}"
            account = None
        if account is None and may_create and run.create:
            account, how = _create_account(run, customer), "created"
        if account is None:
            unmatched.append(
                Unmatched(
                    customer_id, customer.get("name"), customer.get("email"), reason or "no match"
                )
            )
            continue
        taken[account] = customer_id
        linked_customers.add(customer_id)
        links.append((customer_id, account, how))
    for customer_id, account, how in links:
        report.linked[how] = report.linked.get(how, 0) + 1
        if run.options.dry_run:
            verb = "create an account for" if how == "created" else "link"
            report.planned.append(f"would {verb} {customer_id} → account {account} ({how})")
    report.unmatched.extend(unmatched)
    if run.options.dry_run:
        return
    results = run.runtime.crm.update_accounts(
        [
            (
                account,
                {
                    "stripe_customer_id": customer_id,
                    "stripe_customer_url": run.runtime.stripe.customer_url(customer_id),
                },
            )
            for customer_id, account, _how in links
        ]
    )
    failed = {r.key for r in results if not r.ok}

    def write(session: Any) -> None:
        for customer_id, account, how in links:
            session.add(
                CustomerLink(
                    crm_account_id=account,
                    stripe_customer_id=customer_id,
                    source="imported",
                    linked_at=run.runtime.clock(),
                )
            )
            audit.record(
                session,
                actor=ACTOR,
                action="customer.imported",
                subject_type="account",
                subject_id=account,
                stripe_customer_id=customer_id,
                matched_by=how,
            )
            if account in failed:
                # The outbox retries the write-back until the CRM takes it.
                crm_outbound.link_account(run.runtime, session, account, customer_id)
        for item in unmatched:
            audit.record(
                session,
                actor=ACTOR,
                action="import.customer_unmatched",
                subject_type="stripe_customer",
                subject_id=item.customer_id,
                name=item.name,
                email=item.email,
                reason=item.reason,
            )

    run.commit_chunk("customers", chunk, exhausted, write)


def _match(
    run: ImportRun, customer: dict[str, Any], directory: AccountDirectory, ids: _AccountIds
) -> tuple[str | None, str, str | None, bool]:
    """(account, how, why not, ambiguous): the linking order of the module docstring.

    ``ambiguous`` is true when several accounts matched: not a case for a new account.
    """
    known = directory.by_stripe_customer.get(customer["id"])
    if known:
        return known, "stripe_id", None, False
    metadata: dict[str, Any] = customer.get("metadata") or {}
    wanted = metadata.get(run.settings["account_id_metadata_key"])
    if wanted:
        found = ids.find(str(wanted))
        if found:
            return found, "metadata", None, False
    reason = None
    ambiguous = False
    email = (customer.get("email") or "").strip().casefold()
    if email:
        accounts = directory.by_email.get(email, [])
        if len(accounts) == 1:
            return accounts[0], "email", None, False
        if len(accounts) > 1:
            reason = f"{len(accounts)} accounts have a contact with {customer['email']}"
            ambiguous = True
    rule = run.settings["match_rule"]
    value: Any = None
    if rule == "name":
        value = customer.get("name")
    elif rule == "metadata":
        value = metadata.get(run.settings["match_metadata_key"])
    if value:
        accounts = directory.by_name.get(str(value).strip().casefold(), [])
        if len(accounts) == 1:
            return accounts[0], rule, None, False
        if len(accounts) > 1:
            reason = reason or f"{len(accounts)} accounts are named {value!r}"
            ambiguous = True
    if wanted and reason is None:
        reason = f"metadata names account {wanted}, which does not exist in the CRM"
    return None, "", reason, ambiguous


def _create_account(run: ImportRun, customer: dict[str, Any]) -> str:
    name = customer.get("name") or customer.get("email") or customer["id"]
    if run.options.dry_run:
        return f"(new account {name!r})"
    address = customer.get("address")
    return run.runtime.crm.create_account(
        name,
        customer.get("email"),
        Address(
            line1=address.get("line1"),
            line2=address.get("line2"),
            city=address.get("city"),
            state=address.get("state"),
            postal_code=address.get("postal_code"),
            country=address.get("country"),
        )
        if address
        else None,
        stripe_customer_id=customer["id"],
    )


class _AccountIds:
    """Account ids as people and systems write them: Salesforce ids by their first 15
    characters (the 18-character form adds a case-safe suffix), GUIDs ignoring case."""

    def __init__(self, ids: frozenset[str]) -> None:
        self.ids = ids
        self.index: dict[str, str] = {}
        for account in ids:
            self.index.setdefault(account.casefold(), account)
            if len(account) == 18 and "-" not in account:
                self.index.setdefault(account[:15], account)

    def find(self, wanted: str) -> str | None:
        if wanted in self.ids:
            return wanted
        if len(wanted) in (15, 18) and "-" not in wanted:
            return self.index.get(wanted[:15])
        return self.index.get(wanted.casefold())
