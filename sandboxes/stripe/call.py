"""What a resource handler receives for one API request."""

from __future__ import annotations

from dataclasses import dataclass

from .params import Params
from .state import API_VERSION, State
from .store import Store


@dataclass
class Call:
    state: State
    params: Params
    path: dict[str, str]
    method: str
    #: The request's ``Stripe-Version`` (the account's default when it sent none).
    version: str = API_VERSION

    def before(self, version: str) -> bool:
        """Whether the request is pinned to an API version older than ``version``
        (``YYYY-MM-DD``): versions are ordered by their date."""
        return self.version[:10] < version

    @property
    def store(self) -> Store:
        return self.state.store

    def arg(self, name: str = "id") -> str:
        return self.path[name]
