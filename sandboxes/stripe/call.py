"""What a resource handler receives for one API request."""

from __future__ import annotations

from dataclasses import dataclass

from .params import Params
from .state import State
from .store import Store


@dataclass
class Call:
    state: State
    params: Params
    path: dict[str, str]
    method: str

    @property
    def store(self) -> Store:
        return self.state.store

    def arg(self, name: str = "id") -> str:
        return self.path[name]
