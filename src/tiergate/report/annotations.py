"""Which findings and failures become annotations, in what order, and on which line. Shared by the
workflow commands (:mod:`tiergate.report.actions`) and the check run
(:mod:`tiergate.github.checks`); neither writes anything here."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path, PurePosixPath

from tiergate.protocol.findings import TIMEOUT_KINDS, Finding
from tiergate.report import fingerprint
from tiergate.report.escape import clean, cut_bytes, cut_middle_bytes, one_line
from tiergate.results.model import RunResult, TestResult

MESSAGE_LIMIT = 2000  # characters: what a reader takes in on the diff; the rest is in raw_details
# GitHub's limits for a check-run annotation, from the REST description of "Create a check run"
# (docs.github.com/rest/checks/runs, github/rest-api-description): message and raw_details
# "The maximum size is 64 KB", title "The maximum size is 255 characters". GitHub measures the
# check-run texts it calls "characters" in UTF-8 bytes ("summary exceeds a maximum bytesize of
# 65535", github/docs#35252), so every one of these is cut in bytes, which fits either reading.
MESSAGE_BYTES = 65_535
DETAILS_BYTES = 65_535
TITLE_BYTES = 255
_URGENT = TIMEOUT_KINDS | {"crash"}
# Where a traceback names a frame: pytest's "path:line: …" (long, short and line styles) and
# Python's own ``File "path", line N`` (--tb=native). Lines that start with a space are source.
_FRAME = re.compile(r'^(?:(?P<path>[^\s:>][^\s:]*):(?P<line>\d+):(?: |$)'
                    r'|\s*File "(?P<native>[^"]+)", line (?P<nline>\d+))', re.MULTILINE)
_INSTALLED = frozenset({"site-packages", "dist-packages"})


@dataclasses.dataclass(frozen=True)
class Annotation:
    level: str  # "error" | "warning"
    title: str
    message: str
    path: str | None  # relative to the repository root, or None when outside it
    line: int | None
    fingerprint: str
    details: str | None = None  # longer text (a traceback), for the check run's raw_details


def repo_path(path: str | None, root: Path | None = None,
              project: Path | None = None) -> str | None:
    """*path* relative to the repository (GITHUB_WORKSPACE, else the cwd); None when it is outside
    (site-packages, /usr/lib): an annotation there would point at nothing.

    A relative path is relative to the project (pytest's rootdir), which in a monorepo is a
    folder of the repository: the action runs report and post in its working-directory, so the
    project is the cwd unless *project* says otherwise. Such a path is joined to the project,
    unless only the repository has that file (pytest's rootdir was above the working directory);
    with the project outside the repository (a downloaded artifact), it stays as it is."""
    if not path:
        return None
    root = (root or Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())).resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = _in_project(candidate, root, (project or Path.cwd()).resolve())
    if candidate.is_absolute():
        try:
            candidate = candidate.resolve().relative_to(root)
        except ValueError:
            return None
    parts = PurePosixPath(candidate.as_posix()).parts
    if not parts or ".." in parts:
        return None
    return "/".join(p for p in parts if p != ".")


def _in_project(relative: Path, root: Path, project: Path) -> Path:
    if project == root or not project.is_relative_to(root):
        return relative
    if not (project / relative).exists() and (root / relative).exists():
        return root / relative
    return project / relative


def failing_line(test: TestResult, root: Path | None = None,
                 project: Path | None = None) -> tuple[str, int] | None:
    """The deepest frame of *test*'s traceback whose file is in the repository (not an installed
    package): the line that failed, which "Files changed" shows inline. None when the traceback
    names no such frame."""
    found = None
    for match in _FRAME.finditer(test.longrepr or ""):
        path = match.group("path") or match.group("native")
        if _INSTALLED.intersection(PurePosixPath(path).parts):
            continue
        where = repo_path(path, root, project)
        if where is not None:
            found = (where, int(match.group("line") or match.group("nline")))
    return found


def _finding_title(f: Finding) -> str:
    test = f" in {f.test}" if f.test else ""
    return f"tiergate {f.kind}{test}"


def _finding_message(f: Finding, root: Path | None, project: Path | None) -> str:
    """The probe's message with its places relative to the repository, as the annotation's own
    path is (the probes write absolute paths: a runner's /home/runner/… says nothing on a diff),
    and without the culprit's place, which the line after it states."""
    # Imported here: links imports this module for repo_path.
    from tiergate.report.links import shown_path, without_place

    c = f.culprit
    text = without_place(f.message, c.path if c else None, c.line if c else None, root, project)
    if f.culprit is not None:
        shown = shown_path(f.culprit.path, root, project)
        where = f"{shown}:{f.culprit.line or '?'} in {f.culprit.function}"
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
    run: RunResult, *, root: Path | None = None, project: Path | None = None,
    both_lines: bool = False,
) -> list[Annotation]:
    """One annotation per finding or failing test, most important first. A hang is annotated on
    its culprit's line (where the code is stuck), with *both_lines* also on the test's line; a
    failure on the line that failed. Paths are relative to the repository (see repo_path)."""
    out: list[Annotation] = []
    for item in _order(run):
        if isinstance(item, Finding):
            level = "error" if item.severity == "error" else "warning"
            title, message = _finding_title(item), _finding_message(item, root, project)
            print_ = fingerprint.of_finding(item)
            places: list[tuple[str | None, int | None]] = []
            if item.culprit is not None and repo_path(item.culprit.path, root, project):
                places.append((repo_path(item.culprit.path, root, project), item.culprit.line))
            test = run.tests.get(item.test) if item.test else None
            loc_path = item.location.path if item.location else (test.path if test else None)
            loc_line = item.location.line if item.location else (test.line if test else None)
            if not places or both_lines:
                places.append((repo_path(loc_path, root, project), loc_line))
            details = test.longrepr if test is not None else None
        else:
            level, title = "error", _test_title(item)
            lines = (item.longrepr or "").strip().splitlines()
            message = item.message or (lines[-1] if lines else item.outcome)
            print_ = fingerprint.of_failure(item)
            places = [failing_line(item, root, project)
                      or (repo_path(item.path, root, project), item.line)]
            details = item.longrepr
        seen: set[tuple[str | None, int | None]] = set()
        for path, line in places:
            if (path, line) in seen:
                continue
            seen.add((path, line))
            out.append(Annotation(
                level=level,
                title=cut_bytes(one_line(title, TITLE_BYTES), TITLE_BYTES),
                message=cut_bytes(one_line(message, MESSAGE_LIMIT) if "\n" not in message
                                  else _multi_line(message), MESSAGE_BYTES),
                path=path,
                line=line if path else None,
                fingerprint=print_,
                details=cut_middle_bytes(clean(details), DETAILS_BYTES) if details else None,
            ))
    return out


def _multi_line(text: str) -> str:
    lines = [one_line(line, MESSAGE_LIMIT) for line in text.splitlines() if line.strip()]
    return "\n".join(lines)[:MESSAGE_LIMIT]
