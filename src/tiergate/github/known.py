"""New vs. known findings. A finding (or failing test) whose fingerprint was also reported on the
base commit is "known"; new ones are listed first.

Where the base's fingerprints live: in the ``output.text`` of tiergate's check run on that commit,
as one hidden HTML comment (``<!-- tiergate:fingerprints v1 … -->``). The check run already exists
for every commit tiergate ran on, needs no artifact download (which a fork's read-only token could
not do across workflows), and GitHub keeps it as long as the commit. A base commit tiergate never
ran on simply has no known findings."""

from __future__ import annotations

import re
from collections.abc import Iterable

from tiergate.github.client import GitHubClient, GitHubError

MAX_PRINTS = 4000  # 13 characters each: stays far below the 65,535-character text limit
_MARKER = re.compile(r"<!-- tiergate:fingerprints v1 ([0-9a-f ]*)-->")


def marker(prints: Iterable[str]) -> str:
    kept = list(prints)[:MAX_PRINTS]
    return f"<!-- tiergate:fingerprints v1 {' '.join(kept)} -->"


def parse(text: str | None) -> set[str]:
    match = _MARKER.search(text or "")
    return set(match.group(1).split()) if match else set()


def known_on_base(client: GitHubClient, repository: str, base_sha: str | None,
                  check_name: str) -> set[str] | None:
    """The fingerprints stored on the base commit's check run, or None when there is none to
    compare with (no base, tiergate did not run there, or it cannot be read)."""
    if not base_sha:
        return None
    try:
        runs = list(client.paginate(f"/repos/{repository}/commits/{base_sha}/check-runs",
                                    {"check_name": check_name}, key="check_runs", max_pages=3))
    except GitHubError:
        return None
    if not runs:
        return None
    latest = max(runs, key=lambda r: int(r.get("id") or 0))
    output = latest.get("output") or {}
    return parse(output.get("text"))
