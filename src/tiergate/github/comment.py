"""The sticky PR comment: one per tier, updated in place, never duplicated.

A comment is ours when it carries the tier's hidden marker AND was written by the identity of our
token. ``GET /user`` tells a personal or app token's login; for the workflow's ``GITHUB_TOKEN`` it
answers 403, and then the author must be ``github-actions[bot]`` (or, for another GitHub App's
installation token, any Bot account). So a user who pastes the marker into their own comment does
not get it overwritten.

Two runs of one PR can race to create the comment: after creating, the list is read again, the
oldest of ours is kept (updated with this body) and any newer duplicate deleted."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tiergate.github.client import GitHubClient, GitHubError
from tiergate.report.escape import cut_bytes

ACTIONS_BOT = "github-actions[bot]"
# An issue or PR comment's body: GitHub answers 422 "body is too long (maximum is 65536
# characters)" past it (the REST docs give no number; that error is the source). Cut in bytes,
# which is never more characters, so no way of counting can refuse it.
BODY_LIMIT = 65_536

# When to comment: the modes of settings.config.COMMENT_MODES (see upsert_comment).
_STATE = re.compile(r"<!-- tiergate:state=([0-9a-f]+) -->")


def fit_body(body: str) -> str:
    """The last guard: the summary is rendered to fit already, this only ever trims a margin."""
    return cut_bytes(body, BODY_LIMIT, markup=True)


def marker(tier: str) -> str:
    return f"<!-- tiergate:tier={re.sub(r'[^A-Za-z0-9_.-]', '_', tier)} -->"


def state_marker(state: str) -> str:
    return f"<!-- tiergate:state={state} -->"


def state_of(body: str | None) -> str | None:
    match = _STATE.search(body or "")
    return match.group(1) if match else None


def token_login(client: GitHubClient) -> str | None:
    """The token's own login, or None for an installation token (GITHUB_TOKEN)."""
    try:
        data = client.get("/user")
    except GitHubError as exc:
        if exc.status in (401, 403, 404):
            return None
        raise
    login = data.get("login") if isinstance(data, dict) else None
    return str(login) if login else None


def is_ours(comment: Mapping[str, Any], tier: str, login: str | None) -> bool:
    if marker(tier) not in str(comment.get("body") or ""):
        return False
    user = comment.get("user") or {}
    if login is not None:
        return bool(user.get("login") == login)
    return bool(user.get("login") == ACTIONS_BOT or user.get("type") == "Bot")


def _ours(client: GitHubClient, path: str, tier: str, login: str | None) -> list[dict[str, Any]]:
    found = [c for c in client.paginate(path) if is_ours(c, tier, login)]
    return sorted(found, key=lambda c: int(c["id"]))


def upsert_comment(client: GitHubClient, repository: str, pr_number: int, tier: str, body: str,
                   *, failing: bool, mode: str = "on-failure", state: str | None = None,
                   again: str | None = None) -> str:
    """Creates, updates or leaves the comment as *mode* says; returns what it did, in words.
    *state* (a hash of the verdict and the findings) goes into the hidden marker, for `changes`.
    *again* ("all green again") heads the body only where it replaces an earlier comment."""
    if mode == "off":
        return "off (comment: off)"
    login = token_login(client)
    path = f"/repos/{repository}/issues/{pr_number}/comments"
    head = marker(tier) + (f"\n{state_marker(state)}" if state else "")
    existing = _ours(client, path, tier, login)
    body = fit_body(f"{head}\n{again}\n\n{body}" if again and existing else f"{head}\n{body}")
    if existing:
        keep = existing[0]
        for extra in existing[1:]:  # left by an earlier race
            client.delete(f"/repos/{repository}/issues/comments/{extra['id']}")
        if keep.get("body") == body:
            return "unchanged"
        if mode == "changes" and state and state_of(keep.get("body")) == state:
            return "unchanged (same verdict and findings; comment: changes)"
        client.patch(f"/repos/{repository}/issues/comments/{keep['id']}", {"body": body})
        return "updated"
    if not failing and mode != "always":
        return "skipped (nothing to report and no earlier comment)"
    return _create(client, repository, path, tier, login, body)


def _create(client: GitHubClient, repository: str, path: str, tier: str, login: str | None,
            body: str) -> str:
    created = client.post(path, {"body": body})
    again = _ours(client, path, tier, login)
    if len(again) > 1:  # another run created one at the same time: keep the oldest
        keep = again[0]
        for extra in again[1:]:
            client.delete(f"/repos/{repository}/issues/comments/{extra['id']}")
        if keep["id"] != created["id"]:
            client.patch(f"/repos/{repository}/issues/comments/{keep['id']}", {"body": body})
            return "updated (a concurrent run had created it)"
    return "created"
