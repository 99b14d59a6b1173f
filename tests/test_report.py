"""`tiergate report`: results dirs and JUnit in; summary.md, findings.json, and on GitHub Actions
the job summary, step outputs and annotations out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from resultsdirs import (
    HOSTILE,
    SECRET,
    finding,
    leak,
    parse_outputs,
    timeout_finding,
    write_results_dir,
)

from tiergate import cli
from tiergate.protocol.events import EventWriter


def test_leaks_and_a_failure_give_summary_outputs_and_annotations(
        tmp_path: Path, actions_env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    results = write_results_dir(
        tmp_path / "res",
        failures=[("tests/test_bad.py::test_x", f"assert 1 == 2 {HOSTILE} {SECRET}")],
        findings=[leak(i) for i in range(30)] + [timeout_finding()],
        dumps={"dumps/test_db.txt": "Thread 0x1 (most recent call first):\n  File db.py"},
    )
    code = cli.main(["report", "--results-dir", str(results)])
    assert code == 1
    out = capsys.readouterr().out

    summary = (results / "summary.md").read_text()
    assert "Leaks (30)" in summary and "tests/test\\_bad.py::test\\_x" in summary
    assert "recv on 127.0.0.1:5432" in summary and "Thread 0x1" in summary
    assert actions_env["summary"].read_text() == summary
    document = json.loads((results / "findings.json").read_text())
    assert document["outcome"] == "failed" and len(document["findings"]) == 31

    outputs = parse_outputs(actions_env["output"].read_text())
    assert outputs["outcome"] == "failed"
    assert outputs["failed"] == "1" and outputs["passed"] == "3"
    assert outputs["leaks"] == "30" and outputs["timeouts"] == "1"
    assert outputs["summary-path"] == str(results / "summary.md")
    assert outputs["results-dir"] == str(results)

    commands = [line for line in out.splitlines() if line.startswith("::")]
    errors = [c for c in commands if c.startswith("::error")]
    warnings = [c for c in commands if c.startswith("::warning")]
    notices = [c for c in commands if c.startswith("::notice")]
    assert len(errors) == 10 and len(warnings) == 10 and len(notices) == 1
    # most important first: the hang, on its culprit's line, then the failure
    assert errors[0].startswith("::error title=tiergate timeout")
    assert "file=src/app/db.py" in errors[0]
    assert "line=88" in errors[0]
    assert "file=tests/test_bad.py,line=10" in errors[1]
    assert re.search(r"7 more errors and 5 more warnings", notices[0])
    # the hostile message: one command per line, nothing injected, secret gone
    assert not any(line.lstrip().startswith("::error::pwned") for line in out.splitlines())
    assert SECRET not in out and SECRET not in summary
    assert "##[error]" not in out


def test_a_passing_run_exits_0(tmp_path: Path, actions_env: dict[str, Path]) -> None:
    results = write_results_dir(tmp_path / "res", passed=5)
    assert cli.main(["report", "--results-dir", str(results)]) == 0
    assert parse_outputs(actions_env["output"].read_text())["outcome"] == "passed"
    assert "All 5 tests passed" in (results / "summary.md").read_text()


def test_shards_merge_into_one_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    one = write_results_dir(tmp_path / "s1", passed=2)
    two = write_results_dir(tmp_path / "s2", passed=0,
                            failures=[("tests/test_bad.py::test_y", "nope")])
    out = tmp_path / "merged"
    assert cli.main(["report", "--results-dir", str(one), "--results-dir", str(two),
                     "--output-dir", str(out)]) == 1
    summary = (out / "summary.md").read_text()
    assert "3 tests" in summary and "test\\_y" in summary
    assert "1 failed" in capsys.readouterr().out


def junit_text(cases: int, failures: int = 0, timeouts: int = 0) -> str:
    rows = []
    for i in range(cases):
        body = ""
        if i < failures:
            body = f'<failure message="assert {i}">trace {i}</failure>'
        elif i < failures + timeouts:
            body = ('<failure message="timeout: 5s">stuck</failure>'
                    "<system-err>Thread 0x1 dump</system-err>")
        rows.append(f'<testcase classname="pkg.mod{i % 50}" name="test_{i}" time="0.001"'
                    f' file="pkg/mod{i % 50}.py" line="{i}">{body}</testcase>')
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="other" '
            f'tests="{cases}">{"".join(rows)}</testsuite></testsuites>')


def test_junit_from_another_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    path = tmp_path / "junit.xml"
    path.write_text(junit_text(2000, failures=3, timeouts=1))
    assert cli.main(["report", "--junit", str(path)]) == 1
    summary = (tmp_path / "summary.md").read_text()
    assert "1 test timed out and 3 tests failed" in summary
    assert "Thread 0x1 dump" in summary


def test_truncated_junit_is_exit_2_with_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(junit_text(50)[:1234])
    assert cli.main(["report", "--junit", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: not a readable JUnit file" in err


def test_not_junit_at_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junit.xml"
    path.write_text("<html><body>502 Bad Gateway</body></html>")
    assert cli.main(["report", "--junit", str(path)]) == 2
    assert "root element is <html>" in capsys.readouterr().err


def test_missing_results_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "--results-dir", str(tmp_path / "nope")]) == 2
    assert "no such results directory" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"\n\n\n", bytes(range(256)) * 8 + b"\n"],
                         ids=["empty", "newlines", "random-bytes"])
def test_an_events_file_without_events_is_exit_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    results = tmp_path / "res"
    results.mkdir()
    (results / "events.jsonl").write_bytes(content)
    assert cli.main(["report", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{results / 'events.jsonl'}: holds no tiergate events: the run that wrote it died " \
        "before it started, or the file was emptied or replaced" in err
    assert not (results / "summary.md").exists() and not (results / "findings.json").exists()


def test_an_events_file_without_its_run_start_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = write_results_dir(tmp_path / "res", passed=2)
    events = results / "events.jsonl"
    events.write_text("".join(events.read_text().splitlines(keepends=True)[1:]))
    assert cli.main(["report", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{events}: holds " in err and "no run-start event" in err


def test_a_run_without_tests_is_no_pass(tmp_path: Path, actions_env: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # What a marker typo gives: the tier selects nothing (`tiergate run` exits 5).
    results = write_results_dir(tmp_path / "res", passed=0)
    assert cli.main(["report", "--results-dir", str(results)]) == 1
    outputs = parse_outputs(actions_env["output"].read_text())
    assert outputs["outcome"] == "no-tests" and outputs["ok"] == "false"
    summary = (results / "summary.md").read_text()
    assert summary.startswith("### ❌ tiergate · tier fast: no tests ran\n")
    assert "✅" not in summary.splitlines()[0]
    assert json.loads((results / "findings.json").read_text())["outcome"] == "no-tests"
    assert "NO TESTS" in capsys.readouterr().out


def test_a_run_without_tests_passes_where_allowed(tmp_path: Path,
                                                  actions_env: dict[str, Path]) -> None:
    results = write_results_dir(tmp_path / "res", passed=0)
    assert cli.main(["report", "--results-dir", str(results), "--allow-no-tests"]) == 0
    outputs = parse_outputs(actions_env["output"].read_text())
    assert outputs["outcome"] == "no-tests" and outputs["ok"] == "true"
    assert (results / "summary.md").read_text().startswith(
        "### ⚠️ tiergate · tier fast: no tests ran\n")
    # The tier's own allow-no-tests (recorded in run-start) does the same without the flag.
    allowed = write_results_dir(tmp_path / "allowed", passed=0,
                                settings={"allow-no-tests": True})
    assert cli.main(["report", "--results-dir", str(allowed)]) == 0
    # The flag allows no tests, nothing else.
    failing = write_results_dir(tmp_path / "failing", passed=0,
                                failures=[("tests/test_bad.py::test_x", "boom")])
    assert cli.main(["report", "--results-dir", str(failing), "--allow-no-tests"]) == 1


def test_a_cancelled_run_says_so(tmp_path: Path, actions_env: dict[str, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "res"
    results.mkdir()
    w = EventWriter(results / "events.jsonl")
    w.emit("run-start", tier="fast", settings={})
    w.emit("collected", tests=["t.py::test_ok", "t.py::test_slow"])
    w.emit("test-start", nodeid="t.py::test_ok", path="t.py", line=1)
    w.emit("test-finish", nodeid="t.py::test_ok", path="t.py", line=1, outcome="passed",
           duration=0.1)
    w.emit("test-start", nodeid="t.py::test_slow", path="t.py", line=5)
    w.emit("cancelled", signal="SIGTERM", nodeid="t.py::test_slow")
    w.emit("run-finish", exit_code=143)
    w.close()
    assert cli.main(["report", "--results-dir", str(results), "--allow-no-tests"]) == 1
    assert parse_outputs(actions_env["output"].read_text())["outcome"] == "cancelled"
    summary = (results / "summary.md").read_text()
    assert summary.startswith("### 🛑 tiergate · tier fast: cancelled (SIGTERM)\n")
    assert "**Cancelled by SIGTERM**: 1 test failed" in summary
    assert "CANCELLED" in capsys.readouterr().out


def test_our_junit_carries_hostile_text_to_any_reader(tmp_path: Path) -> None:
    """junit.xml is written as text: markup, quotes, newlines, control characters and lone
    surrogates in a message or an output must still give a document every reader parses."""
    import xml.etree.ElementTree as ET

    from junitparser import JUnitXml

    from tiergate.results.junit_in import read_junit
    from tiergate.results.junit_out import write_junit
    from tiergate.results.model import RunResult, TestResult

    nasty = 'a <b> & "c"\nline two\x00\x1b[31m\udcff end'
    run = RunResult(tier="fast")
    run.tests["t.py::test_ok"] = TestResult("t.py::test_ok", path="t.py", line=3,
                                            outcome="passed", duration=0.25, stdout=nasty)
    run.tests["t.py::TestX::test_bad"] = TestResult(
        "t.py::TestX::test_bad", path="t.py", line=9, outcome="failed", duration=1.0,
        message=nasty, longrepr=nasty, stderr=nasty)
    run.tests["t.py::test_hang"] = TestResult("t.py::test_hang", outcome="timeout",
                                              message="ran past its 1s limit")
    run.tests["t.py::test_skip"] = TestResult("t.py::test_skip", outcome="skipped",
                                              message="not today")
    for name in ('test_id[<&"\x1b>\t]', "test_id[a\tb\x1b]", "test_id[café\udcff]",
                 "test_id[naïve]"):
        run.tests[f"t.py::{name}"] = TestResult(f"t.py::{name}", path="t.py", line=12,
                                                outcome="passed", duration=0.5)
    run.not_run.append("t.py::test_never")
    path = write_junit(run, tmp_path / "junit.xml")

    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("9", "2", "2")
    # parameter ids: markup, quote, tab and letters kept, a control character or a lone
    # surrogate written as \xNN
    assert [c.get("name") for c in suite if str(c.get("name")).startswith("test_id")] == [
        'test_id[<&"\\x1B>\t]', "test_id[a\tb\\x1B]", "test_id[café\\xDCFF]",
        "test_id[naïve]"]
    bad = suite.find("testcase[@name='test_bad']")
    assert bad is not None and bad.get("classname") == "t.TestX"
    failure = bad.find("failure")
    assert failure is not None
    assert failure.get("message") == 'a <b> & "c"\nline two\\x00\\x1B[31m\\xDCFF end'
    assert failure.text == failure.get("message")
    hang = suite.find("testcase[@name='test_hang']/failure")
    assert hang is not None and hang.get("type") == "timeout"
    assert hang.get("message") == "timeout: ran past its 1s limit"
    assert sum(1 for _ in JUnitXml.fromfile(str(path))) == 1
    again = read_junit(path)
    assert {t.outcome for t in again.tests.values()} >= {"passed", "failed", "timeout", "skipped"}


def test_a_test_finish_event_fills_every_field_of_its_result() -> None:
    """The builder passes a test's fields by position (it runs once per test): a field added or
    moved in TestResult must be read from the event under its own name."""
    import dataclasses

    from tiergate.results.model import TestResult, build

    values: dict[str, Any] = {}
    from_other_events = {"attempts": (), "quarantine": None}  # test-attempt, quarantine
    for number, field in enumerate(dataclasses.fields(TestResult)):
        if field.name not in from_other_events:
            values[field.name] = (1.5 + number if field.name == "duration"
                                  else f"{field.name}-value")
    run = build([{"event": "test-finish", "t": 1.0, **values}])
    assert dataclasses.asdict(run.tests[values["nodeid"]]) == {**values, **from_other_events}


def test_a_quiet_pass_handed_over_is_the_test_finish_it_was_written_as() -> None:
    """A plain run gives its builder each quiet pass as values, not as the record it writes:
    the model must be the one that reading the line back gives, with a test in flight (a start
    read back from the log) and after a test whose record is carried in full."""
    from tiergate.results.model import Builder

    def passed(nodeid: str, t: float) -> dict[str, Any]:
        return {"event": "test-finish", "t": t, "pid": 7, "nodeid": nodeid, "path": "t.py",
                "line": 3, "outcome": "passed", "duration": 0.25, "timeout": 60.0,
                "peak_rss": 1024}

    failed = {**passed("t.py::test_b", 5.0), "outcome": "failed", "message": "boom"}
    start = {"event": "test-start", "t": 1.0, "pid": 7, "nodeid": "t.py::test_c", "path": "t.py",
             "line": 9, "timeout": 60.0}
    fed, handed = Builder(), Builder()
    for nodeid, t, before in (("t.py::test_c", 2.0, start), ("t.py::test_a", 4.0, None),
                              ("t.py::test_x", 6.0, failed)):
        if before is not None:
            fed.feed(before)
            handed.feed(before)
        fed.feed(passed(nodeid, t))
        handed.quiet_pass(t, 7, nodeid, "t.py", 3, 0.25, 1024)
    assert handed.result() == fed.result()


def test_junit_class_names_per_module_and_class(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from tiergate.results.junit_out import write_junit
    from tiergate.results.model import RunResult, TestResult

    run = RunResult(tier="fast")
    for nodeid in ["a/test_one.py::test_x", "a/test_one.py::TestK::test_x", "b/test_two.py::test_x",
                   "test_three.py", "test_four.py", "a/test_one.py::test_y[p::q]"]:
        run.tests[nodeid] = TestResult(nodeid, path=nodeid.split("::")[0], line=2)
    root = ET.parse(write_junit(run, tmp_path / "junit.xml")).getroot()
    assert [(c.get("classname"), c.get("name"), c.get("file")) for c in root.iter("testcase")] == [
        ("a.test_one", "test_x", "a/test_one.py"),
        ("a.test_one.TestK", "test_x", "a/test_one.py"),
        ("b.test_two", "test_x", "b/test_two.py"),
        ("", "test_three", "test_three.py"),  # a module's own entry, as pytest's JUnit has it
        ("", "test_four", "test_four.py"),
        ("a.test_one", "test_y[p::q]", "a/test_one.py"),  # a parameter id is kept whole
    ]


IDS = ["::1", "a/b", "x.y", "[z]", "p::q/r.s[t]", "fe80::1%eth0"]


def test_junit_names_with_odd_parameter_ids_round_trip(tmp_path: Path) -> None:
    """Node ids whose parameter id holds ``::``, ``/``, ``.`` or ``[``: named as pytest's own
    JUnit names them, and read back (``tiergate report --junit``) as the same node ids."""
    import xml.etree.ElementTree as ET

    from tiergate.results.junit_in import read_junit
    from tiergate.results.junit_out import write_junit
    from tiergate.results.model import RunResult, TestResult

    run = RunResult(tier="fast")
    nodeids = [f"tests/sub/test_p.py::test_x[{i}]" for i in IDS]
    nodeids += [f"tests/sub/test_p.py::TestK::test_y[{i}]" for i in IDS]
    nodeids += ["tests/sub/test_p.py::test_plain", "tests/test_skipped_module.py"]
    for nodeid in nodeids:
        run.tests[nodeid] = TestResult(nodeid, path=nodeid.partition("::")[0], line=2)
    path = write_junit(run, tmp_path / "junit.xml")
    cases = [(c.get("classname"), c.get("name")) for c in ET.parse(path).getroot().iter("testcase")]
    assert cases == [("tests.sub.test_p", f"test_x[{i}]") for i in IDS] + [
        ("tests.sub.test_p.TestK", f"test_y[{i}]") for i in IDS] + [
        ("tests.sub.test_p", "test_plain"), ("", "tests.test_skipped_module")]
    assert list(read_junit(path).tests) == nodeids


@pytest.mark.parametrize("time", ["NaN", "nan", "inf", "-inf", "Infinity", "abc", "-3", "1e300",
                                  ""])
def test_junit_time_that_is_no_duration_counts_as_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, time: str
) -> None:
    from tiergate.results.junit_in import read_junit

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    path = tmp_path / "junit.xml"
    path.write_text('<testsuites><testsuite name="s">'
                    f'<testcase classname="m" name="test_odd" time="{time}"/>'
                    '<testcase classname="m" name="test_ok" time="0.25"/>'
                    f'<testcase classname="m" name="test_bad" time="{time}">'
                    '<failure message="assert 1">trace</failure></testcase>'
                    "</testsuite></testsuites>")
    run = read_junit(path)
    assert run.tests["m::test_odd"].duration == 0.0
    assert run.tests["m::test_ok"].duration == 0.25
    assert cli.main(["report", "--junit", str(path)]) == 1
    for name in ("summary.md", "findings.json"):
        text = (tmp_path / name).read_text()
        assert not re.search(r"\b(nan|inf|infinity)\b", text, re.IGNORECASE), name
    json.loads((tmp_path / "findings.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"findings.json holds {c}"))


def test_malformed_event_records_are_skipped() -> None:
    from tiergate.results.model import build

    good = [
        {"event": "run-start", "t": 1.0, "tier": "fast", "settings": {}},
        {"event": "test-start", "t": 1.1, "nodeid": "t.py::test_ok"},
        {"event": "test-finish", "t": 1.2, "nodeid": "t.py::test_ok", "outcome": "passed",
         "duration": 0.1},
    ]
    bad: list[Any] = [
        {},  # no "event"
        {"event": ["test-start"]},  # an unhashable event name
        {"event": "test-start", "t": 1.3},  # no nodeid
        {"event": "test-finish", "t": 1.3},
        {"event": "test-finish", "nodeid": "t.py::test_x", "t": "soon", "outcome": "passed"},
        {"event": "test-finish", "nodeid": "t.py::test_y", "t": 1.4, "duration": "long"},
        {"event": "hard-timeout", "nodeid": "t.py::test_z"},
        {"event": "finding", "t": 1.5, "finding": "not a dict"},
        {"event": "finding", "t": 1.5, "finding": ["a", "list"]},
        {"event": "finding", "t": 1.5},
        {"event": "finding", "t": 1.5, "finding": {"message": "no kind"}},
        {"event": "run-start", "t": 1.0, "tier": "fast", "settings": ["a", "list"]},
        {"event": "sample", "t": 1.6, "tests": ["a", "list"]},
        {"event": "sample", "t": 1.6, "tests": {"t.py::test_ok": "big"}},
        {"event": "collected", "t": 1.6, "tests": 7},
        {"event": "collect-start", "t": 1.6},
        ["a", "list"],
        "a string",
        None,
        7,
    ]
    records: list[Any] = [good[0], *bad, good[1], *bad, good[2], *bad,
                          {"event": "run-finish", "t": 2.0, "exit_code": 0}]
    run = build(records)  # a record is applied up to its first bad field, then dropped
    assert (run.malformed_events, run.unknown_events) == (3 * len(bad), 0)
    assert run.tier == "fast"
    assert run.tests["t.py::test_ok"].outcome == "passed"
    assert run.tests["t.py::test_ok"].duration == 0.1
    assert run.findings == []
    assert run.finished == 2.0


def test_the_report_shows_each_leak_check_and_counts_its_time_in_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A run killed right after its last test's confirmation runs: no run-finish, so the run's
    # time ends where the leak check does, 4 s after the last test-finish.
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    results = tmp_path / "res"
    results.mkdir()
    nodeid = "tests/test_pool.py::test_start_pool"
    events = [
        {"event": "run-start", "t": 100.0, "tier": "fast", "settings": {}},
        {"event": "collected", "t": 100.5, "tests": [nodeid]},
        {"event": "test-start", "t": 101.0, "nodeid": nodeid},
        {"event": "test-finish", "t": 102.0, "nodeid": nodeid, "outcome": "passed",
         "duration": 1.0},
        {"event": "finding", "t": 106.0, "finding": finding(
            "leak-thread", nodeid, "test left threads running: thread 'pool-1'")},
        {"event": "leak-check", "t": 106.0, "nodeid": nodeid, "repeats": 3, "seconds": 4.0,
         "kinds": {"leak-thread": "leak"}, "result": "leak", "suspected": ["thread 'pool-1'"],
         "again": ["thread 'pool-1'"]},
    ]
    (results / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    assert cli.main(["report", "--results-dir", str(results)]) == 1
    summary = (results / "summary.md").read_text()
    assert "— 1 test in 6.0s." in summary
    assert ("🔁 **Leak checks:** 1 test run again to confirm leaks (3 repeats, 4.0s of the "
            "run's 6.0s): <code>tests/test\\_pool.py::test\\_start\\_pool</code> (3 repeats, 4.0s, "
            "leak confirmed).") in summary
    out = capsys.readouterr().out
    assert "leak checks: 1 test run again (3 repeats, 4.00s of the run's 6.0s):" in out


def test_the_job_summary_links_the_pull_requests_head_and_the_run(
        tmp_path: Path, actions_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # As Actions sets them for a pull_request: GITHUB_SHA is the merge commit, the head is in
    # the event file, and the blob links must name the head (the merge commit's blobs vanish).
    head, merge = "a" * 40, "b" * 40
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 5, "head": {"sha": head},
                                                  "base": {"sha": "c" * 40}}}))
    for name, value in (("GITHUB_SERVER_URL", "https://github.com"),
                        ("GITHUB_REPOSITORY", "octo/app"), ("GITHUB_RUN_ID", "42"),
                        ("GITHUB_RUN_ATTEMPT", "2"), ("GITHUB_SHA", merge),
                        ("GITHUB_EVENT_NAME", "pull_request"),
                        ("GITHUB_EVENT_PATH", str(event))):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)  # report needs none
    results = write_results_dir(tmp_path / "res", failures=[("tests/test_bad.py::test_x", "no")])
    assert cli.main(["report", "--results-dir", str(results)]) == 1

    job = actions_env["summary"].read_text()
    assert f'href="https://github.com/octo/app/commit/{head}"' in job
    assert f'href="https://github.com/octo/app/blob/{head}/tests/test_bad.py#L10"' in job
    assert 'href="https://github.com/octo/app/actions/runs/42/attempts/2"' in job
    assert merge not in job
    assert (results / "summary.md").read_text() == job


def test_off_actions_the_summary_has_no_links(
        tmp_path: Path, actions_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    results = write_results_dir(tmp_path / "res", failures=[("tests/test_bad.py::test_x", "no")])
    assert cli.main(["report", "--results-dir", str(results)]) == 1
    assert "href=" not in actions_env["summary"].read_text()
