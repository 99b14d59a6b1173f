"""Results dirs and JUnit files are untrusted (a fork's artifact, or written by the code under
test): `tiergate report` reads them within limits, skips and counts malformed records, cuts what
is too big and says so, and never lets their text become a workflow command."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from resultsdirs import SECRET, parse_outputs

from tiergate import cli
from tiergate.protocol.findings import Finding
from tiergate.report.summary import read_dump
from tiergate.results import inputs, junit_in
from tiergate.results.inputs import INVALID_TIER, TEXT_LIMIT, ReadNotes, read_event_records

INJECT = "\n::error::pwned\n::add-mask::x\n::set-output name=a::b\n##[error]old\r::warning::cr"
# The commands `tiergate report` means to emit, with their properties.
ANNOTATION = re.compile(r"::(error|warning|notice)( [a-z]+=[^:\n]*)?::")
BIG = 5 * 2**20  # "too big" for a text (64 KiB kept), small enough for a test


def event(kind: str, t: float = 1.0, **fields: Any) -> str:
    return json.dumps({"event": kind, "t": t, "pid": 1, **fields}) + "\n"


def forged_dir(path: Path) -> Path:
    """What a fork can put in its artifact: a tier name that injects commands, hostile test
    names, messages and finding texts, a huge text, and records of the wrong type."""
    path.mkdir(parents=True)
    (path / "dumps").mkdir()
    (path / "dumps" / "hang.txt").write_text(f"Thread 0x1{INJECT}\n  File db.py, line 9\n")
    bad_test = f"tests/test_x.py::test_bad[{INJECT}]"
    huge = "Traceback:\n" + "y" * BIG + "\nAssertionError: the end"
    lines = [
        event("run-start", tier=f"fast{INJECT}", settings={"allow-no-tests": False}),
        event("collected", tests=["tests/test_x.py::test_ok", bad_test,
                                  "tests/test_x.py::test_huge"]),
        event("test-start", nodeid="tests/test_x.py::test_ok", path="tests/test_x.py", line=1),
        event("test-finish", nodeid="tests/test_x.py::test_ok", path="tests/test_x.py", line=1,
              outcome="passed", duration=0.1),
        event("test-start", nodeid=bad_test, path="tests/test_x.py", line=5),
        event("test-finish", nodeid=bad_test, path="tests/test_x.py", line=5, outcome="failed",
              duration=0.2, phase="call", message=f"assert 1{INJECT}\u2028::error::ls",
              longrepr=f"E   boom{INJECT} {SECRET}"),
        event("test-start", nodeid="tests/test_x.py::test_huge", path="tests/test_x.py",
              line=9),
        event("test-finish", nodeid="tests/test_x.py::test_huge", path="tests/test_x.py",
              line=9, outcome="failed", duration=0.3, message="huge", longrepr=huge),
        event("finding", finding={
            "kind": "timeout", "test": bad_test, "severity": "error",
            "message": f"timeout: ran past 5s{INJECT}",
            "location": {"path": "tests/test_x.py", "line": 5},
            "culprit": {"path": "src/app/db.py", "line": 9, "function": f"recv{INJECT}",
                        "reason": f"recv on 127.0.0.1:5432{INJECT}"},
            "dump": "dumps/hang.txt"}),
        event("finding", finding={"kind": "leak-thread", "test": None,
                                  "message": f"thread{INJECT}", "severity": "warning",
                                  "details": {"created": f"pool.py:4{INJECT}"}}),
        # records of the wrong type
        event("finding", finding={"kind": "leak-thread", "message": ["a", "list"]}),
        event("test-finish", nodeid=12345, outcome="failed"),
        event("finding", finding={"kind": "env-changed", "message": "m",
                                  "location": "tests/test_x.py:3"}),
        event("sample", rss=100, tests={"tests/test_x.py::test_ok": "lots"}),
        event("collected", tests="tests/test_x.py::test_ok"),
        event("test-finish", nodeid="tests/test_x.py::test_nan", outcome="passed",
              duration="long"),
        event("slow", nodeid=bad_test, elapsed="half", culprit={"path": "a.py"}),
        json.dumps({"event": "finding", "t": 1.0,
                    "finding": {"kind": "x", "message": {"k": list(range(50_000))}}}) + "\n",
        # a huge nested structure: no JSON reader takes it
        '{"event": "finding", "t": 1.0, "finding": ' + "[" * 200_000 + "]" * 200_000 + "}\n",
        "not json at all\n",
        event("run-finish", t=2.0, exit_code=1),
    ]
    (path / "events.jsonl").write_text("".join(lines))
    return path


MALFORMED = 8  # the records of the wrong type above
UNREADABLE = 2  # the nested structure and the line that is no JSON


def report(*argv: str) -> int:
    return cli.main(["report", *argv])


def commands_in(out: str) -> list[str]:
    """Every line the runner would read as a workflow command: "::" after blanks, split the way
    any reader might split lines (str.splitlines also splits on U+2028 and friends)."""
    return [line for line in out.splitlines() if line.lstrip().startswith("::")]


def test_a_forged_results_dir_injects_nothing(
        tmp_path: Path, actions_env: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    results = forged_dir(tmp_path / "artifact")
    code = report("--results-dir", str(results))
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "Traceback" not in captured.err and captured.err == ""
    out = captured.out

    commands = commands_in(out)
    assert commands, "the failures and findings are annotated"
    for line in commands:
        assert ANNOTATION.match(line), line  # only the annotations tiergate means to emit
    assert "%0A" in "".join(commands)  # newlines inside the data, escaped per GitHub's rules
    hang = next(c for c in commands if "test_bad" in c)  # the hang, with the failure's test
    assert "title=tiergate timeout in tests/test_x.py%3A%3Atest_bad" in hang  # ":" escaped
    assert "title=failed%3A tests/test_x.py%3A%3Atest_huge" in "".join(commands)
    for line in out.splitlines():
        assert "##[" not in line
        assert not re.search(r"^\s*::(add-mask|set-output|error::pwned)", line), line
    assert SECRET not in out

    # The tier name from the artifact is replaced, everything cut or skipped is counted.
    summary = actions_env["summary"].read_text()
    assert summary.startswith(f"### ❌ tiergate · tier {INVALID_TIER.replace('(', chr(92) + '(')}"
                              .replace(")", "\\)"))
    assert f"skipped {MALFORMED} malformed records" in summary
    assert f"skipped {UNREADABLE} unreadable lines" in summary
    assert "replaced 1 invalid tier name" in summary
    assert "cut 1 text over 64 KiB" in summary
    assert f"skipped {MALFORMED} malformed records" in out  # the terminal says it too
    assert out.splitlines()[0].count(INVALID_TIER) == 1
    assert not any(line.lstrip().startswith("::") for line in summary.splitlines())
    assert SECRET not in summary

    # The outputs are the ones tiergate writes, nothing injected into $GITHUB_OUTPUT.
    outputs = parse_outputs(actions_env["output"].read_text())
    assert set(outputs) == {"outcome", "ok", "passed", "failed", "skipped", "timeouts", "leaks",
                            "errors", "summary-path", "results-dir"}
    assert outputs["failed"] == "2" and outputs["passed"] == "1"
    document = json.loads((results / "findings.json").read_text())
    assert document["tier"] == INVALID_TIER and len(document["findings"]) == 2


def test_tier_from_the_command_line_wins_over_the_artifact(
        tmp_path: Path, actions_env: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    results = forged_dir(tmp_path / "artifact")
    assert report("--results-dir", str(results), "--tier", "fast") == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("=") and " tier fast: FAILED" in out.splitlines()[0]
    note = "the results say an invalid tier name; they are reported as tier fast (--tier)"
    assert sum(note in line for line in out.splitlines()) == 1
    summary = actions_env["summary"].read_text()
    assert summary.startswith("### ❌ tiergate · tier fast: failed")
    assert note.replace("(", "\\(").replace(")", "\\)") in summary
    assert json.loads((results / "findings.json").read_text())["tier"] == "fast"


def test_a_tier_name_that_matches_says_nothing(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from resultsdirs import write_results_dir

    results = write_results_dir(tmp_path / "res", tier="fast", passed=2)
    assert report("--results-dir", str(results), "--tier", "fast") == 0
    out = capsys.readouterr().out
    assert "input:" not in out
    assert "**Input:**" not in (results / "summary.md").read_text()
    assert report("--results-dir", str(results), "--tier", "nightly") == 0
    assert "the results say tier fast; they are reported as tier nightly" in \
        capsys.readouterr().out


@pytest.mark.parametrize("tier", ["", "a" * 65, "fast\n::error::x", "a b", "f/g"])
def test_a_bad_tier_option_is_exit_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], tier: str) -> None:
    from resultsdirs import write_results_dir

    results = write_results_dir(tmp_path / "res", passed=1)
    assert report("--results-dir", str(results), f"--tier={tier}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a tier name" in err


def test_a_huge_failure_text_in_junit_is_cut_and_said(
        tmp_path: Path, actions_env: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junit.xml"
    text = "first line\n" + ("z" * 99 + "\n") * (BIG // 100) + "AssertionError: last line"
    path.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="s">'
        '<testcase classname="pkg.mod" name="test_ok" time="0.1"/>'
        f'<testcase classname="pkg.mod" name="test_big"><failure message="boom">{text}'
        f"</failure><system-out>{'o' * BIG}</system-out></testcase>"
        "</testsuite></testsuites>")
    assert report("--junit", str(path)) == 1
    out = capsys.readouterr().out
    run = junit_in.read_junit(path)
    big = run.tests["pkg.mod::test_big"]
    assert big.longrepr is not None and len(big.longrepr) <= TEXT_LIMIT
    assert big.longrepr.startswith("first line")
    assert big.longrepr.endswith("AssertionError: last line")  # the end says what went wrong
    assert re.search(r"… [\d,]+ characters cut …", big.longrepr)
    assert big.stdout is not None and len(big.stdout) <= TEXT_LIMIT
    assert run.input_notes == [f"{path}: cut 2 texts over 64 KiB (kept the start and the end)"]
    summary = (tmp_path / "summary.md").read_text()
    assert "**Input:**" in summary and "cut 2 texts over 64 KiB" in summary
    assert "cut 2 texts over 64 KiB" in out
    assert not [f for f in run.findings if f.kind == "run-error"]  # no test was left out


def test_a_junit_file_past_its_limit_is_read_up_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(junit_in, "JUNIT_LIMIT", 256 * 1024)
    monkeypatch.setattr(junit_in, "_CHUNK", 4096)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuites><testsuite name="s"><testcase classname="m" name="test_ok"/>'
        f'<testcase classname="m" name="test_long"><failure message="x">{"q" * 2**20}'
        '</failure></testcase><testcase classname="m" name="test_lost"/></testsuite>'
        "</testsuites>")
    run = junit_in.read_junit(path)
    assert set(run.tests) == {"m::test_ok", "m::test_long"}  # the case being read is kept
    assert run.tests["m::test_long"].outcome == "failed"
    assert "cut: read the first 256 KiB of 1 MiB (the limit)" in run.input_notes[0]
    (error,) = [f for f in run.findings if f.kind == "run-error"]
    assert "was not read whole" in error.message
    assert report("--junit", str(path)) == 1  # a report that leaves tests out is never green
    assert "cut: read the first 256 KiB" in capsys.readouterr().out


def test_junit_that_declares_entities_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junit.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                    '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                    '<testsuites><testsuite name="s"><testcase classname="m" name="&lol1;"/>'
                    "</testsuite></testsuites>")
    assert report("--junit", str(path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "declares XML entities" in err


def test_hostile_junit_names_inject_nothing(
        tmp_path: Path, actions_env: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuites><testsuite name="s" file="&#10;::error::suite">'
        '<testcase classname="m&#10;::add-mask::x" name="t&#13;::error::pwned" line="²">'
        + '<property name="p" value="v"/>' * 300
        + '<failure message="a&#10;::set-output name=a::b">&#10;::error::text</failure>' * 105
        + '<system-out>out</system-out>'
        '</testcase><testcase classname="m" name="ok" time="1e400"/></testsuite></testsuites>')
    assert report("--junit", str(path)) == 1
    out = capsys.readouterr().out
    for line in commands_in(out):
        assert ANNOTATION.match(line), line
    assert "%0A" in out or "%0D" in out
    run = junit_in.read_junit(path)
    (bad,) = [t for t in run.tests.values() if t.outcome == "failed"]
    assert bad.line is None and bad.stdout is None  # "²" is no line; the 106th child is left out
    assert "left out 6 children of a testcase past the limit of 100" in run.input_notes[0]


def test_streamed_events_match_a_whole_read(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The log is read a chunk at a time: lines across chunk boundaries come out whole."""
    from resultsdirs import leak, write_results_dir

    from tiergate.protocol.events import read_events
    from tiergate.results.model import build

    results = write_results_dir(tmp_path / "res", passed=40,
                                failures=[("t.py::test_bad", "x" * 3000)],
                                findings=[leak(i) for i in range(5)], samples=7)
    whole = build(read_events(results / "events.jsonl"))
    for chunk in (1, 7, 100, 4096):
        monkeypatch.setattr(inputs, "_CHUNK", chunk)
        notes = ReadNotes("x")
        streamed = build(read_event_records(results / "events.jsonl", notes))
        assert streamed.tests == whole.tests and streamed.findings == whole.findings
        assert notes.sentence() is None, chunk


def test_an_events_file_past_its_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from resultsdirs import write_results_dir

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(inputs, "_CHUNK", 512)
    monkeypatch.setattr(inputs, "RECORD_LIMIT", 2048)
    results = write_results_dir(tmp_path / "res", passed=3,
                                failures=[("t.py::test_bad", "y" * 5000)])
    assert report("--results-dir", str(results)) == 1
    out = capsys.readouterr().out
    assert "skipped 1 event over 2 KiB" in out  # the failure's test-finish is too big
    assert "crash" in out  # so the test is in flight at the end: never a pass
    run = inputs.load_events(results)
    assert [f.kind for f in run.findings] == ["run-error"]

    monkeypatch.setattr(inputs, "RECORD_LIMIT", 2**20)
    monkeypatch.setattr(inputs, "EVENTS_LIMIT", 1024)
    run = inputs.load_events(results)
    assert "cut: read the first 1 KiB of" in run.input_notes[0]
    assert any(f.kind == "run-error" for f in run.findings) and not run.ok


def test_a_big_dump_is_read_within_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(b"culprit: db.py:9\n" + b"d" * (3 * 2**20) + b"\nlast thread\n")
    text = read_dump(path)
    assert len(text) < 2**20 + 1000
    assert text.startswith("[cut: this dump is 3,145,758 bytes and a report reads at most "
                           "1,048,576;")
    assert "culprit: db.py:9" in text and text.endswith("last thread\n")
    small = tmp_path / "small.txt"
    small.write_text("all of it\n")
    assert read_dump(small) == "all of it\n"


@pytest.mark.parametrize("dump", ["/etc/passwd", "../../x", "dumps/a\x00b", "dumps/" + "d" * 300])
def test_a_dump_path_from_the_artifact_reads_nothing_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dump: str) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    results = tmp_path / "res"
    results.mkdir()
    (results / "events.jsonl").write_text("".join([
        event("run-start", tier="fast"),
        event("test-start", nodeid="t.py::test_h"),
        event("hard-timeout", nodeid="t.py::test_h", message="timeout: 1s", dump=dump),
        event("run-finish", t=2.0)]))
    assert report("--results-dir", str(results)) == 1
    assert "root:" not in (results / "summary.md").read_text()


def test_summary_written_over_a_link_replaces_the_link(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from resultsdirs import write_results_dir

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    results = write_results_dir(tmp_path / "res", passed=1)
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    (results / "summary.md").symlink_to(target)
    (results / "findings.json.tmp").symlink_to(target)
    assert report("--results-dir", str(results)) == 0
    assert target.read_text() == "keep me"
    assert not (results / "summary.md").is_symlink()
    assert "All 1 test passed" in (results / "summary.md").read_text()


@pytest.mark.parametrize("data", [
    {"kind": "x", "message": ["a", "list"]},
    {"kind": "x", "test": 7},
    {"kind": "x", "location": "tests/a.py:3"},
    {"kind": "x", "location": {"path": 3}},
    {"kind": "x", "culprit": {"path": "a.py", "line": "9"}},
    {"kind": ["x"]},
    {"kind": "x", "details": ["a"]},
    "a string",
])
def test_a_finding_of_the_wrong_shape_is_refused(data: Any) -> None:
    with pytest.raises((TypeError, KeyError)):
        Finding.from_json(data)


def test_a_finding_of_the_right_shape_is_read() -> None:
    finding = Finding.from_json({"kind": "timeout", "test": "t.py::x", "message": "m",
                                 "location": {"path": "t.py", "line": 3},
                                 "culprit": {"path": "a.py", "line": 9, "function": "f",
                                             "reason": "recv", "pid": 4},
                                 "dump": "dumps/x.txt", "details": {"k": 1}})
    assert Finding.from_json(finding.to_json()) == finding
    assert Finding.from_json({"kind": "x", "message": None}).message == ""


def test_junit_in_a_namespace_keeps_its_results(tmp_path: Path) -> None:
    """Elements are matched by their local names: a default namespace must not turn every
    failure into a pass."""
    path = tmp_path / "junit.xml"
    path.write_text('<testsuites xmlns="urn:x-junit"><testsuite name="s">'
                    '<testcase classname="m" name="test_bad"><failure message="assert 1">'
                    "trace</failure></testcase>"
                    '<testcase classname="m" name="test_skip"><skipped message="no"/></testcase>'
                    "</testsuite></testsuites>")
    run = junit_in.read_junit(path)
    assert {n: t.outcome for n, t in run.tests.items()} == {"m::test_bad": "failed",
                                                            "m::test_skip": "skipped"}
    assert not run.ok


def test_a_huge_tag_in_junit_stops_the_read(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """expat holds a tag whole (an attribute of 100 MB): reading stops at the tag limit, and the
    test case it was in is an error, never a pass."""
    monkeypatch.setattr(junit_in, "TAG_LIMIT", 64 * 1024)
    monkeypatch.setattr(junit_in, "_CHUNK", 4096)
    path = tmp_path / "junit.xml"
    path.write_text('<testsuites><testsuite name="s"><testcase classname="m" name="test_ok"/>'
                    '<testcase classname="m" name="test_cut"><failure message="'
                    + "a" * 2**20 + '">x</failure></testcase></testsuite></testsuites>')
    run = junit_in.read_junit(path)
    assert run.tests["m::test_ok"].outcome == "passed"
    cut = run.tests["m::test_cut"]
    assert cut.outcome == "error" and (cut.message or "").startswith("cut: the file was not read")
    assert "cut: stopped at byte" in run.input_notes[0]
    assert "a single XML tag or comment over 64 KiB" in run.input_notes[0]
    assert [f.kind for f in run.findings] == ["run-error"] and not run.ok
