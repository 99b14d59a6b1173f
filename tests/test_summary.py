"""The Markdown summary: reads well at 2 findings and at 2,000, and stays under its budget."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest

from tiergate.protocol.findings import Culprit, Finding, Location
from tiergate.report import fingerprint
from tiergate.report.summary import COMMENT_LIMIT, STEP_SUMMARY_LIMIT, render_summary
from tiergate.report.terminal import render_terminal
from tiergate.results.model import RunResult, TestResult

DUMP = "Process 41 (pytest)\n  Thread MainThread\n    File src/app/db.py, line 88, in connect\n"


def hang() -> Finding:
    return Finding(
        kind="timeout",
        test="tests/test_hang.py::test_db",
        severity="error",
        message="timeout: ran past 5s",
        location=Location("tests/test_hang.py", 7),
        culprit=Culprit("src/app/db.py", 88, "connect", "recv on 127.0.0.1:5432"),
        dump="dumps/test_db.txt",
    )


def leak(i: int) -> Finding:
    return Finding(
        kind="leak-thread" if i % 3 else "leak-fd",
        test=f"tests/test_l.py::test_{i}",
        severity="error",
        message=f"thread worker-{i} still running",
        location=Location("tests/test_l.py", i),
        details={"created": f"pool.py:{i}"},
    )


def run_with(
    findings: list[Finding], failures: int = 1, message: str = "assert 1 == 2"
) -> RunResult:
    run = RunResult(tier="fast", started=100.0, finished=160.0)
    for i in range(20):
        run.tests[f"tests/test_ok.py::test_{i}"] = TestResult(
            f"tests/test_ok.py::test_{i}", "tests/test_ok.py", i, "passed", 0.1 * i
        )
    for i in range(failures):
        nodeid = f"tests/test_bad.py::test_{i}"
        run.tests[nodeid] = TestResult(
            nodeid,
            "tests/test_bad.py",
            10,
            "failed",
            1.0,
            "call",
            message,
            "Traceback\n" + message * 5,
        )
    run.tests["tests/test_hang.py::test_db"] = TestResult(
        "tests/test_hang.py::test_db",
        "tests/test_hang.py",
        7,
        "timeout",
        5.0,
        "call",
        "timeout: ran past 5s",
    )
    run.findings.extend(findings)
    return run


def loader(path: str) -> str | None:
    return DUMP if path == "dumps/test_db.txt" else None


def test_two_findings_read_well() -> None:
    text = render_summary(run_with([hang(), leak(1)]), dump_loader=loader)
    lines = text.splitlines()
    assert lines[0] == "### ❌ tiergate · tier fast: failed"
    assert lines[1].startswith("**Failed: 1 test timed out, 1 test failed and 1 leak found**")
    assert "stuck in <code>connect</code> at <code>src/app/db.py:88</code>: recv on" in text
    assert "<details><summary>Process-tree dump" in text and "line 88, in connect" in text
    assert ("- **leak-thread** <code>tests/test\\_l.py::test\\_1</code> at "
            "<code>tests/test\\_l.py:1</code>: thread worker-1 still running") in text
    assert "#### ❌ Failures (1)" in text and "#### 🐢 Slowest tests" in text
    assert "✂️" not in text  # nothing cut


def test_two_thousand_findings_stay_under_the_comment_budget_and_readable() -> None:
    run = run_with([hang()] + [leak(i) for i in range(2000)], failures=300, message="x" * 3000)
    text = render_summary(
        run,
        dump_loader=loader,
        budget=COMMENT_LIMIT,
        details_url="https://github.com/o/r/actions/runs/1",
    )
    assert len(text.encode()) <= COMMENT_LIMIT
    assert "#### 💧 Leaks (2,000)" in text
    assert re.search(r"By kind: 1,333 leak-thread, 667 leak-fd", text)
    assert "more failures" in text
    assert "[the full job summary](https://github.com/o/r/actions/runs/1)" in text
    assert len(text.splitlines()) < 600  # counted and collapsed, not flooded
    assert text.count("<details>") == text.count("</details>")
    full = render_summary(run, dump_loader=loader)
    assert len(full.encode()) <= STEP_SUMMARY_LIMIT
    assert "stuck in <code>connect</code>" in text  # the most important line survives


def test_a_tiny_budget_still_says_what_failed() -> None:
    run = run_with([hang()] + [leak(i) for i in range(50)])
    text = render_summary(run, budget=1500)
    assert len(text.encode()) <= 1500
    assert "**Failed:" in text and "✂️" in text


def test_memory_chart_from_samples() -> None:
    run = run_with([])
    run.samples = [
        {"event": "sample", "t": 100.0 + i, "rss": (50 + i * 3) * 2**20} for i in range(200)
    ]
    text = render_summary(run)
    chart = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert "\nxychart-beta\n" in chart and "plotColorPalette" in chart
    values = re.search(r"line \[(.*)\]", chart)
    assert values and len(values.group(1).split(",")) <= 40
    assert "peak 647 MiB" in chart


def test_passing_run_says_so() -> None:
    run = RunResult(tier="fast")
    run.tests["t::a"] = TestResult("t::a", outcome="passed", duration=0.2)
    text = render_summary(run)
    assert text.startswith("### ✅ tiergate · tier fast: passed")
    assert "**All 1 test passed**" in text


def test_no_tests_is_never_a_green_heading() -> None:
    run = RunResult(tier="fast")
    text = render_summary(run)
    assert text.startswith("### ❌ tiergate · tier fast: no tests ran\n")
    assert "**No tests ran**" in text and "which is a failure" in text
    assert "NO TESTS" in render_terminal(run).splitlines()[0]
    assert "fails the run" in render_terminal(run)
    run.settings["allow-no-tests"] = True
    text = render_summary(run)
    assert text.startswith("### ⚠️ tiergate · tier fast: no tests ran\n")
    assert "allows that (allow-no-tests)" in text
    assert "allowed for this tier" in render_terminal(run)


def test_a_cancelled_run_has_its_own_heading() -> None:
    run = run_with([], failures=0)
    run.cancelled = "SIGTERM"
    text = render_summary(run)
    assert text.startswith("### 🛑 tiergate · tier fast: cancelled (SIGTERM)\n")
    assert "**Cancelled by SIGTERM**: 1 test timed out" in text
    head = render_terminal(run).splitlines()[0]
    assert "CANCELLED" in head and "PASSED" not in head


def test_known_findings_are_marked_and_listed_after_new_ones() -> None:
    old, new = leak(1), leak(2)
    text = render_summary(run_with([old, new]), known={fingerprint.of_finding(old)})
    assert "1 new" not in text.splitlines()[0]
    assert text.index("test\\_2</code> **new**") < text.index("test\\_1</code> *(known)*")
    # the same units as the counts line: 2 failing tests + 2 findings = 2 + 1 new + 1 known
    assert "1 ❌ failed · 1 ⏱️ timed out · 🔎 2 findings" in text
    assert ("**Changes vs the base commit:** 2 new failures · 1 new finding · 0 fixed · "
            "1 still failing") in text


def test_hostile_text_is_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", "tok-123456789")
    message = "<script>alert(1)</script> @everyone\n::error::pwned tok-123456789 `x` | y"
    text = render_summary(run_with([hang()], message=message), dump_loader=loader)
    assert "<script>" not in text and "@everyone" not in text and "tok-123456789" not in text
    assert not any(line.lstrip().startswith("::") for line in text.splitlines())
    terminal = render_terminal(run_with([hang()], message=message))
    assert "tok-123456789" not in terminal
    assert not any(line.lstrip().startswith("::") for line in terminal.splitlines())


def test_terminal_summary() -> None:
    text = render_terminal(run_with([hang(), leak(1)]), width=100)
    lines = text.splitlines()
    assert lines[0].startswith("=") and "FAILED" in lines[0] and len(lines[0]) == 100
    assert "  FAILED tests/test_bad.py::test_0: assert 1 == 2" in lines
    assert any("stuck at src/app/db.py:88 in connect (recv on 127.0.0.1:5432)" in x for x in lines)
    assert "slowest:" in lines


def test_a_timeout_says_whether_it_was_stuck_or_moving() -> None:
    from tiergate.protocol.findings import Culprit, Finding
    from tiergate.report.summary import slow_or_stuck
    from tiergate.results.model import RunResult

    stuck_at = Culprit(path="app/db.py", line=63, function="read", reason="recv")
    timeout = Finding(
        kind="timeout", test="t::a", severity="error", message="timeout", culprit=stuck_at
    )
    same = {
        "nodeid": "t::a",
        "elapsed": 1.5,
        "culprit": {"path": "app/db.py", "line": 63, "function": "read"},
    }
    moved = {
        "nodeid": "t::a",
        "elapsed": 1.5,
        "culprit": {"path": "app/load.py", "line": 9, "function": "parse"},
    }
    assert "stuck in the same frame since 1.5s" in (
        slow_or_stuck(RunResult(slow_notes=[same]), timeout) or ""
    )
    assert "still moving" in (slow_or_stuck(RunResult(slow_notes=[moved]), timeout) or "")
    assert slow_or_stuck(RunResult(), timeout) is None


def test_heaviest_tests_and_reproductions_are_listed() -> None:
    from tiergate.report.summary import render_summary
    from tiergate.results.model import RunResult, TestResult

    run = RunResult(tier="nightly")
    run.tests["t::hog"] = TestResult("t::hog", outcome="passed", duration=2.0, peak_rss=900 * 2**20)
    run.tests["t::bug"] = TestResult("t::bug", outcome="xfailed", reproduces="BUG-601")
    run.tests["t::fixed"] = TestResult("t::fixed", outcome="passed", reproduces="BUG-7")
    text = render_summary(run)
    assert "Heaviest tests" in text and "900 MiB" in text
    assert "BUG-601" in text and "still reproduces" in text
    assert "BUG-7" in text and "**passed**" in text


def leak_check(nodeid: str, repeats: int, seconds: float, result: str = "leak",
               **kinds: str) -> dict[str, object]:
    """A ``leak-check`` event's fields, as the leak watch records one confirmation."""
    return {"event": "leak-check", "t": 150.0, "nodeid": nodeid, "repeats": repeats,
            "seconds": seconds, "result": result, "kinds": kinds or {"leak-thread": "leak"}}


def test_the_tests_run_again_to_confirm_leaks_are_one_line_with_their_cost() -> None:
    run = run_with([leak(1)])
    run.leak_checks += [
        leak_check("tests/test_l.py::test_1", 2, 0.9),
        leak_check("tests/test_pool.py::test_cache", 4, 1.3, "no leak", **{"leak-fd": "first use"}),
        leak_check("tests/test_mem.py::test_grow", 2, 0.2, "no leak", **{"leak-memory": "no leak"}),
        leak_check("tests/test_odd.py::test_fails_on_repeat", 1, 0.1, "inconclusive"),
        leak_check("tests/test_srv.py::test_reset", 1, 0.05, "no leak",
                   **{"leak-socket": "released"}),
    ]
    (line,) = [x for x in render_summary(run).splitlines() if "Leak checks" in x]
    assert "5 tests run again to confirm leaks (10 repeats, 2.6s of the run's 1m 00s)" in line
    # the longest first, each with its repeats, its time and what it came to
    assert line.index("test\\_cache") < line.index("test\\_1<") < line.index("test\\_grow")
    assert "test\\_cache</code> (4 repeats, 1.3s, first use, not a leak)" in line
    assert "test\\_1</code> (2 repeats, 0.9s, leak confirmed)" in line
    assert "test\\_grow</code> (2 repeats, 0.2s, no leak)" in line
    assert "test\\_fails\\_on\\_repeat</code> (1 repeat, 0.1s, inconclusive)" in line
    assert "test\\_reset</code> (1 repeat, 0.1s, released, not a leak)" in line
    terminal = render_terminal(run).splitlines()
    at = terminal.index("leak checks: 5 tests run again (10 repeats, 2.55s of the run's 60.0s):")
    assert terminal[at + 1].split() == ["1.30s", "4", "repeats", "first", "use,", "not", "a",
                                        "leak", "tests/test_pool.py::test_cache"]


def test_a_run_without_leak_checks_says_nothing_of_them() -> None:
    assert "Leak checks" not in render_summary(run_with([leak(1)]))
    assert "leak checks" not in render_terminal(run_with([leak(1)]))


def test_fifty_leak_checks_name_the_longest_ten_and_count_the_rest() -> None:
    run = run_with([])
    run.leak_checks += [leak_check(f"tests/test_l.py::test_{i}", 1, 0.01 * i) for i in range(50)]
    (line,) = [x for x in render_summary(run).splitlines() if "Leak checks" in x]
    named = re.findall(r"test\\_(\d+)</code>", line)
    assert named == [str(i) for i in range(49, 39, -1)]
    assert line.endswith("and 40 more (7.8s).")
    terminal = render_terminal(run)
    assert "leak checks: 50 tests run again (50 repeats, 12.25s of the run's 60.0s):" in terminal
    assert "  ... and 45 more (9.90s)" in terminal.splitlines()
    assert len(render_summary(run, budget=COMMENT_LIMIT)) < COMMENT_LIMIT


def test_a_leak_check_record_is_untrusted_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", "tok-123456789")
    run = run_with([])
    hostile = "t.py::test_x[<script>@everyone tok-123456789 | `x`]\n::error::pwned"
    run.leak_checks += [
        leak_check(hostile, 1, 0.5, "<b>pwned</b>"),
        {"event": "leak-check", "nodeid": "t.py::test_y", "repeats": "2", "seconds": float("nan"),
         "result": ["leak"]},  # fields of the wrong type count as nothing
        {"event": "leak-check", "repeats": 3},  # no test: no check of one
    ]
    (line,) = [x for x in render_summary(run).splitlines() if "Leak checks" in x]
    assert "<script>" not in line and "@everyone" not in line and "tok-123456789" not in line
    assert "<b>" not in line and "| " not in line.replace("\\| ", "")
    assert "(1 repeat, 0.5s, &lt;b&gt;pwned&lt;/b&gt;)" in line  # a word this reader does not know
    assert "2 tests run again to confirm leaks (1 repeat, 0.5s" in line
    assert "test\\_y</code> (0 repeats, 0.0s, inconclusive)" in line
    terminal = render_terminal(run)
    assert "tok-123456789" not in terminal
    assert not any(x.lstrip().startswith("::") for x in terminal.splitlines())


def outside_hrefs(markdown: str) -> str:
    """What GitHub's autolinker reads: neither attributes nor <pre> blocks (raw HTML)."""
    return re.sub(r'<a href="[^"]*">|<pre>.*?</pre>', "", markdown, flags=re.DOTALL)


def test_a_dump_label_in_a_toggle_shows_no_markdown_escapes() -> None:
    # <details><summary> is a raw HTML block: GitHub reads no Markdown there, so "\_" would show
    timeout = dataclasses.replace(hang(), dump="dumps/tests_test_db_[1]_<x>.txt")
    text = render_summary(run_with([timeout]), dump_loader=lambda path: DUMP)
    (label,) = re.findall(r"<summary>Process-tree dump \((.*?), \d+ characters\)</summary>", text)
    assert label == "dumps/tests_test_db_[1]_&lt;x&gt;.txt"


def test_a_url_in_a_message_or_an_id_reaches_the_reader_as_written() -> None:
    # GitHub's autolinker reads the raw source, so an escaped URL left to it shows "\_" and
    # "&amp;amp;" and links to "%5C"; the summary gives it none to read, and links URLs itself.
    url = "https://ci.example.test/list_items?page=2&per_page=50"
    run = run_with([], message=f"GET {url} answered 500, see www.example.test/a_b.")
    nodeid = "tests/test_api.py::test_get[https://ci.example.test/a_b]"
    run.tests[nodeid] = TestResult(nodeid, "tests/test_api.py", 3, "failed", 1.0, "call", "x")
    text = render_summary(run)
    assert f'<a href="{html.escape(url)}">' in text
    assert '<a href="http://www.example.test/a_b">' in text  # the "." ends the sentence
    shown = outside_hrefs(text)
    assert "://" not in shown and "www." not in shown  # nothing for the autolinker to start on
    assert "https&#58;//ci.example.test/list\\_items?page=2&amp;per\\_page=50" in shown


def test_a_finding_of_no_test_and_no_place_has_no_stray_separator() -> None:
    """A budget spent while collecting: no test was running, so the line goes straight from the
    kind to the message."""
    run = RunResult(tier="fast")
    run.findings = [Finding(kind="job-timeout", test=None, severity="error",
                            message="timeout: the tier's budget of 3s ran out")]
    lines = render_terminal(run).splitlines()
    assert "  ERROR   job-timeout: timeout: the tier's budget of 3s ran out" in lines, lines


def test_a_finding_states_its_place_once_and_other_places_short() -> None:
    # The probes write where a leaked thing came from for a terminal, with the runner's absolute
    # path; the item shows that place as its link already.
    run = RunResult(tier="fast")
    run.findings += [
        Finding("leak-thread", "tests/test_a.py::test_a", "error",
                "test left threads running: thread 'a', started at "
                "/home/runner/work/app/app/src/app/pool.py:9 in start; thread 'b', started at "
                "/home/runner/work/app/app/src/app/other.py:3 in run (left again)",
                Location("tests/test_a.py", 2), Culprit("src/app/pool.py", 9, "start", None)),
        Finding("resource-warning", "tests/test_b.py::test_b", "warning",
                "ResourceWarning: unclosed file, created at src/app/files.py:5 (open)",
                Location("tests/test_b.py", 4), Culprit("src/app/files.py", 5, "open", None)),
    ]
    text = render_summary(run)
    thread = next(line for line in text.splitlines() if "leak-thread" in line)
    assert thread.count("pool.py:9") == 1 and "/home/runner" not in thread, thread
    assert "other.py:3 in run \\(left again\\)" in thread, thread
    warning = next(line for line in text.splitlines() if "resource-warning" in line)
    assert warning.count("files.py:5") == 1 and warning.endswith("unclosed file"), warning
