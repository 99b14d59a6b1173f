"""Nightly and scheduled runs have no pull request to comment on: one open issue per tier (and
environment, and branch when not the default one), labelled ``tiergate``, created when it fails,
updated while it keeps failing, and closed with a comment when it passes again."""

from __future__ import annotations

import re
from typing import Any

from tiergate.github.client import GitHubClient
from tiergate.github.comment import fit_body
from tiergate.report.escape import cut_bytes, md_text

LABEL = "tiergate"


def _token(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def marker(tier: str, environment: str | None = None, branch: str | None = None) -> str:
    """One issue per tier, environment and (when not the default) branch: a green run of one
    never closes the issue another opened. Without either, the marker of earlier versions."""
    scope = "".join(f" {key}={_token(value)}" for key, value in
                    (("env", environment), ("branch", branch)) if value)
    return f"<!-- tiergate:issue tier={_token(tier)}{scope} -->"


def scope_words(tier: str, environment: str | None = None, branch: str | None = None) -> str:
    """"tier nightly", "tier staging (production-canary) on feature-x": for titles."""
    return (f"tier {tier}" + (f" ({environment})" if environment else "")
            + (f" on {branch}" if branch else ""))


def find_open_issue(client: GitHubClient, repository: str, tier: str,
                    environment: str | None = None, branch: str | None = None
                    ) -> dict[str, Any] | None:
    wanted = marker(tier, environment, branch)
    for issue in client.paginate(f"/repos/{repository}/issues",
                                 {"labels": LABEL, "state": "open"}):
        # the marker ends with " -->", so tier=a never matches tier=a env=b
        if "pull_request" not in issue and wanted in str(issue.get("body") or ""):
            return dict(issue)
    return None


def sync_issue(client: GitHubClient, repository: str, tier: str, body: str, *, failing: bool,
               sha: str, run_url: str | None, environment: str | None = None,
               branch: str | None = None) -> str:
    issue = find_open_issue(client, repository, tier, environment, branch)
    body = fit_body(f"{marker(tier, environment, branch)}\n{body}")
    scope = scope_words(tier, environment, branch)
    if failing:
        if issue is None:
            created = client.post(f"/repos/{repository}/issues", {
                # GitHub refuses a title past 256 characters ("title is too long")
                "title": cut_bytes(f"tiergate: {scope} is failing", 256),
                "body": body,
                "labels": [LABEL],
            })
            return f"created issue #{created.get('number')}"
        client.patch(f"/repos/{repository}/issues/{issue['number']}", {"body": body})
        return f"updated issue #{issue['number']}"
    if issue is None:
        return "nothing to do (passing, no open issue)"
    where = f" ([run]({run_url}))" if run_url else ""
    client.post(f"/repos/{repository}/issues/{issue['number']}/comments",
                {"body": f"✅ {md_text(scope[0].upper() + scope[1:], 300)} passes again on "
                         f"{sha[:12]}{where}. Closing."})
    client.patch(f"/repos/{repository}/issues/{issue['number']}",
                 {"state": "closed", "state_reason": "completed"})
    return f"closed issue #{issue['number']}"
