"""The check run: the summary, and annotations on each test's line and on each culprit's line.
GitHub takes at most 50 annotations per request, so the first 50 go with the create (POST) and
the rest in updates (PATCH) of 50 each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiergate.github.client import GitHubClient
from tiergate.github.known import TEXT_LIMIT, marker, tests_marker
from tiergate.report.annotations import (
    DETAILS_BYTES,
    MESSAGE_BYTES,
    TITLE_BYTES,
    Annotation,
    annotations_for,
)
from tiergate.report.escape import cut_bytes, cut_middle_bytes, one_line
from tiergate.report.summary import verdict_words
from tiergate.results.model import RunResult

CHUNK = 50
# output.summary and output.text: "Maximum length: 65535 characters" in the REST description of
# "Create a check run", counted by GitHub in UTF-8 bytes (github/docs#35252).
TEXT_BYTES = 65_535
MAX_ANNOTATIONS = 1000  # 20 requests; past that the summary has the rest
_LEVEL = {"error": "failure", "warning": "warning"}


def check_name(tier: str, environment: str | None = None) -> str:
    """"tiergate (fast)"; a run against an environment is its own check: "tiergate (staging ·
    production-canary)", so its known findings are compared with that environment's."""
    return f"tiergate ({tier} · {environment})" if environment else f"tiergate ({tier})"


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
    """One annotation as the API takes it, each text within its limit (see report/annotations:
    one field over it and GitHub refuses the whole request)."""
    title = cut_bytes(note.title, TITLE_BYTES)
    data: dict[str, Any] = {
        "path": note.path,
        "start_line": note.line or 1,
        "end_line": note.line or 1,
        "annotation_level": _LEVEL.get(note.level, "notice"),
        "title": title,
        "message": cut_bytes(note.message, MESSAGE_BYTES) or title,
    }
    if note.details:
        data["raw_details"] = cut_middle_bytes(note.details, DETAILS_BYTES)
    return data


def publish_check_run(client: GitHubClient, repository: str, sha: str, run: RunResult, *,
                      name: str, summary: str, fingerprints: list[str],
                      details_url: str | None = None, project: Path | None = None,
                      ran: list[str] | None = None) -> int:
    """Creates the completed check run and returns its id. *project*: the project's folder
    (default: the cwd), for annotation paths relative to the repository."""
    notes = [n for n in annotations_for(run, project=project, both_lines=True) if n.path]
    payloads = [to_api(n) for n in notes[:MAX_ANNOTATIONS]]
    chunks = [payloads[i:i + CHUNK] for i in range(0, len(payloads), CHUNK)] or [[]]
    counts = run.counts()
    title = one_line(
        f"{verdict_words(run)}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['timeout']} timed out, {len(run.findings)} findings", 250)
    # Every PATCH carries the whole output, text included: an update replaces the output it
    # names, and a PATCH without text could leave the check run without its fingerprints, so
    # the next commit would see every finding as new. Annotations alone are appended.
    output = {"title": title, "summary": cut_bytes(summary, TEXT_BYTES, markup=True),
              "text": marker(fingerprints) + "\n\nFingerprints of this run's findings, read by "
              "tiergate on later commits to tell new findings from known ones."}
    if ran is not None:  # and the tests that ran: what later commits list when they no longer do
        output["text"] += "\n" + tests_marker(ran, TEXT_LIMIT - len(output["text"]) - 1)
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
                     {"output": {**output, "annotations": chunk}})
    return check_id
