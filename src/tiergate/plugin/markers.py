"""``item.get_closest_marker(name)`` for every test of a run, at the cost of one look per test and
one per module or class.

pytest walks the whole node chain (test, class, module, package, session) on every call; the
plugin asks for a marker on every test, so the answer for each parent node is kept. Markers are
read once collection is over, when they no longer change.
"""

from __future__ import annotations

from typing import Any

import pytest

_UNKNOWN = object()


class ClosestMarker:
    """The marker *name* closest to a node: its own, else its parent's, as pytest resolves it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._of_parent: dict[Any, pytest.Mark | None] = {}

    def __call__(self, node: Any) -> pytest.Mark | None:
        for mark in node.own_markers:
            if mark.name == self.name:
                return mark  # type: ignore[no-any-return]
        parent = node.parent
        if parent is None:
            return None
        found = self._of_parent.get(parent, _UNKNOWN)  # one lookup: a node hashes in Python
        if found is _UNKNOWN:
            found = self._of_parent[parent] = self(parent)
        return found  # type: ignore[return-value]
