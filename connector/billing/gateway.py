"""The Stripe gateway: the only code that calls Stripe, with typed params and our own keys.

Every write takes an idempotency key derived from a stored operation id, so a retry after a
timeout or a crash can never create a second customer, subscription or invoice. Failures are
classified: ``StripeUnavailable`` (429, 5xx, network — try again later, same key) or
``StripeRejected`` (Stripe refused the request; its message is shown to a person).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote_plus

import pycountry
import stripe
from stripe.params import (
    CouponCreateParams,
    CreditNoteCreateParams,
    CustomerCreateParams,
    CustomerUpdateParams,
    InvoiceCreateParams,
    InvoiceCreatePreviewParams,
    InvoiceItemCreateParams,
    PriceCreateParams,
    ProductCreateParams,
    SubscriptionCreateParams,
    SubscriptionScheduleCreateParams,
    SubscriptionScheduleUpdateParams,
    SubscriptionUpdateParams,
)
from stripe.params import (
    InvoiceListParams as InvoiceListParams,  # re-exported: callers build listing filters
)

from connector.domain.deal import Address

#: Subscription metadata key set when dealbridge's credit hold policy paused its collection.
#: What a coupon is created with, for services that build one (only billing imports stripe).
CouponTerms = CouponCreateParams

PAUSE_MARKER = "dealbridge_credit_pause"
#: Stripe lists events of at most 20 types at once (`types[]`).
EVENT_TYPES_PER_LIST = 20


class StripeGatewayError(Exception):
    retryable = False


class StripeUnavailable(StripeGatewayError):
    """Rate limited, Stripe-side error or network failure: retry later with the same key."""

    retryable = True


class StripeRejected(StripeGatewayError):
    """Stripe refused the request (4xx). ``message`` is Stripe's own, fit to show a person."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


#: What ``retrieve_subscription`` expands: MRR reads discounts (docs/billing-rules.md), the
#: customer's too (``customer.discount``, which Stripe applies to a subscription without its
#: own). Tiers are read per tiered price (``retrieve_price_tiers``).
SUBSCRIPTION_EXPAND = ["discounts.source.coupon", "items.data.discounts", "customer"]


def classify(exc: stripe.StripeError) -> StripeGatewayError:
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return StripeUnavailable(f"Stripe unavailable: {exc.user_message or exc}")
    if isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500:
        return StripeUnavailable(f"Stripe error: {exc.user_message or exc}")
    error = exc.error
    return StripeRejected(
        exc.user_message or str(exc),
        code=getattr(error, "code", None) if error else None,
        param=getattr(error, "param", None) if error else None,
    )


def country_code(country: str | None) -> str | None:
    """Stripe wants ISO 3166-1 alpha-2; CRMs often hold names ("United States", "Germany")."""
    if not country:
        return None
    text = country.strip()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return None


def address_params(address: Address | None) -> dict[str, str] | None:
    """A CRM address as Stripe's ``address`` (ISO country), or None when it says nothing."""
    if address is None or not any(
        (address.line1, address.city, address.postal_code, address.country)
    ):
        return None
    return {
        k: v
        for k, v in {
            "line1": address.line1,
            "line2": address.line2,
            "city": address.city,
            "state": address.state,
            "postal_code": address.postal_code,
            "country": country_code(address.country),
        }.items()
        if v
    }


def describe_decline(error: Mapping[str, Any]) -> str:
    """``Your card has insufficient funds. (card_declined: insufficient_funds)``."""
    message = str(error.get("message") or "The payment was declined.").strip()
    codes = [str(c) for c in (error.get("code"), error.get("decline_code")) if c]
    return f"{message} ({': '.join(codes)})" if codes else message


def _options(idempotency_key: str | None) -> stripe.RequestOptions:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


class StripeGateway:
    def __init__(self, client: stripe.StripeClient, *, dashboard_url: str) -> None:
        self.client = client
        self.dashboard_url = dashboard_url.rstrip("/")

    def _do(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except stripe.StripeError as exc:
            raise classify(exc) from exc

    # ------------------------------------------------------------------ customers

    def customer_url(self, customer_id: str) -> str:
        return f"{self.dashboard_url}/customers/{customer_id}"

    def find_customers_by_email(self, email: str) -> list[stripe.Customer]:
        """Every live customer whose email matches, ignoring case.

        ``list(email=...)`` is exact and case-sensitive but current; search is
        case-insensitive but lags writes by up to a minute. Together (as given, lowercased,
        and searched) they find a customer created a second ago and one stored as
        ``Ana@Example.com`` years ago.
        """
        wanted = email.strip().casefold()
        found: dict[str, stripe.Customer] = {}
        for variant in dict.fromkeys([email.strip(), email.strip().lower()]):
            page = self._do(self.client.v1.customers.list, params={"email": variant, "limit": 100})
            for customer in page.auto_paging_iter():
                found[customer.id] = customer
        escaped = email.strip().replace("\\", "\\\\").replace("'", "\\'")
        searched = self._do(
            self.client.v1.customers.search, params={"query": f"email:'{escaped}'", "limit": 100}
        )
        for customer in searched.data:
            found.setdefault(customer.id, customer)
        return [
            c
            for c in found.values()
            if (c.email or "").casefold() == wanted and not getattr(c, "deleted", False)
        ]

    def create_customer(
        self,
        *,
        name: str,
        email: str,
        address: Address | None,
        description: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> stripe.Customer:
        params: CustomerCreateParams = {"name": name, "email": email, "metadata": dict(metadata)}
        if description:
            params["description"] = description
        stripe_address = address_params(address)
        if stripe_address is not None:
            params["address"] = stripe_address  # type: ignore[typeddict-item]
        customer: stripe.Customer = self._do(
            self.client.v1.customers.create, params=params, options=_options(idempotency_key)
        )
        return customer

    def retrieve_customer(self, customer_id: str) -> stripe.Customer:
        customer: stripe.Customer = self._do(self.client.v1.customers.retrieve, customer_id)
        return customer

    def customer_payment_methods(self, customer_id: str) -> tuple[str | None, list[dict[str, Any]]]:
        """The customer's ``invoice_settings.default_payment_method`` id and every payment
        method attached to it (as plain dicts), for deciding whether to charge automatically.
        Reads only: the customer, then ``GET /v1/customers/{id}/payment_methods``."""
        customer = self._do(self.client.v1.customers.retrieve, customer_id).to_dict()
        default = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if isinstance(default, dict):
            default = default.get("id")
        methods = [
            method.to_dict()
            for method in self._iterate(
                self.client.v1.customers.payment_methods.list, {}, customer_id
            )
        ]
        return (default if isinstance(default, str) else None), methods

    def update_customer(
        self, customer_id: str, params: CustomerUpdateParams, idempotency_key: str
    ) -> stripe.Customer:
        customer: stripe.Customer = self._do(
            self.client.v1.customers.update,
            customer_id,
            params=params,
            options=_options(idempotency_key),
        )
        return customer

    def update_customer_metadata(
        self, customer_id: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> None:
        self._do(
            self.client.v1.customers.update,
            customer_id,
            params={"metadata": dict(metadata)},
            options=_options(idempotency_key),
        )

    # ------------------------------------------------------------------ catalog

    def find_price_by_lookup_key(self, lookup_key: str) -> stripe.Price | None:
        """The price holding this lookup key, active or archived (the caller decides)."""
        page = self._do(
            self.client.v1.prices.list, params={"lookup_keys": [lookup_key], "limit": 1}
        )
        return page.data[0] if page.data else None

    def create_product(self, params: ProductCreateParams, idempotency_key: str) -> stripe.Product:
        product: stripe.Product = self._do(
            self.client.v1.products.create, params=params, options=_options(idempotency_key)
        )
        return product

    def create_coupon(self, params: CouponCreateParams, idempotency_key: str) -> stripe.Coupon:
        coupon: stripe.Coupon = self._do(
            self.client.v1.coupons.create, params=params, options=_options(idempotency_key)
        )
        return coupon

    def retrieve_coupon(self, coupon_id: str) -> stripe.Coupon:
        coupon: stripe.Coupon = self._do(self.client.v1.coupons.retrieve, coupon_id)
        return coupon

    def create_price(self, params: PriceCreateParams, idempotency_key: str) -> stripe.Price:
        price: stripe.Price = self._do(
            self.client.v1.prices.create, params=params, options=_options(idempotency_key)
        )
        return price

    # ------------------------------------------------------------------ billing

    def create_subscription(
        self, params: SubscriptionCreateParams, idempotency_key: str
    ) -> stripe.Subscription:
        subscription: stripe.Subscription = self._do(
            self.client.v1.subscriptions.create, params=params, options=_options(idempotency_key)
        )
        return subscription

    def update_subscription(
        self, subscription_id: str, params: SubscriptionUpdateParams, idempotency_key: str
    ) -> stripe.Subscription:
        subscription: stripe.Subscription = self._do(
            self.client.v1.subscriptions.update,
            subscription_id,
            params=params,
            options=_options(idempotency_key),
        )
        return subscription

    def iter_subscriptions(self, customer_id: str) -> Iterator[stripe.Subscription]:
        """The customer's subscriptions that still bill (active, past due, unpaid, trialing)."""
        page = self._do(
            self.client.v1.subscriptions.list,
            params={"customer": customer_id, "status": "all", "limit": 100},
        )
        try:
            for subscription in page.auto_paging_iter():
                if subscription.status in ("active", "past_due", "unpaid", "trialing"):
                    yield subscription
        except stripe.StripeError as exc:
            raise classify(exc) from exc

    def pause_collection(
        self, subscription_id: str, behavior: str, marker: str, idempotency_key: str
    ) -> stripe.Subscription:
        """Pause the subscription's collection (``keep_as_draft`` or ``void``), tagging it with
        ``metadata[dealbridge_credit_pause]=marker`` in the same call, so whoever resumes it
        can tell a pause dealbridge made from one a person made."""
        return self.update_subscription(
            subscription_id,
            {
                "pause_collection": {"behavior": behavior},
                "metadata": {PAUSE_MARKER: marker},
            },
            idempotency_key,
        )

    def resume_collection(self, subscription_id: str, idempotency_key: str) -> stripe.Subscription:
        """Clear ``pause_collection`` and dealbridge's pause tag."""
        return self.update_subscription(
            subscription_id,
            {"pause_collection": "", "metadata": {PAUSE_MARKER: ""}},
            idempotency_key,
        )

    def create_subscription_schedule(
        self, params: SubscriptionScheduleCreateParams, idempotency_key: str
    ) -> stripe.SubscriptionSchedule:
        schedule: stripe.SubscriptionSchedule = self._do(
            self.client.v1.subscription_schedules.create,
            params=params,
            options=_options(idempotency_key),
        )
        return schedule

    def update_subscription_schedule(
        self, schedule_id: str, params: SubscriptionScheduleUpdateParams, idempotency_key: str
    ) -> stripe.SubscriptionSchedule:
        schedule: stripe.SubscriptionSchedule = self._do(
            self.client.v1.subscription_schedules.update,
            schedule_id,
            params=params,
            options=_options(idempotency_key),
        )
        return schedule

    def release_subscription_schedule(
        self, schedule_id: str, idempotency_key: str
    ) -> stripe.SubscriptionSchedule:
        """Stop the schedule managing its subscription, which keeps its end date."""
        schedule: stripe.SubscriptionSchedule = self._do(
            self.client.v1.subscription_schedules.release,
            schedule_id,
            params={"preserve_cancel_date": True},
            options=_options(idempotency_key),
        )
        return schedule

    def retrieve_subscription_schedule(self, schedule_id: str) -> stripe.SubscriptionSchedule:
        schedule: stripe.SubscriptionSchedule = self._do(
            self.client.v1.subscription_schedules.retrieve, schedule_id
        )
        return schedule

    def create_invoice_item(
        self, params: InvoiceItemCreateParams, idempotency_key: str
    ) -> stripe.InvoiceItem:
        item: stripe.InvoiceItem = self._do(
            self.client.v1.invoice_items.create, params=params, options=_options(idempotency_key)
        )
        return item

    def create_invoice(self, params: InvoiceCreateParams, idempotency_key: str) -> stripe.Invoice:
        invoice: stripe.Invoice = self._do(
            self.client.v1.invoices.create, params=params, options=_options(idempotency_key)
        )
        return invoice

    def finalize_invoice(
        self, invoice_id: str, idempotency_key: str, *, auto_advance: bool = False
    ) -> stripe.Invoice:
        """Finalize; ``auto_advance`` lets Stripe attempt an automatic charge (and retry it
        under the account's retry rules) instead of our sending the invoice."""
        invoice: stripe.Invoice = self._do(
            self.client.v1.invoices.finalize_invoice,
            invoice_id,
            params={"auto_advance": auto_advance},
            options=_options(idempotency_key),
        )
        return invoice

    def send_invoice(self, invoice_id: str, idempotency_key: str) -> stripe.Invoice:
        invoice: stripe.Invoice = self._do(
            self.client.v1.invoices.send_invoice, invoice_id, options=_options(idempotency_key)
        )
        return invoice

    def preview_invoice(self, params: InvoiceCreatePreviewParams) -> stripe.Invoice:
        """``POST /v1/invoices/create_preview``: the invoice Stripe would create, computed by
        Stripe (discounts, tax, totals) and stored nowhere, so it needs no idempotency key."""
        invoice: stripe.Invoice = self._do(self.client.v1.invoices.create_preview, params=params)
        return invoice

    def retrieve_invoice(self, invoice_id: str) -> stripe.Invoice:
        invoice: stripe.Invoice = self._do(self.client.v1.invoices.retrieve, invoice_id)
        return invoice

    def retrieve_invoice_data(self, invoice_id: str) -> dict[str, Any]:
        """The invoice as Stripe's JSON, as ``objects.plain(retrieve_invoice(...))`` would
        give it, without building StripeObjects only to turn them back into dicts: on the
        real-time path that round trip cost more CPU than the HTTP request."""
        path = f"/v1/invoices/{quote_plus(invoice_id)}"  # the id quoted as stripe-python does
        response = self._do(self.client.raw_request, "get", path)
        invoice = response.data
        if not isinstance(invoice, dict) or invoice.get("object") != "invoice":
            raise StripeUnavailable(f"Stripe answered invoice {invoice_id} with no invoice")
        return invoice

    def payment_decline(self, invoice_id: str) -> str | None:
        """Why the invoice's latest payment attempt failed, as the bank or Stripe said it
        (the PaymentIntent's ``last_payment_error``: message, code and decline code), or
        None when no attempt failed. Invoices carry no decline reason themselves."""
        payments = list(
            self._iterate(self.client.v1.invoice_payments.list, {"invoice": invoice_id})
        )
        for payment in sorted(payments, key=lambda p: p.created, reverse=True):
            intent_id = (payment.to_dict().get("payment") or {}).get("payment_intent")
            if isinstance(intent_id, dict):
                intent_id = intent_id.get("id")
            if not isinstance(intent_id, str) or not intent_id:
                continue
            intent = self._do(self.client.v1.payment_intents.retrieve, intent_id)
            error = intent.to_dict().get("last_payment_error")
            if error:
                return describe_decline(error)
        return None

    def create_credit_note(
        self, params: CreditNoteCreateParams, idempotency_key: str
    ) -> stripe.CreditNote:
        note: stripe.CreditNote = self._do(
            self.client.v1.credit_notes.create, params=params, options=_options(idempotency_key)
        )
        return note

    def retrieve_credit_note(self, credit_note_id: str) -> stripe.CreditNote:
        note: stripe.CreditNote = self._do(self.client.v1.credit_notes.retrieve, credit_note_id)
        return note

    def retrieve_subscription(self, subscription_id: str) -> stripe.Subscription:
        """The subscription with its discounts (and their coupons) and its items' discounts
        expanded (Stripe returns ids otherwise): MRR subtracts them. An item discount's coupon
        would be a fifth level: ``retrieve_coupon`` reads it."""
        subscription: stripe.Subscription = self._do(
            self.client.v1.subscriptions.retrieve,
            subscription_id,
            params={"expand": SUBSCRIPTION_EXPAND},
        )
        return subscription

    def iter_invoices(self, params: InvoiceListParams) -> Iterator[stripe.Invoice]:
        page = self._do(self.client.v1.invoices.list, params={"limit": 100, **params})
        try:
            yield from page.auto_paging_iter()
        except stripe.StripeError as exc:
            raise classify(exc) from exc

    def iter_invoice_pages(self, params: InvoiceListParams) -> Iterator[list[dict[str, Any]]]:
        """The invoices ``iter_invoices`` lists, a page (up to 100) at a time, as Stripe's
        JSON: plain dicts, as ``objects.plain`` would give, without building StripeObjects
        first (for a big listing that conversion costs more than the HTTP)."""
        query: dict[str, Any] = {"limit": 100, **params}
        while True:
            invoices, has_more = self._json_page("/v1/invoices", query)
            if invoices:
                yield invoices
            if not has_more or not invoices:
                return
            query["starting_after"] = invoices[-1]["id"]

    def _json_page(self, path: str, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """One page of a list endpoint as Stripe's JSON, and whether more follow.

        The request is stripe-python's own (``raw_request``: key, API version, retries,
        errors); its response already holds the parsed body (``StripeResponse.data``), so
        the page is neither parsed twice nor converted into StripeObjects."""
        response = self._do(self.client.raw_request, "get", path, **query)
        page = response.data
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise StripeUnavailable(f"Stripe answered {path} with something that is not a list")
        return page["data"], bool(page.get("has_more"))

    def iter_events(self, created_gte: int, types: list[str]) -> Iterator[stripe.Event]:
        """Events of these types created at or after ``created_gte``, newest first within
        each listing. Stripe takes at most ``EVENT_TYPES_PER_LIST`` types a listing, so more
        types are listed in several passes."""
        for start in range(0, len(types), EVENT_TYPES_PER_LIST):
            chunk = types[start : start + EVENT_TYPES_PER_LIST]
            page = self._do(
                self.client.v1.events.list,
                params={"created": {"gte": created_gte}, "types": chunk, "limit": 100},
            )
            try:
                yield from page.auto_paging_iter()
            except stripe.StripeError as exc:
                raise classify(exc) from exc

    def list_page(
        self, resource: str, *, starting_after: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of ``customers``, ``products`` or ``prices`` (newest first, archived
        included) after ``starting_after``, as Stripe's JSON, and whether more follow:
        resumable listing. Plain dicts, not StripeObjects: an import of thousands of
        customers holds a chunk of them, and StripeObjects cost several times the memory."""
        paths = {"customers": "/v1/customers", "products": "/v1/products", "prices": "/v1/prices"}
        query: dict[str, Any] = {"limit": limit}
        if starting_after:
            query["starting_after"] = starting_after
        return self._json_page(paths[resource], query)

    def open_balance(self, customer_id: str, currency: str) -> int:
        """What the customer owes now: the remaining amounts of its open and uncollectible
        invoices (an uncollectible invoice is still payable; docs/billing-rules.md)."""
        return sum(
            inv.amount_remaining
            for status in ("open", "uncollectible")
            for inv in self.iter_invoices({"customer": customer_id, "status": status})
            if inv.currency == currency
        )

    # ------------------------------------------------------------------ overview, lifecycle

    def _iterate(self, call: Any, params: Mapping[str, Any], *args: Any) -> Iterator[Any]:
        page = self._do(call, *args, params={"limit": 100, **params})
        try:
            yield from page.auto_paging_iter()
        except stripe.StripeError as exc:
            raise classify(exc) from exc

    def iter_customer_subscriptions(self, customer_id: str) -> Iterator[stripe.Subscription]:
        """Every subscription of the customer, whatever its status (canceled included)."""
        return self._iterate(
            self.client.v1.subscriptions.list,
            {
                "customer": customer_id,
                "status": "all",
                # Tiers would be a fifth level (Stripe expands four): retrieve for those.
                "expand": [
                    "data.discounts.source.coupon",
                    "data.items.data.discounts",
                    "data.customer",
                ],
            },
        )

    def iter_customer_refunds(self, customer_id: str) -> Iterator[stripe.Refund]:
        """Every refund of the customer's charges (the charges that have refunds)."""
        for charge in self._iterate(self.client.v1.charges.list, {"customer": customer_id}):
            if int(charge.amount_refunded or 0) > 0:
                yield from self._iterate(self.client.v1.refunds.list, {"charge": charge.id})

    def retrieve_refund(self, refund_id: str) -> stripe.Refund:
        """The refund with its charge expanded (the charge names the customer)."""
        refund: stripe.Refund = self._do(
            self.client.v1.refunds.retrieve, refund_id, params={"expand": ["charge"]}
        )
        return refund

    def iter_products(self) -> Iterator[stripe.Product]:
        """Every product, active and archived."""
        return self._iterate(self.client.v1.products.list, {})

    def iter_prices(self) -> Iterator[stripe.Price]:
        """Every price, active and archived."""
        return self._iterate(self.client.v1.prices.list, {})

    def iter_invoice_lines(self, invoice_id: str) -> Iterator[stripe.InvoiceLineItem]:
        return self._iterate(self.client.v1.invoices.line_items.list, {}, invoice_id)

    def list_credit_notes(self, customer_id: str) -> list[stripe.CreditNote] | None:
        """The customer's credit notes, or None when this Stripe does not offer credit notes
        (the local sandbox answers 404 for the whole URL, not for an id)."""
        try:
            return list(self._iterate(self.client.v1.credit_notes.list, {"customer": customer_id}))
        except StripeRejected as exc:
            if exc.code is None and "Unrecognized request URL" in exc.message:
                return None
            raise

    def iter_invoice_credit_notes(
        self, invoice_id: str
    ) -> Iterator[tuple[stripe.CreditNote, list[stripe.CreditNoteLineItem]]]:
        """The invoice's credit notes, each with all its lines."""
        for note in self._iterate(self.client.v1.credit_notes.list, {"invoice": invoice_id}):
            lines = list(self._iterate(self.client.v1.credit_notes.line_items.list, {}, note.id))
            yield note, lines

    def retrieve_price_tiers(self, price_id: str) -> list[Any]:
        """A tiered price's tiers (Stripe returns them only when asked)."""
        price = self._do(self.client.v1.prices.retrieve, price_id, params={"expand": ["tiers"]})
        return list(price.tiers or [])

    def retrieve_price(self, price_id: str) -> stripe.Price:
        price: stripe.Price = self._do(self.client.v1.prices.retrieve, price_id)
        return price

    def retrieve_product(self, product_id: str) -> stripe.Product:
        product: stripe.Product = self._do(self.client.v1.products.retrieve, product_id)
        return product

    def archive_price(self, price_id: str, idempotency_key: str) -> stripe.Price:
        """Stop offering a price (``active=false``); subscriptions using it keep billing."""
        price: stripe.Price = self._do(
            self.client.v1.prices.update,
            price_id,
            params={"active": False},
            options=_options(idempotency_key),
        )
        return price

    def archive_product(self, product_id: str, idempotency_key: str) -> stripe.Product:
        """Stop offering a product (``active=false``); never deleted, subscriptions unaffected."""
        product: stripe.Product = self._do(
            self.client.v1.products.update,
            product_id,
            params={"active": False},
            options=_options(idempotency_key),
        )
        return product

    def cancel_subscription(
        self, subscription_id: str, idempotency_key: str
    ) -> stripe.Subscription:
        """Cancel now, without prorating or invoicing the unused part of the period."""
        subscription: stripe.Subscription = self._do(
            self.client.v1.subscriptions.cancel,
            subscription_id,
            options=_options(idempotency_key),
        )
        return subscription
