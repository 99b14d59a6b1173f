"""The summary's sections for tests run again and tests in quarantine.

Flaky tests (failed, then passed on a retry) and tests that failed every attempt are told with
each attempt: "attempt 1 failed with …, attempt 2 passed". Quarantined tests are listed with
their reason, issue, owner and end date, and what they did in this run. With the tier's flake
history attached (results/history.py), each retried test says how often it flaked before, and a
quarantined test that passed long enough in a row is suggested for release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiergate.report.escape import md_text
from tiergate.results.model import Attempt, RunResult, TestResult

if TYPE_CHECKING:
    from tiergate.results.history import FlakeHistory

_ROWS = 50  # per section: past that, a count
_MESSAGE = 200  # characters of an attempt's message


def flaky_sections(run: RunResult) -> list[str]:
    """The Markdown sections (none when no test was run again or quarantined)."""
    parts = []
    flaky = run.flaky_tests
    if flaky:
        parts.append(_section("🎲 Flaky (failed, then passed on a retry)", flaky, run.history))
    retried = [t for t in run.retried_tests if not t.flaky]
    if retried:
        parts.append(_section("🔁 Failed on every attempt", retried, run.history))
    quarantined = run.quarantined_tests
    if quarantined or any(e.get("expired") for e in run.quarantine):
        parts.append(_quarantine(run, quarantined))
    return parts


def attempts_story(test: TestResult) -> str:
    """``attempt 1 failed with X, attempt 2 passed``: every attempt in order, in plain text."""
    words = [f"attempt {a.number} {_ended(a)}" for a in test.attempts]
    last = test.attempts[-1].number + 1 if test.attempts else 1
    final = "passed" if test.outcome == "passed" else _ended_as(test.outcome, test.message)
    return ", ".join([*words, f"attempt {last} {final}"])


def _ended(attempt: Attempt) -> str:
    return _ended_as(attempt.outcome, attempt.message)


def _ended_as(outcome: str, message: str | None) -> str:
    verb = {"error": "errored", "timeout": "timed out"}.get(outcome, outcome)
    return f"{verb} with {message[:_MESSAGE]}" if message else verb


def _section(heading: str, tests: list[TestResult], history: FlakeHistory | None) -> str:
    # Imported here: most runs retry nothing, and their summary need not load the history.
    from tiergate.results.history import flake_line

    lines = [f"### {heading}", ""]
    for test in tests[:_ROWS]:
        lines.append(f"- `{md_text(test.nodeid, 300)}`: {md_text(flake_line(test, history))} "
                     f"({md_text(attempts_story(test))})")
    if len(tests) > _ROWS:
        lines.append(f"- … and {len(tests) - _ROWS:,} more.")
    return "\n".join(lines)


def _quarantine(run: RunResult, tests: list[TestResult]) -> str:
    from tiergate.results.history import ready_for_release

    lines = ["### 🚧 Quarantine", "",
             "Quarantined tests run and are reported here; their failures do not fail the tier.",
             "", "| test | this run | reason | issue | owner | until |",
             "|---|---|---|---|---|---|"]
    for test in tests[:_ROWS]:
        entry = test.quarantine or {}
        outcome = "flaky" if test.flaky else test.outcome
        lines.append("| " + " | ".join([
            f"`{md_text(test.nodeid, 200)}`", outcome, *_entry_cells(entry)]) + " |")
    if len(tests) > _ROWS:
        lines.append(f"\n… and {len(tests) - _ROWS:,} more.")
    for test in tests[:_ROWS]:
        streak = ready_for_release(test.nodeid, run.history)
        if streak is not None and test.outcome == "passed" and not test.flaky:
            lines.append(f"\n✅ `{md_text(test.nodeid, 200)}` passed on every one of its last "
                         f"{streak} runs: release it (`tiergate quarantine remove`).")
    expired = [e for e in run.quarantine if e.get("expired")]
    for entry in expired[:_ROWS]:
        lines.append(f"\n❌ The quarantine of `{md_text(str(entry.get('test', '?')), 200)}` "
                     f"ended on {md_text(str(entry.get('until', '?')), 20)} "
                     "(`quarantine-expired`).")
    return "\n".join(lines)


def _entry_cells(entry: object) -> list[str]:
    get = entry.get if isinstance(entry, dict) else {}.get
    return [md_text(str(get(key) or ""), 200) for key in ("reason", "issue", "owner", "until")]
