"""``tiergate run --tier NAME``: run one tier under the supervisor."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiergate.cli.options import add_project_option
from tiergate.errors import UsageError
from tiergate.protocol import debuglog, environ, layout
from tiergate.protocol.layout import default_results_dir
from tiergate.settings.config import TIER_KEYS, Flag, TierKey, load_config, resolve_tier

if TYPE_CHECKING:
    from tiergate.supervisor.supervise import RunPlan


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help="run a tier under the supervisor (hard limits, dumps, results that always exist)",
        description="Run the tests of one tier under the tiergate supervisor. Everything after "
        "'--' is passed to pytest.",
    )
    parser.add_argument("--tier", required=True, help="the tier to run (see 'tiergate tiers')")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where the results go (default .tiergate/TIER in the project)",
    )
    for key in TIER_KEYS.values():  # the tier keys with a Flag in the table: --KEY overrides it
        if key.flag:
            _add_override(parser, key, key.flag)
    parser.add_argument(
        "--shard", metavar="K/N", help="run part K of N, balanced by durations of earlier runs"
    )
    parser.add_argument(
        "--durations-from",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="earlier results dirs (or durations JSON) that balance --shard",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"log the supervisor's and the plugin's decisions to stderr and to "
        f"RESULTS_DIR/{layout.DEBUG_LOG_FILE} (the same as {environ.DEBUG}=1)",
    )
    add_project_option(parser)
    parser.set_defaults(handler=run)


def _add_override(parser: argparse.ArgumentParser, key: TierKey, flag: Flag) -> None:
    if flag.metavar is None:  # a switch; default None (not given) keeps the tier's own value
        parser.add_argument(f"--{key.name}", dest=key.field, action="store_true", default=None,
                            help=flag.help)
    else:
        parser.add_argument(f"--{key.name}", dest=key.field, metavar=flag.metavar, help=flag.help)


def run(args: argparse.Namespace) -> int:
    if not sys.platform.startswith("linux"):
        # The supervisor stands on /proc, process groups, prctl and `resource`; elsewhere it would
        # fail half-way (or pretend). The plugin's selection still works under plain pytest.
        raise UsageError(f"tiergate run supports Linux only (this is {sys.platform}); "
                         "run the tier's tests with plain pytest here, or use a Linux runner")
    from tiergate.supervisor.supervise import RunPlan  # see run_plan

    project: Path = args.project.resolve()
    if not project.is_dir():
        raise UsageError(f"--project {args.project}: no such directory")
    config = load_config(project)
    overrides = {key.name: getattr(args, key.field) for key in TIER_KEYS.values() if key.flag}
    tier = resolve_tier(config, args.tier, overrides)
    root = config.root
    # absolute, not resolved: a symlinked results dir must be seen (and refused) as one
    results_dir = (args.results_dir or default_results_dir(root, tier.name)).absolute()
    shard = None
    if args.shard:
        from tiergate.shard import parse_shard

        shard = parse_shard(args.shard)
    plan = RunPlan(
        tier=tier,
        results_dir=results_dir,
        root=root,
        pytest_args=tuple(args.pytest_args),
        shard=shard,
        durations_from=tuple(str(p.resolve()) for p in args.durations_from),
    )
    with _debug(args.debug):
        return run_plan(plan)


def run_plan(plan: RunPlan) -> int:
    """The supervisor, imported only when a run starts, so that `tiergate --help` and the other
    commands still work on platforms it does not support (it needs `resource`, /proc, prctl)."""
    from tiergate.supervisor.supervise import run_plan as supervise

    return supervise(plan)


@contextlib.contextmanager
def _debug(asked: bool) -> Iterator[None]:
    """``--debug`` is ``TIERGATE_DEBUG=1`` for this run: the supervisor reads it, and pytest and
    its workers inherit it. Put back afterwards, for a caller that runs us in-process."""
    before = os.environ.get(environ.DEBUG)
    if asked:
        os.environ[environ.DEBUG] = "1"
    try:
        yield
    finally:
        debuglog.stop()
        if asked and before is None:
            os.environ.pop(environ.DEBUG, None)
        elif asked and before is not None:
            os.environ[environ.DEBUG] = before
