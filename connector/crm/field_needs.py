"""What each mapped CRM field must be able to hold: its kind and, for text, its length.

``dealbridge check --online`` compares the CRM's own field descriptions with this table, so
a currency field mapped as an invoice status, or a 20-character text field for a Stripe id,
is reported before the first write fails (or silently truncates). Keys are
``(section, canonical name)`` as in the mapping files; only fields dealbridge reads as a
typed value or writes are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "money", "number", "date", "boolean", "url", "long_text"]


@dataclass(frozen=True)
class Need:
    kind: Kind
    #: Shortest text length that holds every value dealbridge writes (text kinds only).
    min_length: int | None = None

    def describe(self) -> str:
        length = f" of at least {self.min_length} characters" if self.min_length else ""
        return {
            "text": f"a text or picklist field{length}",
            "long_text": f"a long text field{length}",
            "money": "a currency or number field",
            "number": "a number field",
            "date": "a date field",
            "boolean": "a checkbox (boolean) field",
            "url": f"a URL or text field{length}",
        }[self.kind]


#: Stripe ids are at most 255 characters; the ones dealbridge sees run to about 40.
STRIPE_ID = Need("text", 64)
URL = Need("url", 255)

NEEDS: dict[tuple[str, str], Need] = {
    ("deal", "contract_start"): Need("date"),
    ("deal", "contract_months"): Need("number"),
    ("deal", "payment_collection"): Need("text", 20),  # "Charge automatically"
    ("deal", "trial_days"): Need("number"),
    ("deal", "discount_percent"): Need("number"),
    ("deal", "discount_amount"): Need("money"),
    ("deal.writeback", "plan_status"): Need("text", 30),
    ("deal.writeback", "plan_summary"): Need("long_text", 1000),
    ("deal.writeback", "plan_url"): URL,
    ("deal.writeback", "subscription_id"): STRIPE_ID,
    ("deal.writeback", "subscription_status"): Need("text", 20),
    ("account", "credit_hold"): Need("boolean"),
    ("account", "credit_limit"): Need("money"),
    ("account.writeback", "stripe_customer_id"): STRIPE_ID,
    ("account.writeback", "stripe_customer_url"): URL,
    ("account.writeback", "credit_state"): Need("text", 20),
    ("account.writeback", "credit_note"): Need("long_text", 255),
    ("account.writeback", "credit_hold"): Need("boolean"),
    ("account.writeback", "open_balance"): Need("money"),
    ("account.writeback", "mrr"): Need("money"),
    ("account.writeback", "net_billing"): Need("money"),
    ("invoice", "number"): Need("text", 32),
    ("invoice", "status"): Need("text", 13),  # "uncollectible"
    ("invoice", "amount_due"): Need("money"),
    ("invoice", "amount_paid"): Need("money"),
    ("invoice", "amount_remaining"): Need("money"),
    ("invoice", "currency"): Need("text", 3),
    ("invoice", "issue_date"): Need("date"),
    ("invoice", "due_date"): Need("date"),
    ("invoice", "paid_date"): Need("date"),
    ("invoice", "hosted_invoice_url"): URL,
    ("invoice", "invoice_pdf"): URL,
    ("invoice", "subscription_id"): STRIPE_ID,
    ("invoice", "billing_reason"): Need("text", 40),  # automatic_pending_invoice_item_invoice
    ("invoice", "last_payment_error"): Need("text", 255),
    ("invoice", "stripe_customer_id"): STRIPE_ID,
    ("invoice", "external_id"): STRIPE_ID,
}
