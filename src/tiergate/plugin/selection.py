"""Which collected tests a tier selects: its marker expression and its paths.

One definition for the plugin (which deselects the rest) and for ``tiergate tiers`` (which lists
what each tier would run).

The marker expression is evaluated as ``pytest -m`` evaluates it, but once per distinct set of
marker names rather than once per test: pytest walks each test's node chain and runs the compiled
expression for every test, which on a suite of trivial tests cost more than the rest of the plugin
together. A test's marker names are its own markers' names plus its parent's (kept per module
and class), and almost every test of a module has the same set. An expression that matches on
marker arguments (``-m "device(serial='1')"``) is evaluated per test, as pytest does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _pytest.mark.expression import Expression


class _ArgumentsUsed(Exception):
    pass


def _names_only(names: frozenset[str]) -> Any:
    def match(name: str, /, **arguments: object) -> bool:
        if arguments:
            raise _ArgumentsUsed
        return name in names

    return match


def _marker_matcher(item: pytest.Item) -> Any:
    from _pytest.mark import MarkMatcher

    if hasattr(MarkMatcher, "from_markers"):
        return MarkMatcher.from_markers(item.iter_markers())
    return MarkMatcher.from_item(item)  # type: ignore[attr-defined,unused-ignore]  # pytest < 8.3


class MarkerExpression:
    """A pytest ``-m`` expression, true or false for a collected test."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._expression = Expression.compile(text)
        self._by_names: dict[frozenset[str], bool] = {}
        self._names_of_parent: dict[Any, frozenset[str]] = {}
        self._per_test = False  # the expression looks at marker arguments

    def __call__(self, item: pytest.Item) -> bool:
        if self._per_test:
            return self._expression.evaluate(_marker_matcher(item))
        names = self._names(item)
        known = self._by_names.get(names)
        if known is None:
            try:
                known = self._by_names[names] = self._expression.evaluate(_names_only(names))
            except _ArgumentsUsed:
                self._per_test = True
                return self(item)
        return known

    def _names(self, node: Any) -> frozenset[str]:
        parent = node.parent
        if parent is None:
            inherited: frozenset[str] = frozenset()
        else:
            inherited = self._names_of_parent.get(parent)  # type: ignore[assignment]
            if inherited is None:
                inherited = self._names_of_parent[parent] = self._names(parent)
        own = node.own_markers
        return inherited.union(mark.name for mark in own) if own else inherited


class TierSelection:
    """The tier's marker expression and paths (relative to *rootpath*), both optional."""

    def __init__(self, markers: str, paths: tuple[str, ...] | list[str], rootpath: Path) -> None:
        self.markers = MarkerExpression(markers) if markers else None
        self.roots = [(rootpath / p).resolve() for p in paths]
        self._under: dict[Path, bool] = {}

    @property
    def narrows(self) -> bool:
        """Whether it can leave any test out (a tier with neither selects everything)."""
        return self.markers is not None or bool(self.roots)

    def __call__(self, item: pytest.Item) -> bool:
        if self.markers is not None and not self.markers(item):
            return False
        return not self.roots or self._is_under(item.path)

    def _is_under(self, path: Path) -> bool:
        known = self._under.get(path)
        if known is None:
            resolved = path.resolve()
            known = self._under[path] = any(resolved.is_relative_to(r) for r in self.roots)
        return known



def fixture_group(item: pytest.Item) -> str:
    """What *item* must run next to: its package, module or class where it uses a fixture of
    that scope (moving it away would set the fixture up again), else only itself. Session
    fixtures are set up once whatever the order, so they group nothing."""
    scopes = {defs[-1].scope for defs in _fixture_defs(item).values() if defs}
    if "package" in scopes:
        return str(item.path.parent)
    if "module" in scopes:
        return str(item.path)
    if "class" in scopes and getattr(item, "cls", None) is not None:
        return item.nodeid.rsplit("::", 1)[0]
    return item.nodeid


def _fixture_defs(item: pytest.Item) -> dict[str, Any]:
    info = getattr(item, "_fixtureinfo", None)  # pytest's own; a non-Python item has none
    return dict(getattr(info, "name2fixturedefs", {}) or {})


def longest_first(items: list[pytest.Item], durations: dict[str, float]) -> list[pytest.Item]:
    """*items* the longest fixture group first (``tiergate.shard.longest_first``)."""
    from tiergate.shard import longest_first as order

    by_id = {i.nodeid: i for i in items}
    return [by_id[n] for n in order([(i.nodeid, fixture_group(i)) for i in items], durations)]
