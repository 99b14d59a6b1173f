"""Where a report's run comes from: results dirs (events.jsonl, else junit.xml) and JUnit files
of other runners, merged into one run.

Everything read here is untrusted. The fork-report workflow reads an artifact that a fork's pull
request produced, and anything else may have been written by the code under test. So every
record is checked field by field before the results model sees it (a field of the wrong type
makes the record malformed: it is skipped and counted, never a traceback), every name and text
is cut to a size, and every file is read within a limit:

============================================  ===========  ======================================
what                                          limit        past it
============================================  ===========  ======================================
``events.jsonl``                              256 MiB      the rest is not read
one event (one line of ``events.jsonl``)      64 MiB       skipped, counted
a JUnit file (``junit.xml``, ``--junit``)     256 MiB      the rest is not read (it is streamed:
                                                           memory does not grow with the file)
one XML tag or comment in a JUnit file        8 MiB        the rest of the file is not read
a text: message, traceback, captured output   64 KiB       its start and end are kept, with
                                                           "… N characters cut …" between them
a name: node id, path, tier, kind, function   4 KiB        cut, counted
tests in one input                            1,000,000    left out, counted
findings, samples, slow notes, leak checks    100,000      left out, counted
children of one JUnit ``<testcase>``          100          left out, counted
a process-tree dump read for a report         1 MiB        start and end kept (report/summary.py)
============================================  ===========  ======================================

Whatever was skipped or cut is said in one line per input (``RunResult.input_notes``), which the
summary and the terminal print. An input not read whole (a file past its limit, tests or findings
left out) also gets a ``run-error`` finding: a report that leaves out part of a run cannot be
green. A tier name is ``[A-Za-z0-9_.-]{1,64}``; any other is replaced with "(invalid tier name)"."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tiergate.errors import InputError, UsageError
from tiergate.protocol import events as ev
from tiergate.protocol import records as rec
from tiergate.protocol.events import parse_events
from tiergate.protocol.findings import Finding
from tiergate.protocol.layout import EVENTS_FILE, JUNIT_FILE, RESULTS_ROOT
from tiergate.results.model import OUTCOMES, RunResult, build, merge

DEFAULT_ROOT = Path(RESULTS_ROOT)

MiB = 2**20
EVENTS_LIMIT = 256 * MiB
RECORD_LIMIT = 64 * MiB
JUNIT_LIMIT = 256 * MiB
TAG_LIMIT = 8 * MiB  # one XML tag or comment (the parser holds it whole)
TEXT_LIMIT = 64 * 1024
NAME_LIMIT = 4096
MAX_TESTS = 1_000_000
MAX_FINDINGS = 100_000
MAX_SAMPLES = 100_000  # samples, and slow notes
MAX_CASE_CHILDREN = 100  # results and outputs of one JUnit <testcase> (the first one counts)

TIER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
INVALID_TIER = "(invalid tier name)"
_CHUNK = 8 * MiB
_LIMITS = {"tests": MAX_TESTS, "findings": MAX_FINDINGS, "samples": MAX_SAMPLES,
           "slow notes": MAX_SAMPLES, "leak checks": MAX_SAMPLES,
           "children of a testcase": MAX_CASE_CHILDREN}


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def size_text(n: int) -> str:
    return f"{n / MiB:,.0f} MiB" if n >= MiB else f"{n / 1024:,.0f} KiB"


@dataclasses.dataclass
class ReadNotes:
    """What reading one input skipped or cut."""

    source: str
    malformed: int = 0  # records with a field of the wrong type
    unreadable: int = 0  # lines that are no JSON event (torn by a kill, or damaged)
    unknown: int = 0  # events of a kind this version does not know (a newer writer's)
    oversized: int = 0  # events over RECORD_LIMIT
    invalid_tiers: int = 0
    texts_cut: int = 0
    names_cut: int = 0
    left_out: Counter[str] = dataclasses.field(default_factory=Counter)  # past MAX_*
    file_cut: tuple[int, int] | None = None  # (bytes read, bytes in the file)
    stopped: str | None = None  # why reading stopped before the end, past another limit

    @property
    def incomplete(self) -> bool:
        """Were results (not just text) left out: the run read is not the whole run."""
        return bool(self.file_cut or self.stopped or self.oversized or self.left_out["tests"]
                    or self.left_out["findings"])

    def sentence(self) -> str | None:
        parts: list[str] = []
        if self.file_cut:
            read, size = self.file_cut
            parts.append(f"cut: read the first {size_text(read)} of {size_text(size)} (the limit)"
                         if size > read else f"cut: read the first {size_text(read)} (the limit)")
        if self.stopped:
            parts.append(f"cut: {self.stopped}")
        if self.malformed:
            parts.append(f"skipped {_n(self.malformed, 'malformed record')}")
        if self.unreadable:
            parts.append(f"skipped {_n(self.unreadable, 'unreadable line')} (no JSON event: "
                         "torn by a kill, or damaged)")
        if self.unknown:
            parts.append(f"skipped {_n(self.unknown, 'event')} of a kind this version of "
                         "tiergate does not know (written by a newer one?)")
        if self.oversized:
            parts.append(f"skipped {_n(self.oversized, 'event')} over {size_text(RECORD_LIMIT)}")
        if self.invalid_tiers:
            parts.append(f"replaced {_n(self.invalid_tiers, 'invalid tier name')} with "
                         f"{INVALID_TIER!r}")
        for what, count in sorted(self.left_out.items()):
            if count:
                parts.append(f"left out {count:,} {what} past the limit of {_LIMITS[what]:,}")
        if self.texts_cut:
            parts.append(f"cut {_n(self.texts_cut, 'text')} over {size_text(TEXT_LIMIT)} (kept "
                         "the start and the end)")
        if self.names_cut:
            parts.append(f"cut {_n(self.names_cut, 'name')} over {size_text(NAME_LIMIT)}")
        return f"{self.source}: " + "; ".join(parts) if parts else None

    def apply(self, run: RunResult) -> RunResult:
        """Say in *run* what was skipped or cut; a run not read whole cannot be green."""
        sentence = self.sentence()
        if sentence:
            run.input_notes.append(sentence)
        if self.incomplete:
            run.findings.append(Finding(
                kind="run-error", test=None, severity="error",
                message=f"{self.source} was not read whole (see the input note): this "
                "report leaves out part of the run, so its verdict cannot be green"))
        return run


def valid_tier(name: object) -> bool:
    return isinstance(name, str) and TIER_NAME.fullmatch(name) is not None


def name_tier(run: RunResult, tier: str | None, option: str = "--tier") -> None:
    """*tier* (the workflow's, from the command line) names the run in headings, the check run
    and the comment, whatever the files say; a different name in the files is noted."""
    if tier is None:
        return
    if not valid_tier(tier):
        raise UsageError(f"{option} {tier[:80]!r} is not a tier name (1 to 64 letters, digits, "
                         "'-', '_', '.')")
    if run.tier is not None and run.tier != tier:
        said = "an invalid tier name" if run.tier == INVALID_TIER else f"tier {run.tier}"
        run.input_notes.append(f"the results say {said}; they are reported as tier {tier} "
                               f"({option})")
    run.tier = tier


# --- strings ---------------------------------------------------------------------------------

def _fix(text: str) -> str:
    """No NUL (a path with one breaks every file call), no lone surrogate (no UTF-8 for it)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def cut_text(text: str, notes: ReadNotes, limit: int = TEXT_LIMIT) -> str:
    """At most about *limit* characters: the start and, longer, the end, saying what was cut."""
    if len(text) <= limit:
        return _fix(text)
    notes.texts_cut += 1
    head = limit // 3
    tail = limit - head - 60
    return _fix(f"{text[:head]}\n… {len(text) - head - tail:,} characters cut …\n"
                f"{text[-tail:]}")


def cut_name(text: str, notes: ReadNotes) -> str:
    if len(text) <= NAME_LIMIT:
        return _fix(text)
    notes.names_cut += 1
    return _fix(text[: NAME_LIMIT - 1] + "…")


# --- checking event records --------------------------------------------------------------------

class _Malformed(ValueError):
    """A field of the wrong type: the record is skipped and counted."""


_Check = Callable[[Any, ReadNotes], Any]


def _name(value: Any, notes: ReadNotes) -> str:
    if not isinstance(value, str):
        raise _Malformed
    return cut_name(value, notes)


def _text(value: Any, notes: ReadNotes) -> str:
    if not isinstance(value, str):
        raise _Malformed
    return cut_text(value, notes)


_INT_BOUND = 2**63


def _int(value: Any, notes: ReadNotes) -> int:
    if type(value) is not int or not -_INT_BOUND < value < _INT_BOUND:
        raise _Malformed
    return value


def _number(value: Any, notes: ReadNotes) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or abs(value) > 1e15:
        raise _Malformed
    return float(value)


def _duration(value: Any, notes: ReadNotes) -> float:
    if type(value) not in (int, float):
        raise _Malformed
    return float(value) if 0.0 <= value < 1e9 else 0.0  # NaN, inf, negatives: no duration


def _outcome(value: Any, notes: ReadNotes) -> str:
    if value not in OUTCOMES:
        raise _Malformed
    return str(value)


def _tier(value: Any, notes: ReadNotes) -> str:
    if valid_tier(value):
        return str(value)
    notes.invalid_tiers += 1
    return INVALID_TIER


def _settings(value: Any, notes: ReadNotes) -> dict[str, Any]:
    """The tier's settings, scalars only (reports read allow-no-tests; nothing reads more)."""
    if not isinstance(value, dict):
        raise _Malformed
    out: dict[str, Any] = {}
    for key, item in list(value.items())[:200]:
        if isinstance(item, str):
            out[cut_name(key, notes)] = cut_name(item, notes)
        elif item is None or type(item) in (bool, int) or (
                type(item) is float and math.isfinite(item)):
            out[cut_name(key, notes)] = item
    return out


def _names(value: Any, notes: ReadNotes) -> list[str]:
    if not isinstance(value, list):
        raise _Malformed
    if len(value) > MAX_TESTS:
        notes.left_out["tests"] += len(value) - MAX_TESTS
        value = value[:MAX_TESTS]
    return [_name(item, notes) for item in value]


def _verdicts(value: Any, notes: ReadNotes) -> dict[str, str]:
    """A leak check's verdict per kind of leak: names only, a few of them."""
    if not isinstance(value, dict) or len(value) > 50:
        raise _Malformed
    return {_name(k, notes): _name(v, notes) for k, v in value.items()}


def _rss_per_test(value: Any, notes: ReadNotes) -> dict[str, int]:
    if not isinstance(value, dict):
        raise _Malformed
    return {_name(k, notes): int(_number(v, notes)) for k, v in value.items()}


class _Schema:
    """The fields of a record that are kept, each with its check; the required ones."""

    __slots__ = ("checks", "required")

    def __init__(self, *fields: tuple[str, _Check, bool]) -> None:
        self.checks = {name: check for name, check, _ in fields}
        self.required = tuple(name for name, _, required in fields if required)


def _culprit(value: Any, notes: ReadNotes) -> dict[str, Any]:
    return _fields(value, notes, _CULPRIT)


def _location(value: Any, notes: ReadNotes) -> dict[str, Any]:
    return _fields(value, notes, _LOCATION)


def _details(value: Any, notes: ReadNotes) -> dict[str, Any]:
    """A probe's own details: any JSON, kept when it is small, else left out (and counted)."""
    if not isinstance(value, dict):
        raise _Malformed
    if _json(value, notes) is None:  # too big: left out, and counted
        return {}
    return {cut_name(str(k), notes): _fix(v) if isinstance(v, str) else v
            for k, v in value.items()}


def _finding(value: Any, notes: ReadNotes) -> dict[str, Any]:
    data = _fields(value, notes, _FINDING)
    try:
        Finding.from_json(data)  # what the results model does with it: must not raise there
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _Malformed from None
    return data


def _fields(value: Any, notes: ReadNotes, schema: _Schema) -> dict[str, Any]:
    """The fields of *schema* in *value*, checked; _Malformed at the first of the wrong type.
    (Runs once per event: the common cases, a short name and an int, are checked inline.)"""
    if not isinstance(value, dict):
        raise _Malformed
    out: dict[str, Any] = {}
    checks = schema.checks
    for key, item in value.items():
        check = checks.get(key)
        if check is None or item is None:
            continue
        if check is _name:
            if (type(item) is str and len(item) <= NAME_LIMIT and item.isascii()
                    and "\x00" not in item):
                out[key] = item
                continue
        elif check is _number:
            if type(item) is float and -1e15 <= item <= 1e15:  # NaN and inf are not
                out[key] = item
                continue
        elif check is _int and type(item) is int and -_INT_BOUND < item < _INT_BOUND:
            out[key] = item
            continue
        out[key] = check(item, notes)
    for key in schema.required:
        if key not in out:
            raise _Malformed
    return out


_CULPRIT = _Schema(("path", _name, False), ("line", _int, False), ("function", _name, False),
                   ("reason", _text, False), ("pid", _int, False))
_LOCATION = _Schema(("path", _name, True), ("line", _int, False))
_FINDING = _Schema(
    ("kind", _name, True), ("test", _name, False), ("severity", _name, False),
    ("message", _text, False), ("location", _location, False), ("culprit", _culprit, False),
    ("dump", _name, False), ("details", _details, False),
)
def _json(value: Any, notes: ReadNotes) -> Any:
    """Any JSON no report reads field by field: kept when it is small, else left out (and
    counted)."""
    try:
        size = len(json.dumps(value, ensure_ascii=True))
    except (ValueError, TypeError, RecursionError):
        raise _Malformed from None
    if size > TEXT_LIMIT:
        notes.texts_cut += 1
        return None
    return value


def _flag(value: Any, notes: ReadNotes) -> bool:
    if type(value) is not bool:
        raise _Malformed
    return value


# How a value of each kind (protocol/records.py) is checked.
_CHECKS: dict[rec.Value, _Check] = {
    rec.NAME: _name, rec.TEXT: _text, rec.INT: _int, rec.NUMBER: _number,
    rec.DURATION: _duration, rec.OUTCOME: _outcome, rec.TIER: _tier, rec.SETTINGS: _settings,
    rec.NAMES: _names, rec.VERDICTS: _verdicts, rec.RSS_PER_TEST: _rss_per_test,
    rec.CULPRIT: _culprit, rec.FINDING: _finding, rec.JSON: _json, rec.FLAG: _flag,
}
# Per event kind, the fields of its record, each with its check; nothing else is kept. Which
# fields a kind requires is checked where every reader's events go, the results model's feed.
_EVENTS: dict[str, _Schema] = {
    kind: _Schema(*((name, _CHECKS[value], False)
                    for name, value in rec.fields_of(record).items() if name != "event"))
    for kind, record in rec.RECORDS.items()
}

_CAPPED = {ev.TEST_FINISH: ("tests", MAX_TESTS), ev.TEST_START: ("", MAX_TESTS),
           ev.FINDING: ("findings", MAX_FINDINGS), ev.SAMPLE: ("samples", MAX_SAMPLES),
           ev.SLOW: ("slow notes", MAX_SAMPLES), ev.LEAK_CHECK: ("leak checks", MAX_SAMPLES)}


class _Checker:
    def __init__(self, notes: ReadNotes) -> None:
        self.notes = notes
        self.seen: Counter[str] = Counter()
        self.events = 0
        self.run_start = False

    def check(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The record as the results model may read it, or None when it is left out."""
        self.events += 1
        kind = record.get("event")
        if kind == ev.RUN_START:
            self.run_start = True
        if not isinstance(kind, str):
            self.notes.malformed += 1
            return None
        fields = _EVENTS.get(kind)
        if fields is None:  # a newer writer's: the results model counts it
            return {"event": cut_name(kind, self.notes)}
        capped = _CAPPED.get(kind)
        if capped is not None:
            self.seen[kind] += 1
            if self.seen[kind] > capped[1]:
                if capped[0]:
                    self.notes.left_out[capped[0]] += 1
                return None
        try:
            data = _fields(record, self.notes, fields)
        except (_Malformed, RecursionError):
            self.notes.malformed += 1
            return None
        data["event"] = kind
        return data


def read_event_records(path: Path, notes: ReadNotes, checker: _Checker | None = None
                       ) -> Iterator[dict[str, Any]]:
    """The checked events of a log, streamed: at most EVENTS_LIMIT bytes are read, a chunk at a
    time, and a line over RECORD_LIMIT is skipped without being held."""
    checker = checker or _Checker(notes)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        read = 0
        pending = bytearray()  # the start of a line that goes on in the next chunk
        skipping = False  # inside a line over RECORD_LIMIT
        while read < EVENTS_LIMIT:
            chunk = handle.read(min(_CHUNK, EVENTS_LIMIT - read))
            if not chunk:
                break
            read += len(chunk)
            if skipping:
                at = chunk.find(b"\n")
                if at < 0:
                    continue
                chunk, skipping = chunk[at + 1:], False
            end = chunk.rfind(b"\n")
            if end < 0:
                pending += chunk
                if len(pending) > RECORD_LIMIT:
                    notes.oversized += 1
                    pending, skipping = bytearray(), True
                continue
            whole = bytes(pending) + chunk[: end + 1]
            pending = bytearray(chunk[end + 1:])
            yield from _checked(whole, notes, checker)
        if read >= EVENTS_LIMIT and handle.read(1):
            notes.file_cut = (read, max(size, read + 1))


def _checked(data: bytes, notes: ReadNotes, checker: _Checker) -> Iterator[dict[str, Any]]:
    records = list(parse_events(data))
    lines = data.count(b"\n")
    if len(records) != lines:
        whole = sum(1 for line in data.split(b"\n") if line.strip())
        notes.unreadable += max(0, whole - len(records))
    for record in records:
        checked = checker.check(record)
        if checked is not None:
            yield checked


# --- results dirs and runs ---------------------------------------------------------------------

def default_results_dirs(root: Path = DEFAULT_ROOT) -> list[Path]:
    """Every tier's results dir under .tiergate/ (what `tiergate run` writes by default)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / EVENTS_FILE).is_file())


def load_results(results_dir: Path) -> RunResult:
    from tiergate.results.junit_in import read_junit  # junit_in imports this module's limits

    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: no such results directory")
    if (results_dir / EVENTS_FILE).is_file():
        return load_events(results_dir)
    if (results_dir / JUNIT_FILE).is_file():
        run = read_junit(results_dir / JUNIT_FILE)
        run.sources.insert(0, str(results_dir))
        return run
    raise InputError(f"{results_dir}: not a results directory (no {EVENTS_FILE} or {JUNIT_FILE})")


def load_events(results_dir: Path) -> RunResult:
    """The run in a results dir's event log. A log without a single event, or without the
    ``run-start`` every run writes first, is no run at all: reading it as one would report an
    empty run, and an empty run must never look like a pass."""
    path = results_dir / EVENTS_FILE
    notes = ReadNotes(str(path))
    checker = _Checker(notes)
    try:
        run = build(read_event_records(path, notes, checker))
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    notes.malformed += run.malformed_events  # (missing a field their kind requires)
    notes.unknown += run.unknown_events
    if not checker.run_start:
        events = checker.events
        what = (f"holds {events:,} events but no {ev.RUN_START} event: the start of the run "
                "is missing (the file was emptied or replaced while the run went on)"
                if events else
                "holds no tiergate events: the run that wrote it died before it started, or the "
                "file was emptied or replaced")
        raise InputError(f"{path}: {what}")
    run.sources.append(str(results_dir))
    return notes.apply(run)


def load_run(results_dirs: Sequence[Path], junit_files: Sequence[Path] = (),
             expect_shards: int | None = None) -> RunResult:
    """The run the inputs amount to, shards merged; with *expect_shards*, each of shards 1 to N
    must be among the results dirs, once (results/shardgate.py: else error findings)."""
    from tiergate.results.junit_in import read_junit
    from tiergate.results.shardgate import shard_findings

    dirs = list(results_dirs)
    if not dirs and not junit_files:
        dirs = default_results_dirs()
        if not dirs:
            raise UsageError("no results to report: pass --results-dir DIR or --junit FILE "
                             f"(nothing found under {DEFAULT_ROOT}/)")
    runs = [load_results(d) for d in dirs] + [read_junit(f) for f in junit_files]
    gate = shard_findings(runs, expect_shards) if expect_shards is not None else []
    if len(runs) == 1:
        runs[0].findings += gate
        return runs[0]
    merged = merge(runs)
    merged.input_notes = [note for run in runs for note in run.input_notes]
    merged.findings += gate
    return merged

