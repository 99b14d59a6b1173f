"""The event stream: ``events.jsonl``, the single source of truth that every report rebuilds from.

Writers (the supervisor, the plugin in pytest and in each xdist worker) append one JSON object per
line to the same file. The file is opened with O_APPEND and each event goes out in one ``write``
call, so lines from different processes never interleave and a process killed at any instant
leaves at worst one torn last line, which readers skip.

Every event has ``event`` (its kind), ``t`` (wall-clock seconds) and ``pid``. The kinds and their
fields are listed in ``docs/architecture.md``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"

# Event kinds. Readers match on these names; writers use them through the constants.
RUN_START = "run-start"  # supervisor: tier, settings, args, attempt 0
ATTEMPT_START = "attempt-start"  # supervisor: attempt, argv, only (tests left) or None
SESSION_START = "session-start"  # plugin: worker, attempt
COLLECTED = "collected"  # plugin: tests [nodeid], deselected
TEST_START = "test-start"  # plugin: nodeid, path, line, worker, timeout
TEST_FINISH = "test-finish"  # plugin: nodeid, path, line, outcome, duration, phase, message, ...
SLOW = "slow"  # plugin: nodeid, elapsed, stack
FINDING = "finding"  # anyone: finding (a findings.json entry)
HARD_TIMEOUT = "hard-timeout"  # supervisor: nodeid, test_pid, dump
SESSION_FINISH = "session-finish"  # plugin: exitstatus
PYTEST_EXIT = "pytest-exit"  # supervisor: attempt, returncode, signal
BUDGET_EXPIRED = "budget-expired"  # supervisor: budget, nodeid (in flight), dump
CANCELLED = "cancelled"  # supervisor: signal, nodeid (in flight), dump
SAMPLE = "sample"  # supervisor: rss, cpu, threads, fds, processes, nodeid
RESOURCE_PRESSURE = "resource-pressure"  # supervisor: nodeid, resource, value, limit, dump
RUN_FINISH = "run-finish"  # supervisor: exit_code, duration


class EventWriter:
    """Appends events to one file; safe to use from several processes at once."""

    def __init__(self, path: Path, *, worker: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.worker = worker
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pid = os.getpid()

    def emit(self, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"event": event, "t": time.time(), "pid": os.getpid()}
        if self.worker is not None:
            record["worker"] = self.worker
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        os.write(self._fd, line.encode("utf-8", "replace"))

    def close(self) -> None:
        if self._fd >= 0 and os.getpid() == self._pid:
            os.close(self._fd)
        self._fd = -1


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete event in *path*, in order. A torn or garbled line is skipped, not fatal."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # the writer died mid-line
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "event" in record:
                yield record


class EventTail:
    """Reads events as they are appended (the supervisor follows the run with it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for raw in lines:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "event" in record:
                out.append(record)
        return out
