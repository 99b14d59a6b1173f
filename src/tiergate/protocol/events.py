"""The event stream: ``events.jsonl``, the single source of truth that every report rebuilds from.

Writers (the supervisor, the plugin in pytest and in each xdist worker) append one JSON object per
line to the same file. The file is opened with O_APPEND and each event goes out in one ``write``
call, so lines from different processes never interleave and a process killed at any instant
leaves at worst one torn last line, which readers skip.

Every event has ``event`` (its kind), ``t`` (wall-clock seconds) and ``pid``. The kinds are the
constants below; each kind's fields are its typed record in ``protocol/records.py`` (and the
event table of ``docs/architecture.md``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiergate.protocol import redact
from tiergate.protocol.layout import EVENTS_FILE as EVENTS_FILE

if TYPE_CHECKING:  # (t, pid, nodeid, path, line, duration, peak_rss): see EventWriter.follow
    QuietPass = Callable[[float, int, str, str, int | None, float, int | None], None]

# Event kinds. Writers and readers use them through these constants (plain strings: cheap on
# the per-test path). The fields of each kind are its record in ``protocol/records.py``.
RUN_START = "run-start"
ATTEMPT_START = "attempt-start"
SESSION_START = "session-start"
COLLECT_START = "collect-start"
COLLECT_FINISH = "collect-finish"
COLLECTED = "collected"
TEST_START = "test-start"
TEST_FINISH = "test-finish"
TEST_ATTEMPT = "test-attempt"  # a failed attempt of a test run again (plugin/retries.py)
QUARANTINE = "quarantine"  # the quarantine entries of the project, once per run
SLOW = "slow"
FINDING = "finding"
LEAK_CHECK = "leak-check"
HARD_TIMEOUT = "hard-timeout"
SESSION_FINISH = "session-finish"
COLLECT_TIMEOUT = "collect-timeout"
EXIT_HANG = "exit-hang"
PYTEST_EXIT = "pytest-exit"
BUDGET_EXPIRED = "budget-expired"
CANCELLED = "cancelled"
SAMPLE = "sample"
RESOURCE_PRESSURE = "resource-pressure"
RUN_FINISH = "run-finish"
DEBUGGER = "debugger"
MAX_FAIL = "max-fail"
NETWORK_POLICY = "network-policy"  # a test run under its @pytest.mark.network policy
KINDS = frozenset({
    TEST_ATTEMPT, QUARANTINE,
    RUN_START, ATTEMPT_START, SESSION_START, COLLECT_START, COLLECT_FINISH, COLLECTED,
    TEST_START, TEST_FINISH, SLOW, FINDING, LEAK_CHECK, HARD_TIMEOUT, SESSION_FINISH,
    COLLECT_TIMEOUT, EXIT_HANG, PYTEST_EXIT, BUDGET_EXPIRED, CANCELLED, SAMPLE,
    RESOURCE_PRESSURE, RUN_FINISH, DEBUGGER, MAX_FAIL, NETWORK_POLICY,
})


# Forks of this process so far, in the child: a writer made before a fork is in the child
# when this differs from its own count.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class EventWriter:
    """Appends events to one file; safe to use from several processes at once.

    *live* (the default): each event is written when it is emitted, so that a follower (the
    supervisor) sees a test start before the test runs. Without *live*, events are kept and
    written in batches, one ``write`` per batch, at most ``BATCH_SECONDS`` apart and at every
    ``flush``: for a ``pytest --tier`` run that nobody follows, where the file is read only
    when the run ends. A batch is whole lines too, so readers see no difference.
    """

    BATCH_SECONDS = 1.0
    BATCH_EVENTS = 1024

    def __init__(self, path: Path, *, worker: str | None = None, live: bool = True,
                 raise_errors: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.raise_errors = raise_errors  # the supervisor's own writer: an error stops the run
        self.error: OSError | None = None
        self.worker = worker
        self.live = live
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._identity = _identity(os.fstat(self._fd))
        self._written = 0  # bytes this process wrote: the file is never shorter, unless cut
        self._pid = os.getpid()
        self._forks = _forks  # os.getpid() is a system call; a fork is seen by the counter
        self._pending: list[str] = []  # encoded lines not yet written (not live)
        self._flushed = time.monotonic()
        self._worker_field = "" if worker is None else f',"worker":{_quote(worker)}'
        # Secrets never reach the log, so no report rebuilt from it can show one: every line
        # passes the redactor of this environment; with no secrets, this stays None.
        redactor = redact.current()
        self._redact = redactor.line if redactor.active else None
        self._feed: Callable[[dict[str, Any]], None] | None = None  # see follow
        self._quiet_pass: QuietPass | None = None

    def follow(self, feed: Callable[[dict[str, Any]], None], quiet_pass: QuietPass) -> bool:
        """Hand *feed* every record this writer writes, as reading its line back would give
        it, and *quiet_pass* the values of each quiet pass's ``test-finish`` (``emit_passed``;
        ``t, pid, nodeid, path, line, duration, peak_rss``, as that line reads back): a plain
        run's end then need not parse what it wrote itself (``whole`` says when the file is
        just that). Not with redaction, whose lines differ from their records, nor for an xdist
        worker; returns whether it follows."""
        if self._redact is not None or self.worker is not None:
            return False
        self._feed, self._quiet_pass = feed, quiet_pass
        return True

    def whole(self) -> bool:
        """Is the file, by its name, exactly what this process wrote, every write whole? Then
        what ``follow`` fed is all of it; else (a forked child's or an xdist worker's events, a
        line a test appended, a cut, a failed write) only reading the file tells."""
        self.flush()
        return (self._fd >= 0 and self.error is None and _name_lost(self.path, self._identity)
                is None and os.fstat(self._fd).st_size == self._written)

    def emit(self, event: str, **fields: Any) -> None:
        self.emit_fields(event, fields)

    def emit_fields(self, event: str, fields: dict[str, Any]) -> None:
        """``emit`` for a dict the caller built and hands over."""
        live = self.live or _forks != self._forks  # a forked child's events go out at once
        line = _encode(event, time.time(), os.getpid() if live else self._pid, self.worker,
                       fields)
        self._send(line, live)
        if self._feed is not None:
            self._feed(json.loads(line))  # the few events that are not a quiet pass

    def emit_passed(self, nodeid: str, path: str, line: int | None, duration: float,
                    timeout: float | None, peak_rss: int | None) -> None:
        """The ``test-finish`` of a test that passed with no output: every test of a green run.
        The same line ``emit_fields`` writes for these fields, formatted in one go."""
        if timeout is not None and not -_INF < timeout < _INF:
            fields = {"nodeid": nodeid, "path": path, "line": line, "outcome": "passed",
                      "duration": duration, "timeout": timeout}
            if peak_rss is not None:
                fields["peak_rss"] = peak_rss
            self.emit_fields(TEST_FINISH, fields)
            return
        live = self.live or _forks != self._forks
        limit = "null" if timeout is None else repr(timeout)
        peak = "" if peak_rss is None else f',"peak_rss":{int(peak_rss)}'
        t, pid = time.time(), os.getpid() if live else self._pid
        text = (
            f'{{"event":"test-finish","t":{t!r},"pid":{pid}{self._worker_field},'
            f'"nodeid":{_quote(nodeid)},"path":{_quote(path)},'
            f'"line":{"null" if line is None else int(line)},"outcome":"passed",'
            f'"duration":{float(duration)!r},"timeout":{limit}{peak}}}\n'
        )
        self._send(text, live)
        if self._quiet_pass is not None:  # the values that line reads back as
            self._quiet_pass(t, pid, nodeid, path, None if line is None else int(line),
                             float(duration), None if peak_rss is None else int(peak_rss))

    def _send(self, line: str, live: bool) -> None:
        """The one way out of every event line: redacted, then written now or kept for a batch."""
        if self._redact is not None:
            line = self._redact(line)
        if live:
            self._write(line)
        else:
            self._keep(line)

    def _keep(self, line: str) -> None:
        pending = self._pending
        pending.append(line)
        if (len(pending) >= self.BATCH_EVENTS
                or time.monotonic() - self._flushed > self.BATCH_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Write the events kept so far (only in the process that emitted them: a forked child
        inherits the list, not the events)."""
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        if pending and os.getpid() == self._pid:
            self._write("".join(pending))

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        try:
            while data:
                written = os.write(self._fd, data)
                self._written += written
                data = data[written:]
        except OSError as exc:  # a full disk, a removed mount: pytest itself must not break
            if self.raise_errors:
                raise
            if self.error is None:
                self.error = exc
                os.write(2, f"tiergate: cannot write events to {self.path}: {exc.strerror}; "
                         "the results of this run are incomplete\n".encode())

    def lost(self) -> str | None:
        """What happened to the file by its name since it was opened, as OwnedLog.check says it
        (``deleted``, ``replaced``, ``truncated``), or None. A plain ``pytest --tier`` run asks
        before it reads the file back: a suite that removes files it did not make must not
        leave an empty (and green) report."""
        if self._fd < 0:
            return None
        lost = _name_lost(self.path, self._identity)
        if lost is None and os.fstat(self._fd).st_size < self._written:
            return "truncated"
        return lost

    def restore(self) -> None:
        """Put what the file holds back under its name (it was deleted or replaced by path;
        this writer still holds the run's file)."""
        _put_back(self.path, _read_fd(self._fd))

    def close(self) -> None:
        self.flush()
        if self._fd >= 0 and os.getpid() == self._pid:
            os.close(self._fd)
        self._fd = -1


def _encode(event: str, t: float, pid: int, worker: str | None, fields: dict[str, Any]) -> str:
    line = _encode_flat(event, t, pid, worker, fields)
    if line is None:  # nested values, booleans, odd floats: the json module's way
        record: dict[str, Any] = {"event": event, "t": t, "pid": pid}
        if worker is not None:
            record["worker"] = worker
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
    return line


_INF = float("inf")


def _encode_flat(
    event: str, t: float, pid: int, worker: str | None, fields: dict[str, Any]
) -> str | None:
    """The JSON line of an event whose fields are all strings, ints, finite floats or None
    (every per-test event), built directly: about half of what ``json.dumps`` costs, on a path
    that runs twice per test. The output is what ``json.dumps`` gives for the same record; any
    other value returns None and the caller uses ``json.dumps``."""
    out = f'{{"event":{_quote(event)},"t":{t!r},"pid":{pid}'
    if worker is not None:
        out += f',"worker":{_quote(worker)}'
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            out += f",{_quote(key)}:{_quote(value)}"
        elif kind is int or (kind is float and -_INF < value < _INF):
            out += f",{_quote(key)}:{value!r}"
        elif value is None:
            out += f",{_quote(key)}:null"
        else:
            return None
    return out + "}\n"


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete event in *path*, in order. A torn or garbled line is skipped, not fatal."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    yield from parse_events(data)


def parse_events(data: bytes) -> Iterator[dict[str, Any]]:
    """Every complete event in the bytes of a log (what follows the last newline is a line its
    writer never finished, and is left out)."""
    end = data.rfind(b"\n")
    if end < 0:
        return
    lines = data[:end]
    try:
        # One parse for the whole file (JSON text never holds a raw newline, so every newline
        # separates two events): several times faster than a parse per line.
        records = json.loads(b"[" + lines.replace(b"\n", b",") + b"]")
    except (ValueError, RecursionError):
        records = list(_each_line(lines.split(b"\n")))
    for record in records:
        if isinstance(record, dict) and "event" in record:
            yield record


_EVENT_START = b'{"event":'


def _each_line(lines: list[bytes]) -> Iterator[Any]:
    for raw in lines:
        try:
            yield json.loads(raw)
        except (ValueError, RecursionError):
            # A writer killed inside a write leaves a torn line, and the next event is appended
            # to it: resynchronise at the last event start in the line.
            at = raw.rfind(_EVENT_START)
            if at > 0:
                try:
                    yield json.loads(raw[at:])
                except (ValueError, RecursionError):
                    continue


class EventTail:
    """Reads events as they are appended, through one open file descriptor (the supervisor
    follows the run with it): a log deleted or replaced by path is still read to the end."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._offset = 0
        self._partial = b""

    @property
    def offset(self) -> int:
        """How far the file has been read."""
        return self._offset

    def rewind(self) -> None:
        """Read from the start again: the file was cut, and what is written after the cut
        lies before where the reading stood."""
        self._offset, self._partial = 0, b""

    def poll(self) -> list[dict[str, Any]]:
        chunks = []
        while True:
            chunk = os.pread(self._fd, 1 << 20, self._offset)
            if not chunk:
                break
            self._offset += len(chunk)
            chunks.append(chunk)
        if not chunks:
            return []
        data = self._partial + b"".join(chunks)
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return list(parse_events(data[:cut])) if cut else []


class OwnedLog:
    """The supervisor's hold on ``events.jsonl``: created once, kept open, and handed to every
    writer of the run as ``/proc/<supervisor>/fd/<n>``, the same file whatever happens to its
    name. A test, a fixture or ``git clean`` that deletes or replaces the file by path loses
    nothing: the run's events stay in the file we hold, and ``restore`` puts them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._identity = _identity(os.fstat(self.fd))
        self.tail = EventTail(self.fd)
        self.lost: str | None = None  # "deleted", "replaced" or "truncated", once seen
        self._head: bytes | None = None  # the file's first line, once it has one

    @property
    def writer_path(self) -> Path:
        """The path every writer of the run opens: our descriptor, where /proc has it."""
        proc = Path(f"/proc/{os.getpid()}/fd/{self.fd}")
        return proc if proc.exists() else self.path

    def check(self) -> str | None:
        """Newly seen loss of the file's name ("deleted" or "replaced") or of its content
        ("truncated": shorter than what was read, or no longer starting with its first line);
        None otherwise."""
        if self.lost is not None:
            return None
        self.lost = _name_lost(self.path, self._identity)
        if self.lost is None and self._cut():
            self.lost = "truncated"
            self.tail.rewind()  # the events written since the cut are still to be read
        return self.lost

    def _cut(self) -> bool:
        if os.fstat(self.fd).st_size < self.tail.offset:
            return True
        if self._head is None:
            start = os.pread(self.fd, 4096, 0)
            end = start.find(b"\n")
            if end >= 0:
                self._head = start[:end + 1]
            return False
        return os.pread(self.fd, len(self._head), 0) != self._head

    def repair_tear(self) -> None:
        """After a writer was killed: end a torn last line, so the next event is not glued to
        it (readers would lose both)."""
        size = os.fstat(self.fd).st_size
        if size and os.pread(self.fd, 1, size - 1) != b"\n":
            os.write(self.fd, b"\n")

    def read_all(self) -> bytes:
        return _read_fd(self.fd)

    def restore(self) -> None:
        """Put the run's events back under the file's name, if it lost it (a truncated file
        keeps its name; what was cut from it is gone)."""
        if self.lost in ("deleted", "replaced"):
            _put_back(self.path, self.read_all())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _name_lost(path: Path, identity: tuple[int, int]) -> str | None:
    """"deleted" or "replaced" when *path* no longer names the file of *identity*."""
    try:
        now = _identity(os.stat(path))
    except OSError:
        return "deleted"
    return "replaced" if now != identity else None


def _read_fd(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 22, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _put_back(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".restored")
    staging.write_bytes(data)
    staging.replace(path)
