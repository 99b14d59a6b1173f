"""Which findings and failures become annotations, in what order, and on which line. Shared by the
workflow commands (:mod:`tiergate.report.actions`) and the check run
(:mod:`tiergate.github.checks`); neither writes anything here."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePosixPath

from tiergate.protocol.findings import TIMEOUT_KINDS, Finding
from tiergate.report import fingerprint
from tiergate.report.escape import clean, cut_middle, one_line
from tiergate.results.model import RunResult, TestResult

MESSAGE_LIMIT = 2000
DETAILS_LIMIT = 60_000  # a check-run annotation's raw_details holds 64 KB
_URGENT = TIMEOUT_KINDS | {"crash"}


@dataclasses.dataclass(frozen=True)
class Annotation:
    level: str  # "error" | "warning"
    title: str
    message: str
    path: str | None  # relative to the repository root, or None when outside it
    line: int | None
    fingerprint: str
    details: str | None = None  # longer text (a traceback), for the check run's raw_details


def repo_path(path: str | None, root: Path | None = None) -> str | None:
    """*path* relative to the repository (GITHUB_WORKSPACE, else the cwd); None when it is outside
    (site-packages, /usr/lib): an annotation there would point at nothing."""
    if not path:
        return None
    root = root or Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            candidate = candidate.resolve().relative_to(root.resolve())
        except ValueError:
            return None
    parts = PurePosixPath(candidate.as_posix()).parts
    if not parts or ".." in parts:
        return None
    return "/".join(p for p in parts if p != ".")


def _finding_title(f: Finding) -> str:
    test = f" in {f.test}" if f.test else ""
    return f"tiergate {f.kind}{test}"


def _finding_message(f: Finding) -> str:
    text = f.message
    if f.culprit is not None:
        where = f"{f.culprit.path}:{f.culprit.line or '?'} in {f.culprit.function}"
        reason = f": {f.culprit.reason}" if f.culprit.reason else ""
        text += f"\n{f.culprit_label} {where}{reason}"
    if f.dump:
        text += f"\nprocess-tree dump: {f.dump} (see the job summary)"
    return text


def _test_title(t: TestResult) -> str:
    return f"{t.outcome}: {t.nodeid}"


def _order(run: RunResult) -> list[Finding | TestResult]:
    """Most important first: hangs and crashes, then failures, then other errors, then warnings."""
    findings = run.sorted_findings()
    covered = {f.test for f in findings if f.kind in _URGENT and f.test}
    failures = [t for t in run.tests.values() if t.failing and t.nodeid not in covered]
    failures.sort(key=lambda t: (t.outcome != "timeout", t.nodeid))
    urgent = [f for f in findings if f.severity == "error" and f.kind in _URGENT]
    other_errors = [f for f in findings if f.severity == "error" and f.kind not in _URGENT]
    warnings = [f for f in findings if f.severity != "error"]
    return [*urgent, *failures, *other_errors, *warnings]


def annotations_for(
    run: RunResult, *, root: Path | None = None, both_lines: bool = False
) -> list[Annotation]:
    """One annotation per finding or failing test, most important first. A hang is annotated on
    its culprit's line (where the code is stuck); with *both_lines* also on the test's line."""
    out: list[Annotation] = []
    for item in _order(run):
        if isinstance(item, Finding):
            level = "error" if item.severity == "error" else "warning"
            title, message = _finding_title(item), _finding_message(item)
            print_ = fingerprint.of_finding(item)
            places: list[tuple[str | None, int | None]] = []
            if item.culprit is not None and repo_path(item.culprit.path, root):
                places.append((repo_path(item.culprit.path, root), item.culprit.line))
            test = run.tests.get(item.test) if item.test else None
            loc_path = item.location.path if item.location else (test.path if test else None)
            loc_line = item.location.line if item.location else (test.line if test else None)
            if not places or both_lines:
                places.append((repo_path(loc_path, root), loc_line))
            details = test.longrepr if test is not None else None
        else:
            level, title = "error", _test_title(item)
            lines = (item.longrepr or "").strip().splitlines()
            message = item.message or (lines[-1] if lines else item.outcome)
            print_ = fingerprint.of_failure(item)
            places = [(repo_path(item.path, root), item.line)]
            details = item.longrepr
        seen: set[tuple[str | None, int | None]] = set()
        for path, line in places:
            if (path, line) in seen:
                continue
            seen.add((path, line))
            out.append(Annotation(
                level=level,
                title=one_line(title, 250),
                message=one_line(message, MESSAGE_LIMIT) if "\n" not in message
                else _multi_line(message),
                path=path,
                line=line if path else None,
                fingerprint=print_,
                details=cut_middle(clean(details), DETAILS_LIMIT) if details else None,
            ))
    return out


def _multi_line(text: str) -> str:
    lines = [one_line(line, MESSAGE_LIMIT) for line in text.splitlines() if line.strip()]
    return "\n".join(lines)[:MESSAGE_LIMIT]
