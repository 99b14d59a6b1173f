"""The event stream: what writers put in events.jsonl is what readers get back, whole lines only,
live or in batches, from several processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tiergate.protocol.events import EventWriter, OwnedLog, parse_events, read_events


@pytest.fixture
def still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch also goes out once a second; a stalled machine must not make a test's batch early."""
    monkeypatch.setattr("tiergate.protocol.events.time.monotonic", lambda: 1000.0)


def test_flat_events_read_back_as_json_would_write_them(tmp_path: Path) -> None:
    writer = EventWriter(tmp_path / "events.jsonl", worker="gw1")
    fields = {"s": 'q"\\\n\u2603\udcff', "i": 3, "f": 0.5, "n": None}
    writer.emit("test-finish", **fields)
    writer.emit("odd", flag=True, nested={"a": [1]}, big=float("inf"))  # the json module's way
    writer.close()
    first, second = read_events(tmp_path / "events.jsonl")
    assert {k: first[k] for k in fields} == fields
    assert (first["event"], first["worker"], first["pid"]) == ("test-finish", "gw1", os.getpid())
    assert second["flag"] is True and second["nested"] == {"a": [1]}
    assert second["big"] == float("inf")


def test_a_torn_last_line_and_a_garbled_line_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"a","t":1}\nnot json\n[1,2]\n{"event":"b","t":2}\n{"event":"c","t"')
    assert [e["event"] for e in read_events(path)] == ["a", "b"]
    assert list(read_events(tmp_path / "missing.jsonl")) == []


@pytest.mark.usefixtures("still_clock")
def test_batched_events_reach_the_file_at_flush_and_follow_the_live_ones(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = OwnedLog(path)
    tail = log.tail
    batched = EventWriter(path, live=False)
    batched.emit("one")
    batched.emit("two")
    assert tail.poll() == []  # nothing written yet
    EventWriter(path).emit("live")
    batched.flush()
    assert [e["event"] for e in tail.poll()] == ["live", "one", "two"]
    batched.emit("three")
    batched.close()
    assert [e["event"] for e in tail.poll()] == ["three"]


def test_batches_go_out_at_least_once_a_second(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path, live=False)
    writer.emit("early")
    clock = [writer._flushed + EventWriter.BATCH_SECONDS + 0.1]
    monkeypatch.setattr("tiergate.protocol.events.time.monotonic", lambda: clock[0])
    writer.emit("late")
    assert [e["event"] for e in read_events(path)] == ["early", "late"]


@pytest.mark.usefixtures("still_clock")
def test_a_forked_child_writes_its_own_events_at_once_and_not_the_parents(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path, live=False)
    writer.emit("parent-before-fork")
    pid = os.fork()
    if pid == 0:  # the child: its event goes out now; the inherited batch is the parent's
        try:
            writer.emit("child")
            writer.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    writer.close()
    got = [(e["event"], e["pid"]) for e in read_events(path)]
    assert got == [("child", pid), ("parent-before-fork", os.getpid())]
    assert all(line.endswith("}") for line in path.read_text().splitlines())
    json.loads("[" + ",".join(path.read_text().splitlines()) + "]")


@pytest.mark.parametrize("live", [True, False])
@pytest.mark.parametrize(
    ("line", "timeout", "peak"),
    [(3, 5.0, None), (None, None, 123456), (7, 2, 1), (1, float("inf"), None)],
)
def test_a_passed_test_line_is_the_line_the_general_encoder_writes(
    tmp_path: Path, live: bool, line: int | None, timeout: float | None, peak: int | None
) -> None:
    fast, general = tmp_path / "fast.jsonl", tmp_path / "general.jsonl"
    nodeid, path = 'tests/test_a.py::test_b[q"\\ \u2603]', "tests/test_a.py"
    writer = EventWriter(fast, worker="gw0", live=live)
    writer.emit_passed(nodeid, path, line, 0.000123, timeout, peak)
    writer.close()
    fields = {"nodeid": nodeid, "path": path, "line": line, "outcome": "passed",
              "duration": 0.000123, "timeout": timeout}
    if peak is not None:
        fields["peak_rss"] = peak
    writer = EventWriter(general, worker="gw0", live=live)
    writer.emit_fields("test-finish", fields)
    writer.close()
    got, want = fast.read_text(), general.read_text()
    assert got.split('"pid"')[1] == want.split('"pid"')[1]  # all but the clock
    assert json.loads(got) | {"t": 0} == json.loads(want) | {"t": 0}


def test_a_log_deleted_by_path_is_still_read_and_restored(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = OwnedLog(path)
    EventWriter(log.writer_path).emit("before")
    path.unlink()  # a test, a fixture or git clean
    EventWriter(log.writer_path).emit("after")  # writers open our descriptor, not the name
    assert log.check() == "deleted"
    assert [e["event"] for e in log.tail.poll()] == ["before", "after"]
    log.restore()
    assert [e["event"] for e in read_events(path)] == ["before", "after"]
    log.close()


def test_a_log_replaced_by_path_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = OwnedLog(path)
    assert log.check() is None
    path.unlink()
    path.write_text('{"event":"forged","t":0,"pid":1}\n')
    assert log.check() == "replaced"
    assert log.check() is None  # said once
    log.close()


def test_a_torn_line_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = OwnedLog(path)
    EventWriter(path).emit("first")
    with path.open("ab") as handle:
        handle.write(b'{"event":"torn","t":1,"pi')  # a writer killed inside its write
    EventWriter(path).emit("glued")  # appended to the torn line
    assert [e["event"] for e in read_events(path)] == ["first", "glued"]
    log.repair_tear()
    EventWriter(path).emit("after-repair")
    assert [e["event"] for e in read_events(path)][-1] == "after-repair"
    log.close()


def test_garbage_and_deep_nesting_are_skipped_not_fatal() -> None:
    data = b"\x00\xff garbage\n" + b"[" * 100_000 + b"\n" + b'{"event":"ok","t":0,"pid":1}\n'
    assert [e["event"] for e in parse_events(data)] == ["ok"]
