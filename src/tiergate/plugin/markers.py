"""``item.get_closest_marker(name)`` for every test of a run, at the cost of one look per test and
one per module or class.

pytest walks the whole node chain (test, class, module, package, session) on every call; the
plugin asks for a marker on every test, so the answer for each parent node is kept. Markers are
read once collection is over, when they no longer change.
"""

from __future__ import annotations

from typing import Any

import pytest


class ClosestMarker:
    """The marker *name* closest to a node: its own, else its parent's, as pytest resolves it."""

    def __init__(self, name: str) -> None:
        self.name = name
        # id(parent) -> (parent, its answer). Keyed by id: a node's own ``__hash__`` is a Python
        # call, paid on every test; the node is kept in the value, so its id is not reused.
        self._of_parent: dict[int, tuple[Any, pytest.Mark | None]] = {}

    def __call__(self, node: Any) -> pytest.Mark | None:
        own = node.own_markers
        if own:  # most tests have none of their own
            name = self.name
            for mark in own:
                if mark.name == name:
                    return mark  # type: ignore[no-any-return]
        parent = node.parent
        if parent is None:
            return None
        known = self._of_parent.get(id(parent))
        if known is None:
            known = self._of_parent[id(parent)] = (parent, self(parent))
        return known[1]
