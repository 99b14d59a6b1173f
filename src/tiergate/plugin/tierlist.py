"""Which tests each tier selects, from one collection (``python -m tiergate.plugin.tierlist``).

Run in a subprocess by ``tiergate tiers`` so the project's conftest and test modules are imported
by a pytest of their own, never by the CLI. It evaluates each tier's marker expression the way
``pytest -m`` does, and its paths the way the plugin does, and prints JSON.

It collects as ``pytest --collect-only`` does, the project's warnings filters included. One thing
differs in this process: tiergate is imported before pytest starts. pytest marks every plugin's
package (tiergate is one, ``pytest11``) for assertion rewriting and warns that one already
imported cannot be rewritten; under ``filterwarnings = error`` that warning stops the
collection. So tiergate's package says first that it is not to be rewritten
(``PYTEST_DONT_REWRITE``, pytest's own mark), and pytest has nothing to warn about.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tiergate.plugin.selection import TierSelection
from tiergate.settings.config import Tier


class _Collector:
    def __init__(self, tiers: Iterable[Tier]) -> None:
        self.tiers = list(tiers)
        self.selections: dict[str, TierSelection] = {}
        self.result: dict[str, Any] = {"tests": [], "tiers": {t.name: [] for t in self.tiers}}

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        for tier in self.tiers:
            self.selections[tier.name] = TierSelection(tier.markers, tier.paths, config.rootpath)
        for item in items:
            self.result["tests"].append(item.nodeid)
            for tier in self.tiers:
                if self.selections[tier.name](item):
                    self.result["tiers"][tier.name].append(item.nodeid)


def _not_rewritten() -> None:
    """Mark tiergate's package, imported before pytest, as one pytest does not rewrite."""
    package = sys.modules["tiergate"]
    if "PYTEST_DONT_REWRITE" not in (package.__doc__ or ""):
        package.__doc__ = f"{package.__doc__ or ''}\n\nPYTEST_DONT_REWRITE"


def main(argv: list[str]) -> int:
    spec_file, out_file, *pytest_args = argv
    _not_rewritten()
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
