"""``/v1/customers``: CRUD, list filters, pagination and search."""

from __future__ import annotations

import pytest
import stripe

from sandboxes.stripe import StripeSandbox

from .conftest import START, FakeClock


def test_a_created_customer_has_stripes_shape(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada", "metadata": {"crm_id": "001"}}
    )
    assert customer.id.startswith("cus_")
    assert customer.object == "customer"
    assert customer.livemode is False
    assert customer.created == START
    assert customer.metadata.to_dict() == {"crm_id": "001"}
    assert customer.test_clock is None
    assert customer.invoice_prefix


def test_a_customer_can_be_retrieved(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    assert client.v1.customers.retrieve(customer.id).email == "ada@example.com"


def test_updating_a_customer_merges_metadata_and_unsets_empty_keys(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"metadata": {"a": "1", "b": "2"}})
    updated = client.v1.customers.update(
        customer.id, params={"name": "New", "metadata": {"a": "", "c": "3"}}
    )
    assert updated.name == "New"
    assert updated.metadata.to_dict() == {"b": "2", "c": "3"}


def test_a_deleted_customer_retrieves_as_a_deleted_stub(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True
    stub = client.v1.customers.retrieve(customer.id)
    assert stub.to_dict()["deleted"] is True
    assert client.v1.customers.list().data == []


def test_listing_by_email_is_exact_and_case_sensitive(client: stripe.StripeClient) -> None:
    client.v1.customers.create(params={"email": "Ada@Example.com"})
    client.v1.customers.create(params={"email": "ada@example.com"})
    found = client.v1.customers.list(params={"email": "ada@example.com"}).data
    assert [c.email for c in found] == ["ada@example.com"]


def test_lists_are_newest_first_and_paginate_with_starting_after(
    client: stripe.StripeClient, clock: FakeClock
) -> None:
    ids = []
    for index in range(5):
        clock.advance(1)
        ids.append(client.v1.customers.create(params={"name": f"c{index}"}).id)
    first = client.v1.customers.list(params={"limit": 2})
    assert [c.id for c in first.data] == [ids[4], ids[3]]
    assert first.has_more is True
    second = client.v1.customers.list(params={"limit": 2, "starting_after": ids[3]})
    assert [c.id for c in second.data] == [ids[2], ids[1]]
    last = client.v1.customers.list(params={"limit": 2, "starting_after": ids[1]})
    assert [c.id for c in last.data] == [ids[0]]
    assert last.has_more is False


def test_ending_before_pages_backwards(client: stripe.StripeClient, clock: FakeClock) -> None:
    ids = []
    for _ in range(4):
        clock.advance(1)
        ids.append(client.v1.customers.create().id)
    page = client.v1.customers.list(params={"limit": 2, "ending_before": ids[0]})
    assert [c.id for c in page.data] == [ids[2], ids[1]]
    assert page.has_more is True


def test_auto_paging_iter_walks_every_page(client: stripe.StripeClient) -> None:
    created = {client.v1.customers.create().id for _ in range(7)}
    seen = [c.id for c in client.v1.customers.list(params={"limit": 3}).auto_paging_iter()]
    assert len(seen) == 7
    assert set(seen) == created


def test_customers_on_a_test_clock_are_listed_only_with_that_clock(
    client: stripe.StripeClient,
) -> None:
    test_clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    on_clock = client.v1.customers.create(params={"test_clock": test_clock.id})
    client.v1.customers.create()
    listed = client.v1.customers.list(params={"test_clock": test_clock.id}).data
    assert [c.id for c in listed] == [on_clock.id]
    assert on_clock.id not in [c.id for c in client.v1.customers.list().data]


def test_search_finds_a_customer_by_email(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    result = client.v1.customers.search(params={"query": "email:'ada@example.com'"})
    assert result.object == "search_result"
    assert [c.id for c in result.data] == [customer.id]
    assert result.has_more is False


def test_search_matches_metadata_and_combines_clauses_with_and(
    client: stripe.StripeClient,
) -> None:
    wanted = client.v1.customers.create(params={"name": "Ada", "metadata": {"crm_id": "7"}})
    client.v1.customers.create(params={"name": "Bob", "metadata": {"crm_id": "7"}})
    result = client.v1.customers.search(params={"query": "metadata['crm_id']:'7' AND name:'Ada'"})
    assert [c.id for c in result.data] == [wanted.id]


def test_search_pages_with_next_page(client: stripe.StripeClient) -> None:
    for _ in range(3):
        client.v1.customers.create(params={"email": "same@example.com"})
    first = client.v1.customers.search(params={"query": "email:'same@example.com'", "limit": 2})
    assert first.has_more is True
    second = client.v1.customers.search(
        params={"query": "email:'same@example.com'", "limit": 2, "page": first.next_page}
    )
    assert len(second.data) == 1
    assert second.next_page is None


def test_an_unparsable_search_query_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.search(params={"query": "email = ada"})
    assert raised.value.param == "query"


def test_search_lag_hides_customers_created_too_recently(clock: FakeClock) -> None:
    sandbox = StripeSandbox(now=clock, search_lag_seconds=60).start()
    try:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": sandbox.url}, max_network_retries=0
        )
        client.v1.customers.create(params={"email": "lag@example.com"})
        query = {"query": "email:'lag@example.com'"}
        assert client.v1.customers.search(params=query).data == []
        clock.advance(60)
        assert len(client.v1.customers.search(params=query).data) == 1
    finally:
        sandbox.stop()
