"""State-store rows as planning reads them: all at once for a full plan, or one at a time.

A full plan loads whole tables (one query beats 100,000). A patched plan, and the one job a doit
sub-task plans, read only the rows they need, through the same mappings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from batchit.state.store import StateStore

V = TypeVar("V")


class RowsOnDemand(dict[str, V]):
    """State store rows by key, each read the first time it is asked for (a missing one as None)."""

    def __init__(self, read: Callable[[str], V | None]) -> None:
        super().__init__()
        self._read = read
        self._missing: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        """The row of `key`, read from the store unless already read."""
        if key in self:
            return dict.__getitem__(self, key)
        if key in self._missing:
            return default
        row = self._read(key)
        if row is None:
            self._missing.add(key)
            return default
        self[key] = row
        return row

    def __missing__(self, key: str) -> V:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return row  # type: ignore[no-any-return]


@dataclass
class StoreView:
    """The store that planning reads details from on demand; swapped when a build takes over."""

    store: StateStore | None

    def reader(self, read: Callable[[StateStore, str], V | None]) -> Callable[[str], V | None]:
        """`read` of one row by key, from whichever store the view holds when it is called (a build
        swaps its own store in after planning)."""

        def one(key: str) -> V | None:
            assert self.store is not None, "a plan that reads rows on demand always has a store"
            return read(self.store, key)

        return one

    def recipe(self, recipe_hash: str) -> str | None:
        """A recorded recipe document."""
        return self.store.recipe(recipe_hash) if self.store else None

    def recorded(self, output: str) -> tuple[str, str, str | None]:
        """An output's recorded inputs and discovered dependencies (JSON) and recipe hash."""
        if self.store is None:
            return "[]", "{}", None
        return self.store.output_basis(output)
