"""PaymentMethods, card sources and SetupIntents, with Stripe's test values.

Stripe's test mode recognises fixed PaymentMethod ids (``pm_card_visa``) and tokens
(``tok_visa``) that stand for test cards: using one creates a new PaymentMethod (or card)
copied from it, as Stripe does (the response carries a fresh ``pm_…``/``card_…`` id). The
cards behave as Stripe documents (docs.stripe.com/testing): ``chargeDeclined…`` cards are
declined when attached or set up, ``chargeCustomerFail`` attaches but every charge is
declined, ``threeDSecure2Required`` and ``authenticationRequired`` ask for authentication on
every payment (``authenticationRequiredOnSetup`` only when set up).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import Params, metadata_patch
from .state import State
from .store import created_filter, random_token

JSON = dict[str, Any]


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    funding: str = "credit"
    country: str = "US"
    #: None, or the decline code every charge gets.
    charge_decline: str | None = None
    #: None, or the decline code attaching or setting up gets (a $0 verification).
    attach_decline: str | None = None
    #: "always": every payment needs 3-D Secure; "setup": only setting it up does.
    authentication: str | None = None


TEST_CARDS: dict[str, TestCard] = {
    "visa": TestCard("visa", "4242"),
    "visa_debit": TestCard("visa", "5556", funding="debit"),
    "mastercard": TestCard("mastercard", "4444"),
    "mastercard_debit": TestCard("mastercard", "8210", funding="debit"),
    "amex": TestCard("amex", "8431"),
    "discover": TestCard("discover", "1117"),
    "us": TestCard("visa", "0077"),
    "chargeDeclined": TestCard(
        "visa", "0002", charge_decline="generic_decline", attach_decline="generic_decline"
    ),
    "visa_chargeDeclined": TestCard(
        "visa", "0002", charge_decline="generic_decline", attach_decline="generic_decline"
    ),
    "chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", charge_decline="insufficient_funds", attach_decline="insufficient_funds"
    ),
    "visa_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", charge_decline="insufficient_funds", attach_decline="insufficient_funds"
    ),
    "chargeDeclinedLostCard": TestCard(
        "visa", "9987", charge_decline="lost_card", attach_decline="lost_card"
    ),
    "chargeDeclinedExpiredCard": TestCard(
        "visa", "0069", charge_decline="expired_card", attach_decline="expired_card"
    ),
    "chargeDeclinedIncorrectCvc": TestCard(
        "visa", "0127", charge_decline="incorrect_cvc", attach_decline="incorrect_cvc"
    ),
    "chargeDeclinedProcessingError": TestCard(
        "visa", "0119", charge_decline="processing_error", attach_decline="processing_error"
    ),
    "chargeCustomerFail": TestCard("visa", "0341", charge_decline="generic_decline"),
    "visa_chargeCustomerFail": TestCard("visa", "0341", charge_decline="generic_decline"),
    "threeDSecure2Required": TestCard("visa", "3220", authentication="always"),
    "authenticationRequired": TestCard("visa", "3184", authentication="always"),
    "authenticationRequiredOnSetup": TestCard("visa", "3155", authentication="setup"),
}

_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
}
_DECLINE_CODES = {
    "expired_card": "expired_card",
    "incorrect_cvc": "incorrect_cvc",
    "processing_error": "processing_error",
}
#: Stripe's test bank account for ``us_bank_account`` (routing 110000000).
TEST_ROUTING_NUMBER = "110000000"


def decline_error(decline_code: str, extra: JSON | None = None) -> StripeError:
    """Stripe's 402 for a declined card (``code`` is the decline code's family)."""
    return StripeError(
        402,
        _DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
        type="card_error",
        code=_DECLINE_CODES.get(decline_code, "card_declined"),
        extra={"decline_code": decline_code, **(extra or {})},
    )


def test_card(name: str) -> TestCard | None:
    """The test card behind ``pm_card_<name>`` or ``tok_<name>``."""
    for prefix in ("pm_card_", "tok_"):
        if name.startswith(prefix):
            return TEST_CARDS.get(name[len(prefix) :])
    return None


def card_of(state: State, payment_method: JSON) -> TestCard | None:
    """The test behaviour of a stored PaymentMethod or card (None: a bank account)."""
    key = payment_method.get("_test_card")
    return TEST_CARDS.get(key) if key else None


# -- construction -------------------------------------------------------------------------------


def _billing_details(p: Params | None) -> JSON:
    details: JSON = {"address": None, "email": None, "name": None, "phone": None, "tax_id": None}
    if p is None:
        return details
    p.reject_unknown(["address", "email", "name", "phone", "tax_id"])
    for key in ("email", "name", "phone", "tax_id"):
        given, value = p.get_nullable_str(key)
        if given:
            details[key] = value
    address = p.sub("address")
    if address is not None:
        fields = ["city", "country", "line1", "line2", "postal_code", "state"]
        address.reject_unknown(fields)
        details["address"] = {k: address.get_str(k, allow_empty=True) or None for k in fields}
    return details


def _card_details(card_key: str, card: TestCard) -> JSON:
    return {
        "brand": card.brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        "country": card.country,
        "display_brand": card.brand.replace("_", " "),
        "exp_month": 12,
        "exp_year": 2034,
        "fingerprint": "fp" + card.last4 + card.brand[:6],
        "funding": card.funding,
        "generated_from": None,
        "last4": card.last4,
        "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }


def new_payment_method(
    state: State, kind: str, *, card_key: str | None = None, bank: JSON | None = None
) -> JSON:
    pm: JSON = {
        "id": state.store.new_id("pm_"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": _billing_details(None),
        "created": int(state.now()),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": kind,
        "_test_card": card_key,
    }
    if kind == "card":
        assert card_key is not None
        pm["card"] = _card_details(card_key, TEST_CARDS[card_key])
    elif kind == "us_bank_account":
        pm["us_bank_account"] = bank
    return pm


def materialize(state: State, payment_method_id: str, param: str) -> JSON:
    """The stored PaymentMethod for ``payment_method_id``; a test value (``pm_card_visa``)
    becomes a new one. Unknown ids answer ``resource_missing`` as Stripe does."""
    card = test_card(payment_method_id)
    if card is not None and payment_method_id.startswith("pm_card_"):
        key = payment_method_id[len("pm_card_") :]
        pm = new_payment_method(state, "card", card_key=key)
        state.store.add(pm)
        return pm
    if payment_method_id in ("pm_usBankAccount", "pm_usBankAccount_success"):
        pm = new_payment_method(state, "us_bank_account", bank=_bank(TEST_ROUTING_NUMBER, "6789"))
        pm["billing_details"]["name"] = "Jenny Rosen"
        state.store.add(pm)
        return pm
    found = state.store.get(payment_method_id, "payment_method")
    if found is None:
        raise no_such("PaymentMethod", payment_method_id, param=param, status=400)
    return found


def _bank(routing: str, last4: str) -> JSON:
    return {
        "account_holder_type": "individual",
        "account_type": "checking",
        "bank_name": "STRIPE TEST BANK",
        "financial_connections_account": None,
        "fingerprint": "fpbank" + last4,
        "last4": last4,
        "networks": {"preferred": "ach", "supported": ["ach"]},
        "routing_number": routing,
        "status_details": None,
    }


def attach(state: State, pm: JSON, customer: JSON, at: int) -> None:
    """Attach ``pm`` to ``customer`` (a $0 verification declines the declining test cards)."""
    if pm["customer"] is not None:
        if pm["customer"] == customer["id"]:
            return
        raise invalid_request(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    card = card_of(state, pm)
    if card is not None and card.attach_decline is not None:
        raise decline_error(card.attach_decline)
    pm["customer"] = customer["id"]
    state.emit("payment_method.attached", pm, at=at)


def new_card_source(state: State, token: str, customer: JSON) -> JSON:
    card = test_card(token)
    if card is None or not token.startswith("tok_"):
        raise no_such("source", token, param="source", status=400)
    if card.attach_decline is not None:
        raise decline_error(card.attach_decline)
    key = token[len("tok_") :]
    return {
        "id": state.store.new_id("card_"),
        "object": "card",
        "address_city": None,
        "address_country": None,
        "address_line1": None,
        "address_line1_check": None,
        "address_line2": None,
        "address_state": None,
        "address_zip": None,
        "address_zip_check": None,
        "allow_redisplay": "unspecified",
        "brand": {"visa": "Visa", "mastercard": "MasterCard", "amex": "American Express"}.get(
            card.brand, card.brand.title()
        ),
        "country": card.country,
        "customer": customer["id"],
        "cvc_check": "pass",
        "dynamic_last4": None,
        "exp_month": 12,
        "exp_year": 2034,
        "fingerprint": "fp" + card.last4 + card.brand[:6],
        "funding": card.funding,
        "last4": card.last4,
        "metadata": {},
        "name": None,
        "regulated_status": "unregulated",
        "tokenization_method": None,
        "_test_card": key,
    }


def add_source(state: State, customer: JSON, token: str, at: int) -> JSON:
    """``source=tok_…`` on a customer: a card, the default source if there is none."""
    source = new_card_source(state, token, customer)
    state.store.add(source)
    state.emit("customer.source.created", source, at=at)
    if customer["default_source"] is None:
        customer["default_source"] = source["id"]
    return source


def set_default_payment_method(
    state: State, customer: JSON, value: str | None, attached_now: dict[str, str], param: str
) -> None:
    """``invoice_settings[default_payment_method]``: an attached PaymentMethod of this
    customer (a test value attached in the same request resolves to its new id)."""
    if value is None:
        customer["invoice_settings"]["default_payment_method"] = None
        return
    value = attached_now.get(value, value)
    pm = state.store.get(value, "payment_method")
    if pm is None:
        raise no_such("PaymentMethod", value, param=param, status=400)
    if pm["customer"] != customer["id"]:
        raise invalid_param(
            param,
            f"The customer does not have a payment method with the ID {value}. The payment "
            "method must be attached to the customer.",
            "resource_missing",
        )
    customer["invoice_settings"]["default_payment_method"] = pm["id"]


def default_payment_source(state: State, invoice: JSON) -> JSON | None:
    """What a charge_automatically invoice charges, in Stripe's order: the invoice's
    default payment method or source, its subscription's, then the customer's."""
    candidates: list[str | None] = [
        invoice.get("default_payment_method"),
        invoice.get("default_source"),
    ]
    sub = state.store.objects.get(invoice.get("_subscription") or "")
    if sub is not None:
        candidates += [sub.get("default_payment_method"), sub.get("default_source")]
    customer = state.store.objects.get(invoice["customer"]) or {}
    candidates += [
        (customer.get("invoice_settings") or {}).get("default_payment_method"),
        customer.get("default_source"),
    ]
    for candidate in candidates:
        if candidate:
            found = state.store.objects.get(candidate)
            if found is not None and not found.get("_deleted"):
                return found
    return None


# -- /v1/payment_methods ------------------------------------------------------------------------


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["type", "card", "us_bank_account", "billing_details", "metadata", "customer",
         "payment_method", "allow_redisplay"]
    )  # fmt: skip
    kind = p.get_enum("type", ["card", "us_bank_account"], required=True)
    if kind == "card":
        card = p.sub("card")
        if card is None:
            raise StripeError(
                400, "Missing required param: card.", code="parameter_missing", param="card"
            )
        card.reject_unknown(["token", "number", "exp_month", "exp_year", "cvc"])
        token = card.get_str("token")
        if token is None:
            raise invalid_param(
                "card[number]",
                "Sending credit card numbers directly to the Stripe API is generally unsafe. "
                "To continue processing use Stripe.js, the Stripe mobile bindings, or Stripe "
                "Elements. In test mode, use a test token such as tok_visa.",
                None,
            )
        test = test_card(token)
        if test is None or not token.startswith("tok_"):
            raise no_such("token", token, param="card[token]", status=400)
        pm = new_payment_method(call.state, "card", card_key=token[len("tok_") :])
    else:
        bank = p.sub("us_bank_account")
        if bank is None:
            raise StripeError(
                400,
                "Missing required param: us_bank_account.",
                code="parameter_missing",
                param="us_bank_account",
            )
        bank.reject_unknown(
            ["routing_number", "account_number", "account_holder_type", "account_type"]
        )
        routing = bank.get_str("routing_number", required=True)
        number = bank.get_str("account_number", required=True)
        assert routing is not None and number is not None
        if routing != TEST_ROUTING_NUMBER:
            raise invalid_param(
                "us_bank_account[routing_number]", "Routing number must have 9 digits", None
            )
        pm = new_payment_method(call.state, "us_bank_account", bank=_bank(routing, number[-4:]))
        pm["us_bank_account"]["account_holder_type"] = (
            bank.get_enum("account_holder_type", ["individual", "company"]) or "individual"
        )
        details = p.sub("billing_details")
        if details is None or not details.get_str("name"):
            raise invalid_param(
                "billing_details[name]",
                "Missing required param: billing_details[name].",
                "parameter_missing",
            )
    pm["billing_details"] = _billing_details(p.sub("billing_details"))
    metadata_patch(p, pm["metadata"])
    call.store.add(pm)
    return call.store.render(pm)


def retrieve(call: Call) -> JSON:
    pm = call.store.get(call.arg(), "payment_method")
    if pm is None:
        raise no_such("PaymentMethod", call.arg())
    return call.store.render(pm)


def update(call: Call) -> JSON:
    pm = call.store.get(call.arg(), "payment_method")
    if pm is None:
        raise no_such("PaymentMethod", call.arg())
    p = call.params
    p.reject_unknown(["billing_details", "metadata", "card", "allow_redisplay"])
    before = call.store.render(pm)
    details = p.sub("billing_details")
    if details is not None:
        patch = _billing_details(details)
        for key in details.data:
            pm["billing_details"][key] = patch[key]
    card = p.sub("card")
    if card is not None:
        card.reject_unknown(["exp_month", "exp_year", "networks"])
        if pm["type"] != "card":
            raise invalid_param("card", "This PaymentMethod is not a card.", None)
        for key in ("exp_month", "exp_year"):
            value = card.get_int(key, minimum=1)
            if value is not None:
                pm["card"][key] = value
    metadata_patch(p, pm["metadata"])
    after = call.store.render(pm)
    if after != before:
        call.state.emit("payment_method.updated", pm, previous=before)
    return after


def attach_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["customer", "customer_account"])
    customer_id = p.get_str("customer", required=True)
    assert customer_id is not None
    customer = call.store.require(customer_id, "customer", param="customer", status=400)
    pm = materialize(call.state, call.arg(), "payment_method")
    attach(call.state, pm, customer, call.state.time_for_customer(customer))
    return call.store.render(pm)


def detach_(call: Call) -> JSON:
    pm = call.store.get(call.arg(), "payment_method")
    if pm is None:
        raise no_such("PaymentMethod", call.arg())
    call.params.reject_unknown([])
    if pm["customer"] is None:
        raise invalid_request(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible.",
            code="payment_method_unexpected_state",
        )
    customer = call.store.objects.get(pm["customer"])
    before = copy.deepcopy(pm)
    pm["customer"] = None
    if customer is not None:
        settings = customer["invoice_settings"]
        if settings.get("default_payment_method") == pm["id"]:
            customer_before = call.store.render(customer)
            settings["default_payment_method"] = None
            call.state.emit("customer.updated", customer, previous=customer_before)
    call.state.emit("payment_method.detached", pm, previous={"customer": before["customer"]})
    return call.store.render(pm)


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["customer", "customer_account", "type", "limit", "starting_after", "ending_before",
         "allow_redisplay"]
    )  # fmt: skip
    customer = p.get_str("customer")
    kind = p.get_str("type")
    return _list(call, customer, kind, "/v1/payment_methods")


def list_for_customer(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    p = call.params
    p.reject_unknown(["type", "limit", "starting_after", "ending_before", "allow_redisplay"])
    return _list(
        call, customer["id"], p.get_str("type"), f"/v1/customers/{customer['id']}/payment_methods"
    )


def _list(call: Call, customer: str | None, kind: str | None, url: str) -> JSON:
    def keep(pm: JSON) -> bool:
        return (customer is None or pm["customer"] == customer) and (
            kind is None or pm["type"] == kind
        )

    return call.store.list_kind("payment_method", keep, call.params, url)


# -- /v1/customers/:id/sources ------------------------------------------------------------------


def create_source(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    p = call.params
    p.reject_unknown(["source", "metadata", "validate"])
    token = p.get_str("source", required=True)
    assert token is not None
    at = call.state.time_for_customer(customer)
    before = call.store.render(customer)
    source = add_source(call.state, customer, token, at)
    metadata_patch(p, source["metadata"])
    if call.store.render(customer) != before:
        call.state.emit("customer.updated", customer, previous=before, at=at)
    return call.store.render(source)


def _source(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    source = call.store.get(call.arg("source"), "card")
    if source is None or source["customer"] != customer["id"]:
        raise no_such("source", call.arg("source"))
    return source


def retrieve_source(call: Call) -> JSON:
    return call.store.render(_source(call))


def update_source(call: Call) -> JSON:
    source = _source(call)
    p = call.params
    p.reject_unknown(
        ["metadata", "name", "exp_month", "exp_year", "address_city", "address_country",
         "address_line1", "address_line2", "address_state", "address_zip"]
    )  # fmt: skip
    before = call.store.render(source)
    for key in ("name", "address_city", "address_country", "address_line1", "address_line2",
                "address_state", "address_zip"):  # fmt: skip
        given, value = p.get_nullable_str(key)
        if given:
            source[key] = value
    for key in ("exp_month", "exp_year"):
        number = p.get_int(key, minimum=1)
        if number is not None:
            source[key] = number
    metadata_patch(p, source["metadata"])
    after = call.store.render(source)
    if after != before:
        call.state.emit("customer.source.updated", source, previous=before)
    return after


def delete_source(call: Call) -> JSON:
    source = _source(call)
    call.params.reject_unknown([])
    customer = call.store.objects[source["customer"]]
    snapshot = copy.deepcopy(source)
    source["_deleted"] = True
    if customer["default_source"] == source["id"]:
        before = call.store.render(customer)
        customer["default_source"] = None
        call.state.emit("customer.updated", customer, previous=before)
    call.state.emit("customer.source.deleted", snapshot)
    return {"id": source["id"], "object": "card", "deleted": True}


def list_sources(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    p = call.params
    p.reject_unknown(["object", "limit", "starting_after", "ending_before"])
    return call.store.list_kind(
        "card",
        lambda s: s["customer"] == customer["id"],
        p,
        f"/v1/customers/{customer['id']}/sources",
    )


# -- /v1/setup_intents --------------------------------------------------------------------------


def _new_setup_intent(call: Call, p: Params) -> JSON:
    types = p.str_list("payment_method_types") or ["card"]
    intent_id = call.store.new_id("seti_")
    return {
        "id": intent_id,
        "object": "setup_intent",
        "application": None,
        "automatic_payment_methods": None,
        "cancellation_reason": None,
        "client_secret": f"{intent_id}_secret_{random_token(24)}",
        "created": int(call.state.now()),
        "customer": None,
        "customer_account": None,
        "description": p.get_str("description"),
        "excluded_payment_method_types": None,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": types,
        "single_use_mandate": None,
        "status": "requires_payment_method",
        "usage": p.get_enum("usage", ["off_session", "on_session"]) or "off_session",
        "allowed_payment_method_types": None,
    }


_SETUP_FIELDS = [
    "confirm", "customer", "description", "metadata", "payment_method", "payment_method_types",
    "usage", "return_url", "automatic_payment_methods", "payment_method_options", "mandate_data",
    "on_behalf_of", "single_use", "attach_to_self", "flow_directions",
    "payment_method_configuration", "use_stripe_sdk", "excluded_payment_method_types",
]  # fmt: skip


def _apply_setup(call: Call, intent: JSON, p: Params) -> None:
    customer_id = p.get_str("customer")
    if customer_id is not None:
        call.store.require(customer_id, "customer", param="customer", status=400)
        intent["customer"] = customer_id
    pm_id = p.get_str("payment_method")
    if pm_id is not None:
        pm = materialize(call.state, pm_id, "payment_method")
        intent["payment_method"] = pm["id"]
        if intent["status"] == "requires_payment_method":
            intent["status"] = "requires_confirmation"
    metadata_patch(p, intent["metadata"])


def create_setup_intent(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(_SETUP_FIELDS)
    intent = _new_setup_intent(call, p)
    _apply_setup(call, intent, p)
    call.store.add(intent)
    call.state.emit("setup_intent.created", intent)
    if p.get_bool("confirm"):
        _confirm_setup(call, intent)
    return call.store.render(intent)


def _confirm_setup(call: Call, intent: JSON) -> None:
    if intent["payment_method"] is None:
        raise invalid_request(
            "You cannot confirm this SetupIntent because it's missing a payment method. To "
            "confirm the SetupIntent with cus_…, specify a payment method attached to this "
            "customer along with the customer ID.",
            code="setup_intent_unexpected_state",
        )
    pm = call.store.objects[intent["payment_method"]]
    card = card_of(call.state, pm)
    at = call.state.time_for_customer(intent["customer"])
    if card is not None and card.attach_decline is not None:
        intent["status"] = "requires_payment_method"
        error = decline_error(card.attach_decline)
        intent["last_setup_error"] = {
            **error.body()["error"],
            "payment_method": call.store.render(pm),
        }
        intent["payment_method"] = None
        call.state.emit("setup_intent.setup_failed", intent, at=at)
        error.extra["setup_intent"] = call.store.render(intent)
        raise error
    if card is not None and card.authentication is not None:
        intent["status"] = "requires_action"
        intent["next_action"] = {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
        }
        call.state.emit("setup_intent.requires_action", intent, at=at)
        return
    intent["status"] = "succeeded"
    if intent["customer"] is not None:
        attach(call.state, pm, call.store.objects[intent["customer"]], at)
    call.state.emit("setup_intent.succeeded", intent, at=at)


def _setup_intent(call: Call) -> JSON:
    intent = call.store.get(call.arg(), "setup_intent")
    if intent is None:
        raise no_such("setup_intent", call.arg())
    return intent


def retrieve_setup_intent(call: Call) -> JSON:
    return call.store.render(_setup_intent(call))


def update_setup_intent(call: Call) -> JSON:
    intent = _setup_intent(call)
    p = call.params
    p.reject_unknown(["customer", "description", "metadata", "payment_method",
                      "payment_method_types", "payment_method_options"])  # fmt: skip
    given, description = p.get_nullable_str("description")
    if given:
        intent["description"] = description
    _apply_setup(call, intent, p)
    return call.store.render(intent)


def confirm_setup_intent(call: Call) -> JSON:
    intent = _setup_intent(call)
    p = call.params
    p.reject_unknown(["payment_method", "return_url", "mandate_data", "use_stripe_sdk",
                      "payment_method_options"])  # fmt: skip
    if intent["status"] in ("succeeded", "canceled"):
        raise invalid_request(
            f"You cannot confirm this SetupIntent because it has a status of {intent['status']}.",
            code="setup_intent_unexpected_state",
        )
    _apply_setup(call, intent, p)
    _confirm_setup(call, intent)
    return call.store.render(intent)


def cancel_setup_intent(call: Call) -> JSON:
    intent = _setup_intent(call)
    p = call.params
    p.reject_unknown(["cancellation_reason"])
    reason = p.get_enum("cancellation_reason", ["abandoned", "duplicate", "requested_by_customer"])
    if intent["status"] in ("succeeded", "canceled"):
        raise invalid_request(
            f"You cannot cancel this SetupIntent because it has a status of {intent['status']}.",
            code="setup_intent_unexpected_state",
        )
    intent["status"] = "canceled"
    intent["cancellation_reason"] = reason
    intent["next_action"] = None
    call.state.emit("setup_intent.canceled", intent)
    return call.store.render(intent)


def list_setup_intents(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["customer", "payment_method", "created", "limit", "starting_after",
                      "ending_before", "attach_to_self"])  # fmt: skip
    customer = p.get_str("customer")
    method = p.get_str("payment_method")
    in_range = created_filter(p)
    return call.store.list_kind(
        "setup_intent",
        lambda i: (
            (customer is None or i["customer"] == customer)
            and (method is None or i["payment_method"] == method)
            and in_range(i["created"])
        ),
        p,
        "/v1/setup_intents",
    )
