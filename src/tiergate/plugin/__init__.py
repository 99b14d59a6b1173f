"""The tiergate pytest plugin (entry point ``pytest11: tiergate``).

Inert unless pytest is given ``--tier NAME`` or runs under ``tiergate run`` (``--tiergate-run``):
plain ``pytest`` behaves as if tiergate were not installed, and ``-p no:tiergate`` removes it. When
active, one ``TierRun`` object (``tiergate.plugin.tierrun``) is registered and does the work. This
module imports nothing of tiergate's until then: every ``pytest`` run of a project that has tiergate
installed loads it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tiergate.protocol.runspec import RunSpec


def _load_without_rewriting() -> None:
    """Import the rest of tiergate with Python's own loader, not pytest's assertion rewriter.

    pytest marks every module of a plugin's distribution for assertion rewriting, and its loader
    reads each cached module with ``marshal.load`` on a file, one read call per object: about
    3.5 M instructions a module where Python's loader takes a fraction, some 170 M for the
    modules a run under a tier imports (scripts/bench_instructions.py). Rewriting gives nothing
    here: tiergate's modules hold no tests. Only this package and this module are imported by
    then; without the hook (``--assert=plain``) or with a pytest whose hook differs, nothing
    changes."""
    from _pytest.assertion.rewrite import AssertionRewritingHook

    for finder in sys.meta_path:
        if isinstance(finder, AssertionRewritingHook):
            marked = getattr(finder, "_must_rewrite", None)
            if isinstance(marked, set):
                marked.discard("tiergate")


_load_without_rewriting()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tiergate", "tiergate tiers")
    group.addoption(
        "--tier",
        dest="tiergate_tier",
        default=None,
        metavar="NAME",
        help="run the tests of tier NAME (from [tool.tiergate] in pyproject.toml) with its limits",
    )
    group.addoption(
        "--tiergate-results-dir",
        dest="tiergate_results_dir",
        default=None,
        metavar="DIR",
        help="where --tier writes events.jsonl and the reports (default .tiergate/NAME)",
    )
    group.addoption("--tiergate-run", dest="tiergate_run", default=None, help=argparse.SUPPRESS)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Under a tier, tiergate's retries replace pytest-rerunfailures' reruns; the plugin goes
    # before its pytest_configure, which under xdist starts a socket server and a thread in
    # every run, and its hooks that keep each failure's exception alive (plugin/retries.py).
    if (config.getoption("tiergate_run") or config.getoption("tiergate_tier")) and (
            config.pluginmanager.has_plugin("rerunfailures")):
        from tiergate.plugin.retries import replace_rerunfailures

        replace_rerunfailures(config)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    spec = _resolve_spec(config)
    if spec is None:
        return
    from tiergate.plugin.retries import Retries
    from tiergate.plugin.tierrun import TierRun

    run = TierRun(config, spec)
    config.pluginmanager.register(run, "tiergate-run")
    config.pluginmanager.register(Retries(run), "tiergate-retries")


def _resolve_spec(config: pytest.Config) -> RunSpec | None:
    spec_file = config.getoption("tiergate_run")
    name = config.getoption("tiergate_tier")
    if not spec_file and not name:
        return None
    from tiergate.errors import ConfigError
    from tiergate.protocol import layout
    from tiergate.protocol.runspec import RunSpec
    from tiergate.settings.config import load_config

    if spec_file:
        return RunSpec.read(Path(spec_file))
    try:
        tier = load_config(config.rootpath).tier(name)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    given = config.getoption("tiergate_results_dir")
    results_dir = Path(given) if given else layout.default_results_dir(config.rootpath, name)
    return RunSpec(
        tier=tier, results_dir=results_dir, run_dir=layout.run_dir(results_dir), supervised=False
    )
