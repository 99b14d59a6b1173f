"""``tiergate run --tier NAME``: run one tier under the supervisor."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tiergate.commands import add_project_option
from tiergate.config import load_config, resolve_tier
from tiergate.errors import UsageError
from tiergate.supervisor import RunPlan, run_plan


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
    parser.add_argument(
        "--test-timeout", metavar="DURATION", help="per-test limit, e.g. 30s (overrides the tier)"
    )
    parser.add_argument("--budget", metavar="DURATION", help="the tier's hard limit, e.g. 15m")
    parser.add_argument(
        "--grace", metavar="DURATION", help="time between a polite stop and a kill, e.g. 10s"
    )
    parser.add_argument("--workers", metavar="N|auto", help="xdist workers (1 = no xdist)")
    parser.add_argument("--markers", metavar="EXPR", help="pytest -m expression for the tier")
    parser.add_argument("--memory-limit", metavar="SIZE",
                        help="the process tree's memory limit, e.g. 2GB or 85%%")
    parser.add_argument("--sample-interval", metavar="DURATION",
                        help="how often the process tree is sampled (0 turns sampling off)")
    parser.add_argument("--collect-timeout", metavar="DURATION",
                        help="limit on collecting (importing) one test module (0 = no limit)")
    parser.add_argument("--allow-no-tests", action="store_true", default=None,
                        help="a tier that selects no tests is not a failure")
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
    add_project_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    project: Path = args.project.resolve()
    if not project.is_dir():
        raise UsageError(f"--project {args.project}: no such directory")
    config = load_config(project)
    overrides = {
        "test-timeout": args.test_timeout,
        "budget": args.budget,
        "grace": args.grace,
        "workers": args.workers,
        "markers": args.markers,
        "memory-limit": args.memory_limit,
        "sample-interval": args.sample_interval,
        "collect-timeout": args.collect_timeout,
        "allow-no-tests": args.allow_no_tests,
    }
    tier = resolve_tier(config, args.tier, overrides)
    root = config.root
    # absolute, not resolved: a symlinked results dir must be seen (and refused) as one
    results_dir = (args.results_dir or root / ".tiergate" / tier.name).absolute()
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
    return run_plan(plan)
