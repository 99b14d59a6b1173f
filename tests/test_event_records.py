"""The typed contracts between processes: every event kind has one record (its fields and their
types), the docs list each kind, every reader skips and counts what it cannot read in one place,
and tiergate's JUnit says a timeout or a crash in a type the reader trusts over the message."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tiergate.protocol import events as ev
from tiergate.protocol import records
from tiergate.results.inputs import load_events, read_event_records
from tiergate.results.junit_in import read_junit
from tiergate.results.junit_out import write_junit
from tiergate.results.model import RunResult, TestResult, build

ARCHITECTURE = Path(__file__).parent.parent / "docs" / "architecture.md"


def test_every_kind_has_a_record_with_a_value_for_each_field() -> None:
    assert set(records.RECORDS) == ev.KINDS
    for kind, record in records.RECORDS.items():
        fields = records.fields_of(record)  # raises for a field whose type says no Value
        assert {"event", "t", "pid", "worker"} <= fields.keys(), kind
        assert "t" in records.REQUIRED[kind], kind


def test_the_architecture_page_lists_every_kind_with_the_fields_of_its_record() -> None:
    rows = {}
    for line in ARCHITECTURE.read_text().splitlines():
        match = re.match(r"\| `([a-z-]+)` \| [^|]+ \| ([^|]*) \|", line)
        if match and match.group(1) in ev.KINDS:
            rows[match.group(1)] = set(re.findall(r"`([a-z_]+)`", match.group(2)))
    assert rows.keys() == ev.KINDS
    for kind, documented in rows.items():
        own = set(records.fields_of(records.RECORDS[kind])) - {"event", "t", "pid", "worker"}
        assert documented == own, kind


def _log(tmp_path: Path, *events: dict[str, Any]) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    lines = [{"event": ev.RUN_START, "t": 1.0, "pid": 1, "tier": "fast"}, *events]
    (results / ev.EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in lines))
    return results


def test_an_unknown_kind_and_a_missing_field_are_skipped_and_said_once(tmp_path: Path) -> None:
    results = _log(
        tmp_path,
        {"event": "from-the-future", "t": 1.5, "pid": 1, "anything": [1, 2]},
        {"event": ev.TEST_FINISH, "t": 2.0, "pid": 1, "outcome": "passed"},  # no nodeid
        {"event": ev.TEST_FINISH, "t": 2.0, "pid": 1, "nodeid": "t.py::test_a",
         "outcome": "failed", "message": "boom"},
        {"event": ev.SESSION_FINISH, "t": 3.0, "pid": 1, "exitstatus": 1},  # known, unread
    )
    run = load_events(results)
    assert list(run.tests) == ["t.py::test_a"]
    assert run.tests["t.py::test_a"].message == "boom"
    note = run.input_notes[0]
    assert "skipped 1 malformed record" in note
    assert "skipped 1 event of a kind this version of tiergate does not know" in note
    assert note.count("skipped") == 2


def test_the_trusted_reader_counts_the_same_records_as_the_untrusted_one(
        tmp_path: Path) -> None:
    results = _log(
        tmp_path,
        {"event": "from-the-future", "t": 1.5, "pid": 1},
        {"event": ev.HARD_TIMEOUT, "t": 2.0, "pid": 1},  # no nodeid
        {"event": ev.FINDING, "t": 2.0, "pid": 1},  # no finding
    )
    trusted = build(ev.read_events(results / ev.EVENTS_FILE))
    assert (trusted.unknown_events, trusted.malformed_events) == (1, 2)
    from tiergate.results.inputs import ReadNotes

    checked = build(read_event_records(results / ev.EVENTS_FILE, ReadNotes("x")))
    assert (checked.unknown_events, checked.malformed_events) == (1, 2)


def test_a_checked_record_keeps_the_typed_fields_and_drops_the_rest(tmp_path: Path) -> None:
    from tiergate.results.inputs import ReadNotes

    results = _log(tmp_path, {"event": ev.LEAK_CHECK, "t": 2.0, "pid": 1, "nodeid": "t.py::a",
                              "repeats": 3, "result": "leak", "suspected": ["thread x"],
                              "smuggled": "x" * 10})
    notes = ReadNotes("x")
    checked = list(read_event_records(results / ev.EVENTS_FILE, notes))[-1]
    assert checked == {"event": ev.LEAK_CHECK, "t": 2.0, "pid": 1, "nodeid": "t.py::a",
                       "repeats": 3, "result": "leak", "suspected": ["thread x"]}
    assert notes.sentence() is None


def _junit_run() -> RunResult:
    run = RunResult(tier="fast")
    for nodeid, outcome, message in [
        ("t.py::test_hang", "timeout", "timeout: ran past its 1s limit"),
        ("t.py::test_died", "failed", "crash: the process running this test died (SIGKILL)"),
        ("t.py::test_bad", "failed", "AssertionError: timeout was 3"),
    ]:
        run.tests[nodeid] = TestResult(nodeid, path="t.py", outcome=outcome,  # type: ignore[arg-type]
                                       message=message)
    return run


def test_junit_says_timeout_and_crash_in_the_type_and_reads_them_back(tmp_path: Path) -> None:
    path = write_junit(_junit_run(), tmp_path / "junit.xml")
    types = {case.get("name"): case.find("failure").get("type")  # type: ignore[union-attr]
             for case in ET.parse(path).getroot().iter("testcase")}
    assert types == {"test_hang": "timeout", "test_died": "crash",
                     "test_bad": "failure"}
    # A message may say "timeout" and be no timeout: the type decides (here: a plain failure
    # whose message starts with the word).
    text = path.read_text().replace("AssertionError: timeout was 3", "timeout was 3")
    path.write_text(text)
    outcomes = {n: t.outcome for n, t in read_junit(path).tests.items()}
    assert outcomes == {"t.py::test_hang": "timeout", "t.py::test_died": "failed",
                        "t.py::test_bad": "failed"}


@pytest.mark.parametrize("kind", ["timeout", None])
def test_junit_of_an_older_tiergate_is_read_by_its_message(tmp_path: Path,
                                                           kind: str | None) -> None:
    type_attribute = f' type="{kind}"' if kind else ""
    path = tmp_path / "junit.xml"
    path.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="tiergate.fast">'
        '<testcase classname="t" name="test_hang" file="t.py">'
        f'<failure message="timeout: ran past its 1s limit"{type_attribute}>stuck</failure>'
        "</testcase></testsuite></testsuites>")
    assert read_junit(path).tests["t.py::test_hang"].outcome == "timeout"
