"""HttpsRewriteSession: simple-salesforce's https:// URLs reach a plain-http sandbox."""

from __future__ import annotations

import pytest

from connector.crm.https_rewrite import HttpsRewriteSession


def test_an_https_url_on_any_host_is_sent_to_the_base_url_with_path_and_query_kept() -> None:
    session = HttpsRewriteSession("http://127.0.0.1:8766")
    assert (
        session.rewrite("https://login.salesforce.com/services/data/v59.0/query/?q=SELECT+Id")
        == "http://127.0.0.1:8766/services/data/v59.0/query/?q=SELECT+Id"
    )


def test_a_base_url_with_a_path_prefixes_the_rewritten_path() -> None:
    session = HttpsRewriteSession("http://127.0.0.1:8766/sf/")
    assert session.rewrite("https://x.my.salesforce.com/services/oauth2/token") == (
        "http://127.0.0.1:8766/sf/services/oauth2/token"
    )


def test_a_plain_http_url_is_left_alone() -> None:
    session = HttpsRewriteSession("http://127.0.0.1:8766")
    assert session.rewrite("http://example.test/a?b=1") == "http://example.test/a?b=1"


def test_a_base_url_that_is_not_absolute_http_is_refused() -> None:
    with pytest.raises(ValueError):
        HttpsRewriteSession("127.0.0.1:8766")
