"""``tiergate flakes``: the tier's flake history (the ``history`` folder), worst first, and the
quarantined tests that have passed long enough to be released.

Also where the other commands get the history: ``attach_history`` finds the folder in the
project's own config, never in the results (results may come from a fork's artifact, and must
not choose where the report job writes).
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

from tiergate.cli.options import add_project_option
from tiergate.errors import UsageError
from tiergate.report.escape import terminal_text
from tiergate.results.history import (
    KEPT_RUNS,
    FlakeHistory,
    ci_branch,
    load_history,
    ready_for_release,
    write_history,
)
from tiergate.results.model import RunResult
from tiergate.settings.config import Config, load_config

_ROWS = 50  # rows printed unless --all


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help="the flake history of a tier's tests, worst first",
        description="Per test, across the runs `tiergate report` has counted: attempts, failed "
        "attempts, flaky passes and how many of its last runs were flaky. Needs the tier's "
        "`history` folder.")
    add_project_option(parser)
    parser.add_argument("--tier", default=None, metavar="NAME",
                        help="the tier (default: every tier that keeps a history)")
    parser.add_argument("--all", action="store_true", help=f"every row, not the first {_ROWS}")
    parser.set_defaults(handler=run)


def history_folder(config: Config, tier: str | None) -> Path | None:
    """The tier's ``history`` folder, absolute (None: unknown tier, or it keeps none)."""
    if tier is None or tier not in config.tiers or not config.tiers[tier].history:
        return None
    return config.root / config.tiers[tier].history


def attach_history(results: RunResult, project: Path, *, update: bool) -> Path | None:
    """Attach the tier's history, with this run counted, to *results*; with *update*, write it
    back. The folder written, or None when the tier keeps no history."""
    folder = history_folder(load_config(project), results.tier)
    if folder is None:
        return None
    history = load_history(folder)
    results.history = history.with_run(results, branch=ci_branch())
    if update and results.history is not history:
        write_history(folder, results.history)
    return folder


def run(args: argparse.Namespace) -> int:
    config = load_config(args.project)
    names = [args.tier] if args.tier else [n for n, t in config.tiers.items() if t.history]
    if args.tier:
        config.tier(args.tier)  # an unknown name is one line
    folders = {f: n for n in names if (f := history_folder(config, n)) is not None}
    if not folders:
        which = f"tier {args.tier}" if args.tier else "no tier"
        raise UsageError(f"{which} keeps a flake history: set history = \".tiergate-history\" "
                         "in its [tool.tiergate.tiers.NAME] table")
    for folder, name in folders.items():
        print(_table(name, load_history(folder), _ROWS if not args.all else None))
        _releases(config, load_history(folder))
    return 0


def _table(tier: str, history: FlakeHistory, rows: int | None) -> str:
    worst = history.worst_first()
    head = (f"tier {tier}: {len(history.tests)} tests over {len(history.counted)} runs; "
            f"{len(worst)} flaked or failed")
    if not worst:
        return head
    lines = [head, f"{'flaky (last runs)':>18} {'flaky':>6} {'failed':>7} {'attempts':>9} "
             f"{'last seen':>10}  test"]
    for nodeid, past in worst[:rows]:
        recent = f"{past.recent_flaky}/{len(past.recent)}"
        lines.append(f"{recent:>18} {past.flaky:>6} {past.failures:>7} {past.attempts:>9} "
                     f"{past.last_seen:>10}  {terminal_text(nodeid)}")
    if rows is not None and len(worst) > rows:
        lines.append(f"... and {len(worst) - rows} more (--all)")
    lines.append(f"(flaky (last runs): flaky runs of its last {KEPT_RUNS} at most)")
    return "\n".join(lines)


def _releases(config: Config, history: FlakeHistory) -> None:
    today = datetime.date.today()
    for entry in config.quarantine:
        streaks = [s for n in history.tests if entry.matches(n)
                   if (s := ready_for_release(n, history)) is not None]
        if streaks and len(streaks) == sum(entry.matches(n) for n in history.tests):
            ended = " (its quarantine has expired)" if entry.expired(today) else ""
            print(f"release suggested: {terminal_text(entry.test)} passed on every one of its "
                  f"last {min(streaks)} runs{ended}: tiergate quarantine remove "
                  f"{terminal_text(entry.test)!r}")
