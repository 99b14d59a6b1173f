"""The short end-of-run summary the supervisor prints: counts, the slowest tests, and each finding
on one line (a hang with the line it is stuck on). Plain text; every untrusted part is kept on one
line so that a CI log cannot read it as a workflow command."""

from __future__ import annotations

from pathlib import Path

from tiergate.protocol.findings import TIMEOUT_KINDS, Finding
from tiergate.report.escape import terminal_text
from tiergate.report.leakchecks import leak_checks
from tiergate.report.links import shown_path, without_place
from tiergate.results.model import RunResult

MAX_FINDINGS = 30
MAX_FAILURES = 20
MAX_LEAK_CHECKS = 5


def render_terminal(run: RunResult, *, width: int = 100, slowest: int = 5,
                    root: Path | None = None) -> str:
    """Paths in it are relative to *root*, the project (default: GITHUB_WORKSPACE, else the cwd,
    as :func:`tiergate.report.annotations.repo_path` reads it)."""
    width = max(40, width)
    c = run.counts()
    order = ("passed", "failed", "timeout", "error", "skipped", "xfailed", "xpassed", "not_run")
    counts = ", ".join(f"{c[k]} {k.replace('_', ' ')}" for k in order if c.get(k))
    tier = f"tier {run.tier}" if run.tier else "tiergate"
    took = f"{run.duration:.1f}s"
    if run.outcome == "no-tests":  # a pass only where the tier allows it (allow-no-tests)
        head = f" {tier}: NO TESTS in {took} "
    else:
        head = f" {tier}: {run.outcome.upper()} ({counts or 'no tests'}) in {took} "
    lines = [terminal_text(head.center(width, "="))]
    lines.extend(terminal_text(f"input: {note}", 4 * width)
                 for note in run.input_notes[:10])
    if run.outcome == "no-tests":
        lines.append("no test was selected or collected: allowed for this tier (allow-no-tests)"
                     if run.ok else "no test was selected or collected, which fails the run: "
                     "check the tier's markers and paths, or set allow-no-tests")
    if run.budget_expired:
        lines.append("the tier's time budget ran out")
    if run.cancelled:
        lines.append(terminal_text(f"cancelled by {run.cancelled}", width))
    if run.stopped_early:  # max-fail: why the rest is "not run"
        lines.append(terminal_text(run.stopped_early, width))

    failures = run.failing_tests
    explained = {f.test for f in run.findings if f.kind in TIMEOUT_KINDS}
    failures = [t for t in failures if t.nodeid not in explained]
    if failures:
        lines.append("failures:")
        for test in failures[:MAX_FAILURES]:
            text = f"{test.outcome.upper()} {test.nodeid}: {test.message or ''}".rstrip(": ")
            lines.append("  " + terminal_text(text, width - 2))
        if len(failures) > MAX_FAILURES:
            lines.append(f"  ... and {len(failures) - MAX_FAILURES} more failures")

    findings = run.sorted_findings()
    if findings:
        lines.append(f"findings ({len(findings)}):")
        for finding in findings[:MAX_FINDINGS]:
            lines.extend("  " + terminal_text(text, width - 2)
                         for text in _finding_lines(finding, root))
        if len(findings) > MAX_FINDINGS:
            lines.append(f"  ... and {len(findings) - MAX_FINDINGS} more findings "
                         "(see summary.md / findings.json)")

    lines.extend(_leak_check_lines(run, width))

    slow = [t for t in run.slowest(slowest) if t.duration > 0]
    if slow:
        lines.append("slowest:")
        lines.extend("  " + terminal_text(f"{t.duration:8.2f}s  {t.nodeid}", width - 2)
                     for t in slow)
    return "\n".join(lines) + "\n"


def _finding_lines(f: Finding, root: Path | None) -> list[str]:
    where = f.test or (f"{shown_path(f.location.path, root, root)}:{f.location.line}"
                       if f.location else "")
    c = f.culprit
    # The probes write absolute paths; the culprit's own place is the next line's.
    message = without_place(f.message, c.path if c else None, c.line if c else None, root, root)
    lines = [f"{f.severity.upper():7} {f.kind}{' ' + where if where else ''}: {message}"]
    if c is not None:
        reason = f" ({c.reason})" if c.reason else ""
        lines.append(f"    {f.culprit_label} {shown_path(c.path, root, root)}:{c.line or '?'} "
                     f"in {c.function}{reason}")
    if f.dump:
        lines.append(f"    dump: {f.dump}")
    return lines


def _leak_check_lines(run: RunResult, width: int) -> list[str]:
    """The tests run again to confirm a leak, the longest first: the run's time went there too."""
    checks = leak_checks(run)
    if checks is None:
        return []
    lines = [f"leak checks: {_n(len(checks.tests), 'test')} run again "
             f"({_n(checks.repeats, 'repeat')}, {checks.seconds:.2f}s of the run's "
             f"{run.duration:.1f}s):"]
    for t in checks.tests[:MAX_LEAK_CHECKS]:
        # Each column escaped on its own: one escape of the whole line would strip the padding.
        verdict = terminal_text(t.verdict, 40)
        columns = f"  {t.seconds:6.2f}s  {_n(t.repeats, 'repeat'):10}  {verdict:21}  "
        lines.append(columns + terminal_text(t.nodeid, max(20, width - len(columns))))
    rest = checks.tests[MAX_LEAK_CHECKS:]
    if rest:
        lines.append(f"  ... and {len(rest)} more ({sum(t.seconds for t in rest):.2f}s)")
    return lines


def _n(count: int, one: str) -> str:
    return f"{count} {one if count == 1 else one + 's'}"
