"""Which tests each tier selects, from one collection (``python -m tiergate.tierlist``).

Run in a subprocess by ``tiergate tiers`` so the project's conftest and test modules are imported
by a pytest of their own, never by the CLI. It evaluates each tier's marker expression the way
``pytest -m`` does, and its paths the way the plugin does, and prints JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tiergate.config import Tier


def _matcher(item: pytest.Item) -> Any:
    from _pytest.mark import MarkMatcher

    if hasattr(MarkMatcher, "from_markers"):
        return MarkMatcher.from_markers(item.iter_markers())
    # pytest < 8.3
    return MarkMatcher.from_item(item)  # type: ignore[attr-defined,unused-ignore]


def selects(tier: Tier, item: pytest.Item, rootpath: Path) -> bool:
    from _pytest.mark.expression import Expression

    if tier.markers and not Expression.compile(tier.markers).evaluate(_matcher(item)):
        return False
    if tier.paths:
        roots = [(rootpath / p).resolve() for p in tier.paths]
        return any(item.path.resolve().is_relative_to(r) for r in roots)
    return True


class _Collector:
    def __init__(self, tiers: Iterable[Tier]) -> None:
        self.tiers = list(tiers)
        self.result: dict[str, Any] = {"tests": [], "tiers": {t.name: [] for t in self.tiers}}

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        for item in items:
            self.result["tests"].append(item.nodeid)
            for tier in self.tiers:
                if selects(tier, item, config.rootpath):
                    self.result["tiers"][tier.name].append(item.nodeid)


def main(argv: list[str]) -> int:
    spec_file, out_file, *pytest_args = argv
    tiers = [Tier.from_json(t) for t in json.loads(Path(spec_file).read_text())]
    collector = _Collector(tiers)
    code = pytest.main(
        ["--collect-only", "-q", "-p", "no:tiergate", *pytest_args], plugins=[collector]
    )
    collector.result["exit"] = int(code)
    Path(out_file).write_text(json.dumps(collector.result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
