"""``tiergate report``: the run (from results dirs, shards merged, and/or JUnit files of other
runners) as summary.md and findings.json, and on GitHub Actions as the job summary, step outputs
and annotations. Exit 0 only when the verdict is green (the run passed, or no tests ran and that is
allowed), 1 when it is not (failed, cancelled, no tests), 2 when an input cannot be read."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tiergate.report import actions
from tiergate.report.inputs import load_run
from tiergate.report.summary import render_summary
from tiergate.report.terminal import render_terminal
from tiergate.resultfiles import SUMMARY_FILE


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help="summarise results: summary.md, job summary, outputs, annotations",
        description="Build the report of one run from results dirs (shards are merged) and/or "
        "JUnit files from any runner. On GitHub Actions also writes the job summary, step "
        "outputs and annotations.",
    )
    parser.add_argument("--results-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="a results dir (repeat to merge shards); default: .tiergate/*")
    parser.add_argument("--junit", action="append", type=Path, default=[], metavar="FILE",
                        help="a JUnit XML file from any runner (repeatable)")
    parser.add_argument("--output-dir", type=Path, default=None, metavar="DIR",
                        help="where summary.md and findings.json go (default: the first "
                        "results dir, else next to the first JUnit file)")
    parser.add_argument("--title", default=None, help="the summary's heading")
    parser.add_argument("--allow-no-tests", action="store_true",
                        help="a run in which no test ran is not a failure for this report "
                        "(default: the tier's allow-no-tests)")
    parser.set_defaults(handler=run)


def details_url(environ: dict[str, str] | None = None) -> str | None:
    """The job's page on GitHub, where the full job summary is, when running on Actions."""
    env = dict(os.environ) if environ is None else environ
    server, repo, run_id = (env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"),
                            env.get("GITHUB_RUN_ID"))
    if not (server and repo and run_id):
        return None
    attempt = env.get("GITHUB_RUN_ATTEMPT")
    return f"{server}/{repo}/actions/runs/{run_id}" + (f"/attempts/{attempt}" if attempt else "")


def run(args: argparse.Namespace) -> int:
    results = load_run(args.results_dir, args.junit)
    if args.allow_no_tests:
        results.settings["allow-no-tests"] = True
    if args.output_dir is not None:
        out_dir = args.output_dir
    elif args.results_dir:
        out_dir = args.results_dir[0]
    elif results.sources and Path(results.sources[0]).is_dir():
        out_dir = Path(results.sources[0])
    else:
        out_dir = args.junit[0].parent
    out_dir.mkdir(parents=True, exist_ok=True)

    url = details_url()
    summary_path = out_dir / SUMMARY_FILE
    summary_path.write_text(render_summary(results, title=args.title, details_url=url),
                            encoding="utf-8")
    results.write_findings(out_dir)
    sys.stdout.write(render_terminal(results))

    if actions.in_github_actions():
        room = actions.step_summary_room()
        actions.append_step_summary(
            render_summary(results, title=args.title, details_url=url, budget=room))
        actions.write_outputs(actions.run_outputs(results, summary_path=summary_path,
                                                  results_dir=out_dir))
        for line in actions.annotation_commands(results):
            print(line)
    sys.stdout.flush()
    return 0 if results.ok else 1
