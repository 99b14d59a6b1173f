"""JUnit XML from any runner (pytest, nextest, jest-junit, surefire, go-junit-report) into the
results model, so those runs get the same summary, annotations and comment.

junitparser knows what the JUnit elements mean (results, skipped, system-out) and reads them for
us, one ``<testcase>`` at a time. The file itself is untrusted and may be huge, so it is streamed
through expat a chunk at a time, up to JUNIT_LIMIT bytes (report/inputs.py has every limit):
only the ``<testcase>`` being read is built as elements, and the text of each of its children
(a failure's traceback, system-out) keeps its first and last characters while it streams in, at
most TEXT_LIMIT in all, so a single 500 MB failure text costs no more memory than a short one.
Each case is handed to junitparser's ``TestCase`` and then dropped. A file that declares XML
entities is refused: JUnit never needs them, and entity expansion is how XML bombs work.

Measured with scripts/bench_report.py on 2 shared, busy cores (load 10): a 100,000-testcase file
(13 MiB) is read in 2.6 s and reported end to end in 2.8 s at 79 MiB peak (junitparser's
whole-document ``JUnitXml.fromfile``: 1.6 s at 86 MiB; the iterparse reader this one replaced
took about 10 % less CPU). A file whose one failure text is 500 MB is read up to the 256 MiB
limit in 2.7 s at 26 MiB peak; the iterparse reader, which builds each element's whole text,
took 6.4 s and 1.36 GiB on it."""

from __future__ import annotations

import ast
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.parsers import expat

from junitparser import Error, Failure, Skipped, TestCase

from tiergate.errors import InputError
from tiergate.protocol.records import Outcome
from tiergate.results.inputs import (
    JUNIT_LIMIT,
    MAX_CASE_CHILDREN,
    MAX_TESTS,
    NAME_LIMIT,
    TAG_LIMIT,
    TEXT_LIMIT,
    ReadNotes,
    cut_name,
    cut_text,
    size_text,
)
from tiergate.results.junit_out import MARK_PROPERTY, TIMEOUT_TYPE, dotted_module
from tiergate.results.model import Attempt, RunResult, TestResult

_ROOTS = ("testsuites", "testsuite")
_CHUNK = 1 << 20
# The children of a <testcase> that a report reads (properties and the like are not kept).
_RESULTS = frozenset({"failure", "error", "skipped"})
# Maven Surefire's earlier attempts of a test run again, each with these parts.
_ATTEMPTS = frozenset({"flakyFailure", "flakyError", "rerunFailure", "rerunError"})
_ATTEMPT_PARTS = frozenset({"stackTrace", "system-out", "system-err"})
_KEPT = _RESULTS | _ATTEMPTS | {"system-out", "system-err"}
_TEXT_ATTRIBUTES = frozenset({"message"})  # cut to TEXT_LIMIT; every other one is a name


def read_junit(path: Path) -> RunResult:
    run = RunResult(sources=[str(path)])
    notes = ReadNotes(str(path))
    reader = _Reader(path, run, notes)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            read = stalled = 0
            chunk_size = _CHUNK
            while True:
                chunk = handle.read(min(chunk_size, JUNIT_LIMIT - read))
                if not chunk:
                    reader.parser.Parse(b"", True)
                    break
                read += len(chunk)
                events = reader.events
                reader.parser.Parse(chunk, False)
                if reader.events == events:
                    # Inside one token (a tag with a huge attribute, a comment): expat holds
                    # it whole and scans it again from its start on every call, so feed it
                    # more at once, and stop at TAG_LIMIT.
                    stalled += len(chunk)
                    chunk_size *= 2
                    if stalled > TAG_LIMIT:
                        notes.stopped = (f"stopped at byte {read - stalled:,}: a single XML "
                                         f"tag or comment over {size_text(TAG_LIMIT)}")
                        reader.close_open()
                        break
                else:
                    stalled, chunk_size = 0, _CHUNK
                if read >= JUNIT_LIMIT and handle.read(1):
                    notes.file_cut = (read, max(size, read + 1))
                    reader.close_open()  # the case being read is kept with its text so far
                    break
    except expat.ExpatError as exc:
        raise InputError(f"{path}: not a readable JUnit file: "
                         f"{expat.ErrorString(exc.code)}: line {exc.lineno}, "
                         f"column {exc.offset}") from None
    except FileNotFoundError:
        raise InputError(f"{path}: not a readable JUnit file: no such file") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise InputError(f"{path}: not a readable JUnit file: {exc.__class__.__name__}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return notes.apply(run)


class _Text:
    """A text that streams in, kept as its first third and its last two thirds of *limit*."""

    __slots__ = ("head", "head_len", "keep_head", "keep_tail", "size", "tail", "tail_len")

    def __init__(self, limit: int = TEXT_LIMIT) -> None:
        self.keep_head = limit // 3
        self.keep_tail = limit - self.keep_head - 60
        self.head: list[str] = []
        self.tail: list[str] = []
        self.head_len = self.tail_len = self.size = 0

    def add(self, text: str) -> None:
        self.size += len(text)
        room = self.keep_head - self.head_len
        if room > 0:
            part = text[:room]
            self.head.append(part)
            self.head_len += len(part)
            text = text[room:]
            if not text:
                return
        self.tail.append(text)
        self.tail_len += len(text)
        if self.tail_len > 2 * self.keep_tail:
            kept = "".join(self.tail)[-self.keep_tail:]
            self.tail, self.tail_len = [kept], len(kept)

    def value(self, notes: ReadNotes) -> str:
        head, tail = "".join(self.head), "".join(self.tail)
        if self.size == len(head) + len(tail):
            return cut_text(head + tail, notes)
        notes.texts_cut += 1
        tail = tail[-self.keep_tail:]
        return cut_text(f"{head}\n… {self.size - len(head) - len(tail):,} characters cut …\n"
                        f"{tail}", notes, self.size)


class _Reader:
    """expat's handlers: the suites' files, and the <testcase> being read as elements."""

    def __init__(self, path: Path, run: RunResult, notes: ReadNotes) -> None:
        self.path, self.run, self.notes = path, run, notes
        parser = self.parser = expat.ParserCreate(namespace_separator="}")
        parser.buffer_text = True
        parser.buffer_size = 1 << 20
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.data
        parser.EntityDeclHandler = self.entity
        self.depth = 0
        self.open: list[str] = []  # the local names of the open elements
        self.suite_files: list[str | None] = []
        self.case: ET.Element | None = None
        self.case_depth = 0
        self.child: ET.Element | None = None
        self.text: _Text | None = None
        self.part: ET.Element | None = None  # a part of an attempt (its stackTrace...)
        self.cases = 0
        self.marked = False  # written by a tiergate that marks its timeouts by type
        self.events = 0  # handler calls: none in a whole chunk means one token spans it

    def entity(self, *_: Any) -> None:
        raise InputError(f"{self.path}: not a readable JUnit file: it declares XML entities, "
                         "which JUnit never needs")

    def _attrs(self, attrs: dict[str, str]) -> dict[str, str]:
        if sum(map(len, attrs.values())) + sum(map(len, attrs)) <= NAME_LIMIT:
            return attrs  # expat's strings hold no NUL and no lone surrogate: nothing to fix
        return {cut_name(_local(k), self.notes):
                cut_text(v, self.notes) if k in _TEXT_ATTRIBUTES else cut_name(v, self.notes)
                for k, v in attrs.items()}

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.events += 1
        local = _local(tag) if "}" in tag else tag
        if not self.open and local not in _ROOTS:
            raise InputError(f"{self.path}: not a readable JUnit file: root element is "
                             f"<{local[:40]}>, expected <testsuites> or <testsuite>")
        self.depth += 1
        self.open.append(local)
        if self.case is None:
            if local == "property" and attrs.get("name") == MARK_PROPERTY:
                self.marked = True
            elif local == "testsuite":
                file = attrs.get("file")
                self.suite_files.append(cut_name(file, self.notes) if file else
                                        (self.suite_files[-1] if self.suite_files else None))
            elif local == "testcase":
                self.case, self.case_depth = ET.Element("testcase", self._attrs(attrs)), self.depth
        elif self.depth == self.case_depth + 1 and local in _KEPT:
            if len(self.case) < MAX_CASE_CHILDREN:
                self.child = ET.SubElement(self.case, local, self._attrs(attrs))
                self.text = None if local in _ATTEMPTS else _Text()
            else:
                self.notes.left_out["children of a testcase"] += 1
        elif (self.depth == self.case_depth + 2 and self.child is not None
              and self.child.tag in _ATTEMPTS and local in _ATTEMPT_PARTS):
            self.part = ET.SubElement(self.child, local)
            self.text = _Text()

    def data(self, text: str) -> None:
        self.events += 1
        if self.text is not None and self.depth == self.case_depth + (
                1 if self.part is None else 2):
            self.text.add(text)

    def end(self, tag: str) -> None:
        self.events += 1
        local = self.open.pop()
        case = self.case
        if case is not None:
            if self.depth == self.case_depth + 2 and self.part is not None:
                assert self.text is not None
                self.part.text = self.text.value(self.notes)
                self.part = self.text = None
            elif self.depth == self.case_depth + 1 and self.child is not None:
                if self.text is not None:
                    self.child.text = self.text.value(self.notes)
                self.child = self.text = None
            elif self.depth == self.case_depth:
                self.case = None
                self.cases += 1
                if self.cases > MAX_TESTS:
                    self.notes.left_out["tests"] += 1
                else:
                    result = _test_result(case, self.suite_files[-1] if self.suite_files
                                          else None, self.marked)
                    self.run.tests[result.nodeid] = result
        elif local == "testsuite":
            self.suite_files.pop()
        self.depth -= 1

    def close_open(self) -> None:
        """End every open element, as if the file ended here. A test case cut before its
        result was read is an error, never a pass."""
        if self.case is not None and not any(_local(c.tag) in _RESULTS for c in self.case):
            ET.SubElement(self.case, "error", {"message": "cut: the file was not read to the end "
                                               "of this test case (see the input note)"})
        while self.open:
            self.end(self.open[-1])


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def nodeid_of(classname: str, name: str, file: str | None) -> str:
    """The test's id from its JUnit names. A pytest case whose file is known gets its pytest node
    id back (the inverse of ``tiergate.results.junit_out.split_nodeid``, so
    ``tests/a.py::TestX::test_y[p::q]`` survives the round trip: class names hold no dots, the
    parameter id is kept whole in the name); any other case is ``classname::name``."""
    if file:
        module = dotted_module(file)
        if not classname and name == module:  # a module's own entry (skipped at collection)
            return file
        if classname == module:
            return f"{file}::{name}"
        if classname.startswith(module + "."):
            classes = classname[len(module) + 1:].split(".")
            return "::".join([file, *classes, name])
    return f"{classname}::{name}" if classname else name


def _collection_skip_reason(text: str | None) -> str | None:
    """The reason in a ``collection skipped`` element: tiergate writes ``path:line: reason``,
    pytest the report's tuple, ``('path', line, 'Skipped: reason')``."""
    if not text:
        return None
    if text.startswith("(") and len(text) < 100_000:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(value, tuple) and len(value) == 3:
            return str(value[2]).removeprefix("Skipped: ")
        return text
    match = re.match(r"[^\n]*?:\d+: (.*)", text, re.DOTALL)
    return match.group(1) if match else text


def _timed_out(kind: str | None, message: str | None, marked: bool) -> bool:
    """A failure tiergate's JUnit marks as a timeout by its type (a test failing with a
    TimeoutError is none); in a file without the marks (an older tiergate's, another runner's),
    one whose message starts with "timeout"."""
    if marked:
        return kind == TIMEOUT_TYPE
    return (message or "").lower().startswith("timeout")


def _attempts_of(elem: ET.Element, marked: bool) -> list[Attempt]:
    """The earlier attempts Surefire's ``flakyFailure``/``rerunFailure`` (and ``...Error``)
    elements record, in the order written."""
    attempts: list[Attempt] = []
    for child in elem:
        if child.tag not in _ATTEMPTS:
            continue
        parts = {part.tag: part.text for part in child}
        trace = (parts.get("stackTrace") or "").strip() or None
        message = (child.get("message") or "").strip() or (
            trace.splitlines()[0] if trace else None)
        outcome: Outcome = "error" if child.tag.endswith("Error") else (
            "timeout" if _timed_out(child.get("type"), message, marked) else "failed")
        attempts.append(Attempt(
            number=len(attempts) + 1, outcome=outcome, message=message, longrepr=trace,
            stdout=parts.get("system-out"), stderr=parts.get("system-err")))
    return attempts


def _test_result(elem: ET.Element, suite_file: str | None, marked: bool) -> TestResult:
    case = TestCase.fromelem(elem)  # type: ignore[no-untyped-call]
    classname = case.classname or ""
    name = case.name or "?"
    nodeid = nodeid_of(classname, name, elem.get("file") or suite_file)
    line = elem.get("line")
    outcome: Outcome = "passed"
    message, longrepr, phase = None, None, None
    for result in case.result:
        text = (result.text or "").strip() or None
        msg = (result.message or "").strip() or (text.splitlines()[0] if text else None)
        if isinstance(result, Failure | Error):
            outcome = "timeout" if _timed_out(result.type, msg, marked) else (
                "failed" if isinstance(result, Failure) else "error")
            message, longrepr = msg, text or msg
            if msg == "collection failure":  # pytest's JUnit: the module did not import
                phase = "collect"
            break
        if isinstance(result, Skipped):
            xfail = (result.type or "").endswith("xfail") or (msg or "").startswith("xfail")
            outcome, message = ("xfailed" if xfail else "skipped"), msg
            if msg == "collection skipped":  # a module skipped at collection
                phase, message = "collect", _collection_skip_reason(text) or msg
    stdout, stderr = case.system_out, case.system_err
    if outcome in ("passed", "skipped", "xfailed"):  # no report shows their output: drop it
        stdout = stderr = None
    if outcome == "timeout" and stderr:  # tiergate's JUnit puts the hang dump in system-err
        longrepr = f"{longrepr or ''}\n\n{stderr}".strip()
    try:
        duration = float(elem.get("time") or 0.0)
    except ValueError:
        duration = 0.0
    if not 0.0 <= duration < 1e9:  # NaN, inf and negatives (NaN fails every comparison)
        duration = 0.0
    return TestResult(
        attempts=_attempts_of(elem, marked),
        nodeid=nodeid,
        path=elem.get("file") or suite_file,
        line=int(line) if line and line.isascii() and line.isdigit() and len(line) < 10
        else None,
        outcome=outcome,
        duration=duration,
        phase=phase or ("call" if outcome in ("failed", "error", "timeout") else None),
        message=message,
        longrepr=longrepr,
        stdout=stdout,
        stderr=stderr,
    )
