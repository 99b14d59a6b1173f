"""GitHub Actions, through files and stdout only: the step summary (``$GITHUB_STEP_SUMMARY``), step
outputs (``$GITHUB_OUTPUT``) and annotations as workflow commands. No API calls here."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from tiergate.protocol.findings import TIMEOUT_KINDS
from tiergate.report.annotations import Annotation, annotations_for
from tiergate.report.escape import workflow_command
from tiergate.report.summary import STEP_SUMMARY_LIMIT
from tiergate.results.model import RunResult

PER_LEVEL = 10  # GitHub shows at most 10 error and 10 warning annotations per step
_MARGIN = 4096  # room left in the step summary for whatever a later step appends


def in_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS") == "true"


def step_summary_room(environ: Mapping[str, str] | None = None) -> int:
    """Bytes the summary may take: the 1 MiB limit minus what earlier writes left in the file."""
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_STEP_SUMMARY")
    used = 0
    if path:
        try:
            used = Path(path).stat().st_size
        except OSError:
            used = 0
    return max(0, STEP_SUMMARY_LIMIT - used - _MARGIN)


def append_step_summary(markdown: str, environ: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    data = markdown if markdown.endswith("\n") else markdown + "\n"
    if len(data.encode("utf-8")) > step_summary_room(env):
        return None  # the caller renders to step_summary_room(); never break the whole summary
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(data)
    return Path(path)


def run_outputs(run: RunResult, *, summary_path: Path | None, results_dir: Path | None
                ) -> dict[str, str]:
    counts = run.counts()
    timed_out = {t.nodeid for t in run.tests.values() if t.outcome == "timeout"}
    timed_out |= {f.test or f"<{f.kind}>" for f in run.findings if f.kind in TIMEOUT_KINDS}
    return {
        "outcome": run.outcome,  # passed, failed, no-tests or cancelled (RUN_OUTCOMES)
        "ok": "true" if run.ok else "false",  # green: passed, or no tests where that is allowed
        "passed": str(counts["passed"]),
        "failed": str(counts["failed"]),
        "skipped": str(counts["skipped"]),
        "timeouts": str(len(timed_out)),
        "leaks": str(len(run.leak_findings)),
        "errors": str(counts["error"]),
        "summary-path": str(summary_path or ""),
        "results-dir": str(results_dir or ""),
    }


def write_outputs(outputs: Mapping[str, str], environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return False
    chunks = []
    for name, value in outputs.items():
        if "\n" in value or "\r" in value:
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            chunks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        else:
            chunks.append(f"{name}={value}\n")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(chunks))
    return True


def annotation_commands(run: RunResult, *, root: Path | None = None,
                        project: Path | None = None, per_level: int = PER_LEVEL) -> list[str]:
    """``::error``/``::warning`` lines for the most important findings and failures, at most
    *per_level* of each, then one ``::notice`` saying how many more there are. Their paths are
    relative to the repository *root* whatever the *project* folder (default: the cwd)."""
    chosen: dict[str, list[Annotation]] = {"error": [], "warning": []}
    left: dict[str, int] = {"error": 0, "warning": 0}
    for note in annotations_for(run, root=root, project=project):
        bucket = chosen[note.level]
        if len(bucket) < per_level:
            bucket.append(note)
        else:
            left[note.level] += 1
    lines = [
        workflow_command(note.level, note.message, title=note.title, file=note.path,
                         line=note.line)
        for note in [*chosen["error"], *chosen["warning"]]
    ]
    if left["error"] or left["warning"]:
        more = " and ".join(f"{n:,} more {level}s" for level, n in left.items() if n)
        lines.append(workflow_command(
            "notice", f"tiergate: {more} not annotated here; see the job summary.",
            title="tiergate"))
    return lines
