"""What `tiergate post` learns from the standard GitHub Actions environment and event payload."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiergate.errors import UsageError
from tiergate.protocol.environ import ENVIRONMENT as ENVIRONMENT_ENV

NIGHTLY_EVENTS = frozenset({"schedule", "workflow_dispatch", "repository_dispatch"})


@dataclasses.dataclass(frozen=True)
class Context:
    api_url: str
    repository: str  # owner/name
    token: str
    sha: str  # the commit the check run goes on (a PR's head, not its merge commit)
    event_name: str
    pr_number: int | None
    base_sha: str | None  # the commit "known" findings are read from
    run_url: str | None
    # workflow_run for a fork's PR: GitHub leaves pull_requests empty, so the PR is looked up by
    # the fork's "owner:branch" (and must have head_sha as its head)
    fork_head: str | None = None
    # What a scheduled or dispatched run tested, besides its tier: the deployment environment
    # (a staging run against production-canary is not one against staging), and the branch
    # when it is not the default one (a dispatch on a feature branch speaks for that branch).
    environment: str | None = None
    branch: str | None = None
    server_url: str = "https://github.com"  # where commit, blob and check run pages are

    @property
    def nightly(self) -> bool:
        return self.pr_number is None and self.event_name in NIGHTLY_EVENTS


class MissingSetting(UsageError):
    pass


def load_context(environ: Mapping[str, str] | None = None, *, token: bool = True) -> Context:
    """The run's context; without *token* (``tiergate report``, which links its job summary to
    the same commit and run that ``post`` does) no token is needed and none is read."""
    env = os.environ if environ is None else environ
    needed = ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_SHA")[0 if token else 1:]
    missing = [name for name in needed if not env.get(name)]
    if missing:
        raise MissingSetting(
            f"not posting: set {', '.join(missing)} (on GitHub Actions: "
            "env: GITHUB_TOKEN: ${{ github.token }}; the others are set by the runner)")
    event = _read_event(env.get("GITHUB_EVENT_PATH"))
    pr = event.get("pull_request") or {}
    sha, base = pr.get("head", {}).get("sha"), pr.get("base", {}).get("sha")
    number = pr.get("number")
    run = event.get("workflow_run")
    fork_head = None
    if not pr and isinstance(run, dict):  # the fork pattern: this workflow reports for another
        sha = run.get("head_sha")
        prs = run.get("pull_requests") or []
        if prs:
            number, base = prs[0].get("number"), prs[0].get("base", {}).get("sha")
        elif run.get("event") == "pull_request" and run.get("head_branch"):
            owner = (run.get("head_repository") or {}).get("owner", {}).get("login")
            fork_head = f"{owner}:{run['head_branch']}" if owner else None
    server, run_id = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_RUN_ID")
    return Context(
        api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
        repository=env["GITHUB_REPOSITORY"],
        token=env.get("GITHUB_TOKEN", "") if token else "",
        sha=sha or env["GITHUB_SHA"],
        event_name=env.get("GITHUB_EVENT_NAME") or "",
        pr_number=int(number) if number else None,
        # no PR: a push compares with the commit before it
        base_sha=base if number else (base or event.get("before") or None),
        run_url=f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{run_id}"
        if server and run_id else None,
        fork_head=fork_head,
        environment=_environment(env, event),
        branch=_other_branch(env, event),
        server_url=(server or "https://github.com").rstrip("/"),
    )


def _environment(env: Mapping[str, str], event: Mapping[str, Any]) -> str | None:
    """TIERGATE_ENVIRONMENT, else a dispatch's ``environment`` input (the staging template's):
    GitHub gives a step no variable that names its job's environment."""
    inputs = event.get("inputs")
    given = env.get(ENVIRONMENT_ENV) or (
        inputs.get("environment") if isinstance(inputs, dict) else None)
    return str(given) if given else None


def _other_branch(env: Mapping[str, str], event: Mapping[str, Any]) -> str | None:
    """The branch the run tested, when the event says it is not the repository's default."""
    branch = env.get("GITHUB_REF_NAME") if env.get("GITHUB_REF_TYPE", "branch") == "branch" \
        else None
    repo = event.get("repository")
    default = repo.get("default_branch") if isinstance(repo, dict) else None
    return branch if branch and default and branch != default else None


def _read_event(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
