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

from tiergate.cli.flakes import attach_history
from tiergate.errors import UsageError
from tiergate.protocol import environ
from tiergate.protocol.layout import FINDINGS_FILE, SUMMARY_FILE
from tiergate.report import actions
from tiergate.report.links import Links
from tiergate.report.summary import render_summary
from tiergate.report.terminal import render_terminal
from tiergate.results.files import write_trace
from tiergate.results.inputs import load_run, name_tier


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
    parser.add_argument("--tier", default=None, metavar="NAME",
                        help="the tier the report is for, in its headings and outputs; it wins "
                        "over the name the results carry (the action passes its own input: "
                        "results from a fork's artifact do not choose it)")
    parser.add_argument("--title", default=None, help="the summary's heading")
    parser.add_argument("--allow-no-tests", action="store_true",
                        help="a run in which no test ran is not a failure for this report "
                        "(default: the tier's allow-no-tests)")
    parser.add_argument("--expect-shards", default=None, metavar="N",
                        help="the results dirs are a sharded tier's: each of shards 1 to N must "
                        "be there, once, or the verdict fails (default: "
                        f"${environ.EXPECT_SHARDS})")
    parser.set_defaults(handler=run)


def expected_shards(given: str | None, env: dict[str, str] | None = None) -> int | None:
    """--expect-shards, else the variable the template sets; a bad value is one line."""
    source = os.environ if env is None else env
    raw, where = ((given, "--expect-shards") if given is not None
                  else (source.get(environ.EXPECT_SHARDS), environ.EXPECT_SHARDS))
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and int(text) >= 1):
        raise UsageError(f"{where} {raw!r} is not valid: use the number of shards, e.g. 4")
    return int(text)


def details_url(environ: dict[str, str] | None = None) -> str | None:
    """The job's page on GitHub, where the full job summary is, when running on Actions."""
    env = dict(os.environ) if environ is None else environ
    server, repo, run_id = (env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"),
                            env.get("GITHUB_RUN_ID"))
    if not (server and repo and run_id):
        return None
    attempt = env.get("GITHUB_RUN_ATTEMPT")
    return f"{server}/{repo}/actions/runs/{run_id}" + (f"/attempts/{attempt}" if attempt else "")


def actions_links(environ: dict[str, str] | None = None) -> Links | None:
    """The commit, run and blob links of the job summary, read from the Actions context the
    way ``tiergate post`` reads it (a PR's head, not its merge commit); None off Actions."""
    env = dict(os.environ) if environ is None else environ
    if not (env.get("GITHUB_REPOSITORY") and env.get("GITHUB_SHA")):
        return None
    from tiergate.github.context import load_context  # only on Actions: start-up cost

    ctx = load_context(env, token=False)
    return Links(ctx.server_url, ctx.repository, ctx.sha, run_url=details_url(env),
                 base_sha=ctx.base_sha)


def run(args: argparse.Namespace) -> int:
    results = load_run(args.results_dir, args.junit, expected_shards(args.expect_shards))
    name_tier(results, args.tier)
    if args.allow_no_tests:
        results.settings["allow-no-tests"] = True
    attach_history(results, Path.cwd(), update=True)  # the tier's flake history, this run counted
    if args.output_dir is not None:
        out_dir = args.output_dir
    elif args.results_dir:
        out_dir = args.results_dir[0]
    elif results.sources and Path(results.sources[0]).is_dir():
        out_dir = Path(results.sources[0])
    else:
        out_dir = args.junit[0].parent
    out_dir.mkdir(parents=True, exist_ok=True)

    url, links = details_url(), actions_links()
    summary_path = out_dir / SUMMARY_FILE
    # The output dir may be an artifact someone else made: write new files, never through a
    # link that was left there (it could point anywhere the job can write).
    _write_new(summary_path, render_summary(results, title=args.title, details_url=url,
                                            links=links))
    _unlink_link(out_dir / (FINDINGS_FILE + ".tmp"))
    results.write_findings(out_dir)
    write_trace(out_dir, results)  # the merged timeline, uploaded with the merged results
    sys.stdout.write(render_terminal(results))

    if actions.in_github_actions():
        room = actions.step_summary_room()
        actions.append_step_summary(
            render_summary(results, title=args.title, details_url=url, budget=room,
                           links=links))
        actions.write_outputs(actions.run_outputs(results, summary_path=summary_path,
                                                  results_dir=out_dir))
        for line in actions.annotation_commands(results):
            print(line)
    sys.stdout.flush()
    return 0 if results.ok else 1


def _unlink_link(path: Path) -> None:
    if path.is_symlink():
        path.unlink()


def _write_new(path: Path, text: str) -> None:
    """*path* replaced by a new file with *text* (a link there is replaced, not followed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _unlink_link(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
