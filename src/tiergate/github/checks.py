"""The check run: the summary, and annotations on each test's line and on each culprit's line.
GitHub takes at most 50 annotations per request, so the first 50 go with the create (POST) and
the rest in updates (PATCH) of 50 each."""

from __future__ import annotations

from typing import Any

from tiergate.github.client import GitHubClient
from tiergate.github.known import marker
from tiergate.report.annotations import Annotation, annotations_for
from tiergate.report.escape import one_line
from tiergate.report.summary import verdict_words
from tiergate.results.model import RunResult

CHUNK = 50
MAX_ANNOTATIONS = 1000  # 20 requests; past that the summary has the rest
_LEVEL = {"error": "failure", "warning": "warning"}


def check_name(tier: str) -> str:
    return f"tiergate ({tier})"


def conclusion(run: RunResult) -> str:
    """success only for a pass; neutral for no tests where the tier allows that; cancelled for a
    cancelled run; failure for everything else (no tests where that is not allowed included)."""
    if run.outcome == "passed":
        return "success"
    if run.outcome == "cancelled":
        return "cancelled"
    if run.outcome == "no-tests" and run.ok:
        return "neutral"
    return "failure"


def to_api(note: Annotation) -> dict[str, Any]:
    data: dict[str, Any] = {
        "path": note.path,
        "start_line": note.line or 1,
        "end_line": note.line or 1,
        "annotation_level": _LEVEL.get(note.level, "notice"),
        "title": note.title[:255],
        "message": note.message[:60_000] or note.title[:255],
    }
    if note.details:
        data["raw_details"] = note.details[:60_000]
    return data


def publish_check_run(client: GitHubClient, repository: str, sha: str, run: RunResult, *,
                      name: str, summary: str, fingerprints: list[str],
                      details_url: str | None = None) -> int:
    """Creates the completed check run and returns its id."""
    notes = [n for n in annotations_for(run, both_lines=True) if n.path]
    payloads = [to_api(n) for n in notes[:MAX_ANNOTATIONS]]
    chunks = [payloads[i:i + CHUNK] for i in range(0, len(payloads), CHUNK)] or [[]]
    counts = run.counts()
    title = one_line(
        f"{verdict_words(run)}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['timeout']} timed out, {len(run.findings)} findings", 250)
    output = {"title": title, "summary": summary,
              "text": marker(fingerprints) + "\n\nFingerprints of this run's findings, read by "
              "tiergate on later commits to tell new findings from known ones."}
    body: dict[str, Any] = {
        "name": name,
        "head_sha": sha,
        "status": "completed",
        "conclusion": conclusion(run),
        "output": {**output, "annotations": chunks[0]},
    }
    if details_url:
        body["details_url"] = details_url
    created = client.post(f"/repos/{repository}/check-runs", body)
    check_id = int(created["id"])
    for chunk in chunks[1:]:
        client.patch(f"/repos/{repository}/check-runs/{check_id}",
                     {"output": {"title": title, "summary": summary, "annotations": chunk}})
    return check_id
