"""Nightly and scheduled runs have no pull request to comment on: one open issue per tier,
labelled ``tiergate``, created when the tier fails, updated while it keeps failing, and closed
with a comment when it passes again."""

from __future__ import annotations

import re
from typing import Any

from tiergate.github.client import GitHubClient

LABEL = "tiergate"


def marker(tier: str) -> str:
    return f"<!-- tiergate:issue tier={re.sub(r'[^A-Za-z0-9_.-]', '_', tier)} -->"


def find_open_issue(client: GitHubClient, repository: str, tier: str) -> dict[str, Any] | None:
    for issue in client.paginate(f"/repos/{repository}/issues",
                                 {"labels": LABEL, "state": "open"}):
        if "pull_request" not in issue and marker(tier) in str(issue.get("body") or ""):
            return dict(issue)
    return None


def sync_issue(client: GitHubClient, repository: str, tier: str, body: str, *, failing: bool,
               sha: str, run_url: str | None) -> str:
    issue = find_open_issue(client, repository, tier)
    body = f"{marker(tier)}\n{body}"
    if failing:
        if issue is None:
            created = client.post(f"/repos/{repository}/issues", {
                "title": f"tiergate: tier {tier} is failing",
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
                {"body": f"✅ Tier {tier} passes again on {sha[:12]}{where}. Closing."})
    client.patch(f"/repos/{repository}/issues/{issue['number']}",
                 {"state": "closed", "state_reason": "completed"})
    return f"closed issue #{issue['number']}"
