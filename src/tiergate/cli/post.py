"""``tiergate post``: the report on GitHub — a check run with annotations, and a sticky PR comment
(or, for scheduled runs, an issue per tier). Posting is optional: a missing token, a fork's
read-only token or an API outage prints one line and exits 0, unless ``--fail-on-error``.

Pull requests from forks get a read-only GITHUB_TOKEN. To post for them safely, upload the
results dir as an artifact in the ``pull_request`` workflow, and run ``tiergate post`` in a
separate ``on: workflow_run`` workflow that downloads the artifact — it has a write token and
never checks out or runs the PR's code (see workflows-templates/fork-report.yml). Never use
``pull_request_target`` with a checkout of the PR head."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from tiergate.cli.flakes import attach_history
from tiergate.errors import InputError, UsageError
from tiergate.github import checks, comment, issue
from tiergate.github.client import GitHubClient, GitHubError
from tiergate.github.context import Context, load_context
from tiergate.github.known import base_text, parse, parse_tests
from tiergate.report import fingerprint
from tiergate.report.escape import terminal_text, workflow_command
from tiergate.report.links import Links
from tiergate.report.lost import lost_tests, ran
from tiergate.report.summary import CHECK_RUN_LIMIT, COMMENT_LIMIT, render_summary
from tiergate.results.inputs import load_run, name_tier
from tiergate.results.model import RunResult
from tiergate.settings.config import COMMENT_MODES

_MARKER_ROOM = 200


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help="post the report to GitHub: check run, sticky PR comment, nightly issue",
        description="Post the report of a run to GitHub using the standard Actions environment "
        "(GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_SHA, GITHUB_EVENT_PATH, GITHUB_API_URL).",
    )
    parser.add_argument("--results-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="a results dir (repeat to merge shards); default: .tiergate/*")
    parser.add_argument("--junit", action="append", type=Path, default=[], metavar="FILE",
                        help="a JUnit XML file from any runner (repeatable)")
    parser.add_argument("--tier", default=None, metavar="NAME",
                        help="the tier name for the comment and check run; it wins over the "
                        "name the results carry (default: the run's). The action passes its "
                        "own input, so a fork's artifact cannot choose the check run's name")
    parser.add_argument("--comment", choices=COMMENT_MODES, default=None,
                        help="when to write the sticky PR comment: always, on-failure (none on "
                        "a green PR, but an earlier one says green again), changes (only when "
                        "the verdict or the findings changed), off (default: the tier's "
                        "`comment` key, else on-failure)")
    parser.add_argument("--fail-on-error", action="store_true",
                        help="exit non-zero when posting fails (default: never fail the job)")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                        help="timeout of each request to the API (default 15)")
    parser.set_defaults(handler=run)


def _say(line: str) -> None:
    print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        ctx = load_context()
        results = load_run(args.results_dir, args.junit)
        name_tier(results, args.tier)
        attach_history(results, Path.cwd(), update=False)  # `tiergate report` counted the run
    except (UsageError, InputError) as exc:
        if args.fail_on_error:
            raise
        _say(f"tiergate post: {terminal_text(str(exc))}")
        return 0
    for note in results.input_notes[:10]:
        _say(terminal_text(f"tiergate post: input: {note}"))
    client = GitHubClient(ctx.api_url, ctx.token, timeout=args.timeout)
    ctx = find_fork_pull_request(client, ctx)
    errors = publish(client, ctx, results, tier=args.tier or results.tier or "default",
                     comment_mode=comment_mode(args.comment, results))
    if not errors:
        return 0
    if all(e.not_accessible for e in errors):
        _say(workflow_command(
            "notice",
            "tiergate could not post to this pull request: the token is read-only (a pull "
            "request from a fork, or the workflow lacks 'checks: write' / 'pull-requests: "
            "write'). The job summary has the full report; for forks, post from a workflow_run "
            "workflow (see workflows-templates/fork-report.yml).",
            title="tiergate post"))
        return 0
    for error in errors:
        _say(workflow_command("warning", f"tiergate post: {error}", title="tiergate post"))
    return 1 if args.fail_on_error else 0


def comment_mode(given: str | None, results: RunResult) -> str:
    """The option wins; else the tier's key as the run recorded it (untrusted: a value this
    version does not know means the default)."""
    recorded = results.settings.get("comment")
    return given or (recorded if recorded in COMMENT_MODES else "on-failure")


def find_fork_pull_request(client: GitHubClient, ctx: Context) -> Context:
    """A workflow_run for a fork's pull request carries no PR number: find the open PR whose head
    is the fork's branch at exactly the commit that was tested."""
    if ctx.pr_number is not None or not ctx.fork_head:
        return ctx
    try:
        pulls = client.get(f"/repos/{ctx.repository}/pulls",
                           {"state": "open", "head": ctx.fork_head})
    except GitHubError as exc:
        _say(terminal_text(f"tiergate post: could not look up the pull request of "
                           f"{ctx.fork_head}: {exc}"))
        return ctx
    for pull in pulls if isinstance(pulls, list) else []:
        if pull.get("head", {}).get("sha") == ctx.sha:
            base = pull.get("base", {}).get("sha")
            return dataclasses.replace(ctx, pr_number=int(pull["number"]), base_sha=base)
    return ctx


def publish(client: GitHubClient, ctx: Context, results: RunResult, *, tier: str,
            comment_mode: str = "on-failure") -> list[GitHubError]:
    """Every part that can be posted is posted; the errors of those that could not are returned."""
    errors: list[GitHubError] = []
    name = checks.check_name(tier, ctx.environment)
    base = base_text(client, ctx.repository, ctx.base_sha, name)
    known = None if base is None else parse(base)
    base_tests = parse_tests(base)
    prints = fingerprint.of_run(results)
    title = f"tiergate · tier {tier}"
    # Green only when the verdict is (a pass, or no tests where the tier allows that): a run that
    # selected nothing, or was cancelled, keeps the comment and the nightly issue open. Tests
    # that no longer run do not fail the tier, but the comment is where a review sees them.
    failing = (not results.ok or bool(results.findings)
               or bool(lost_tests(results, base_tests)))

    links = Links(ctx.server_url, ctx.repository, ctx.sha, run_url=ctx.run_url,
                  base_sha=ctx.base_sha)

    def summary(budget: int) -> str:
        # The job summary has the diagnostics (slowest, heaviest, memory); a review does not.
        return render_summary(results, title=title, details_url=ctx.run_url, budget=budget,
                              known=known, links=links, diagnostics=False,
                              base_tests=base_tests)

    try:
        check_id = checks.publish_check_run(
            client, ctx.repository, ctx.sha, results, name=name,
            summary=summary(CHECK_RUN_LIMIT - _MARKER_ROOM), fingerprints=prints,
            details_url=ctx.run_url, ran=ran(results))
        _say(terminal_text(f"tiergate post: check run {check_id} created on {ctx.sha[:12]}"))
        links = links.with_check(f"{ctx.server_url}/{ctx.repository}/runs/{check_id}")
    except GitHubError as exc:
        errors.append(exc)

    body = summary(COMMENT_LIMIT - _MARKER_ROOM - 300)
    try:
        if ctx.pr_number is not None:
            again = None
            if not failing and results.outcome == "passed":
                again = (f"✅ **All green again** on {ctx.sha[:12]}: this comment reported "
                         "problems on an earlier push.")
            elif not failing:  # no tests ran, which the tier allows: not a pass, not a failure
                again = (f"⚠️ **No tests ran** on {ctx.sha[:12]} (allowed by allow-no-tests): "
                         "this comment reported problems on an earlier push.")
            done = comment.upsert_comment(client, ctx.repository, ctx.pr_number, tier, body,
                                          failing=failing, mode=comment_mode, again=again,
                                          state=fingerprint.state(results))
            _say(terminal_text(f"tiergate post: PR #{ctx.pr_number} comment {done}"))
        elif ctx.nightly:
            done = issue.sync_issue(client, ctx.repository, tier, body,
                                    failing=not results.ok, sha=ctx.sha,
                                    run_url=ctx.run_url, environment=ctx.environment,
                                    branch=ctx.branch)
            _say(terminal_text(f"tiergate post: {done}"))
    except GitHubError as exc:
        errors.append(exc)
    sys.stdout.flush()
    return errors
