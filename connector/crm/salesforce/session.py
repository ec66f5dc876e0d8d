"""A `requests.Session` that sends every ``https://`` request to one fixed ``http://`` base URL.

Why this exists: simple-salesforce builds every URL itself as ``https://{instance}/...`` (the
login host, the instance host and the ``nextRecordsUrl`` of paged queries alike) and offers no
way to choose the scheme. dealbridge's local Salesforce sandbox, and any plain-HTTP stand-in
used in tests or demos, listens on ``http://127.0.0.1:PORT``. Handing simple-salesforce this
session lets it talk to such a server unchanged: ``https://login.salesforce.com/services/...``
and ``https://127.0.0.1:PORT/services/...`` both go to ``http://127.0.0.1:PORT/services/...``
with path and query string kept.

The connector selects it purely by configuration: an ``http://`` instance URL means "rewrite
to this base"; an ``https://`` instance URL (real Salesforce) uses an ordinary session.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from simple_salesforce.api import Salesforce

#: The client type, for code outside the adapter that holds one (the demo, its tests).
SalesforceClient = Salesforce


class HttpsRewriteSession(requests.Session):
    """Send each ``https://<any host>/<path>?<query>`` request to ``<base_url>/<path>?<query>``.

    Requests whose URL is not ``https://`` (for example ``http://`` URLs already pointing at
    the base) are sent unchanged.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__()
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")

    def rewrite(self, url: str) -> str:
        """Return the URL a request for ``url`` is actually sent to."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "https":
            return url
        return urlunsplit(
            (self._scheme, self._netloc, self._prefix + parts.path, parts.query, parts.fragment)
        )

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(url, bytes):
            url = url.decode()
        return super().request(method, self.rewrite(url), *args, **kwargs)


def client_at(base_url: str, *, username: str, password: str, security_token: str) -> Salesforce:
    """A simple-salesforce client logged in to a plain-HTTP stand-in (the local sandbox)."""
    return Salesforce(
        username=username,
        password=password,
        security_token=security_token,
        session=HttpsRewriteSession(base_url),
    )
