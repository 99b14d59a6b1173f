"""New vs. known findings. A finding (or failing test) whose fingerprint was also reported on the
base commit is "known"; new ones are listed first.

Where the base's fingerprints live: in the ``output.text`` of tiergate's check run on that commit,
as one hidden HTML comment (``<!-- tiergate:fingerprints v1 … -->``). The check run already exists
for every commit tiergate ran on, needs no artifact download (which a fork's read-only token could
not do across workflows), and GitHub keeps it as long as the commit. A base commit tiergate never
ran on simply has no known findings.

The same text keeps the ids of the tests that ran there (not skipped), compressed, in a second
comment (``<!-- tiergate:tests v1 … -->``): what a later pull request compares with to list the
tests that no longer run (report/lost.py)."""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable

from tiergate.github.client import GitHubClient, GitHubError

MAX_PRINTS = 4000  # 13 characters each: stays far below the 65,535-character text limit
_MARKER = re.compile(r"<!-- tiergate:fingerprints v1 ([0-9a-f ]*)-->")
_TESTS = re.compile(r"<!-- tiergate:tests v1 ([A-Za-z0-9+/=]*) -->")
# A check run's text holds 65,535 characters; the tests get what the fingerprints leave (about
# 60,000 characters when there are few findings: tens of thousands of test ids, compressed).
# A suite whose list does not fit keeps none, and its next pull request compares none.
TEXT_LIMIT = 65_535
_TESTS_BYTES = 4 << 20  # the most a stored list may inflate to: a base's text is read, not trusted


def marker(prints: Iterable[str]) -> str:
    kept = list(prints)[:MAX_PRINTS]
    return f"<!-- tiergate:fingerprints v1 {' '.join(kept)} -->"


def parse(text: str | None) -> set[str]:
    match = _MARKER.search(text or "")
    return set(match.group(1).split()) if match else set()


def tests_marker(nodeids: Iterable[str], room: int) -> str:
    """The ids of the tests that ran, as one hidden comment; empty when it would be longer
    than *room* characters."""
    packed = zlib.compress("\n".join(nodeids).encode("utf-8", "replace"), 9)
    data = base64.b64encode(packed).decode("ascii")
    text = f"<!-- tiergate:tests v1 {data} -->"
    return text if len(text) <= room else ""


def parse_tests(text: str | None) -> set[str] | None:
    """The tests that ran on the base, or None when its text keeps none (or a damaged list)."""
    match = _TESTS.search(text or "")
    if not match:
        return None
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(base64.b64decode(match.group(1)), _TESTS_BYTES)
    except (binascii.Error, zlib.error, ValueError):
        return None
    if inflate.unconsumed_tail:
        return None  # larger than any list tiergate writes
    return set(raw.decode("utf-8", "replace").split("\n")) - {""}


def known_on_base(client: GitHubClient, repository: str, base_sha: str | None,
                  check_name: str) -> set[str] | None:
    """The fingerprints stored on the base commit's check run, or None when there is none to
    compare with (no base, tiergate did not run there, or it cannot be read)."""
    text = base_text(client, repository, base_sha, check_name)
    return None if text is None else parse(text)


def base_text(client: GitHubClient, repository: str, base_sha: str | None,
              check_name: str) -> str | None:
    """The text of tiergate's latest check run on the base commit, or None when there is none
    (no base, tiergate did not run there, or it cannot be read)."""
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
    return str(output.get("text") or "")
