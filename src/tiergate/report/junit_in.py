"""JUnit XML from any runner (pytest, nextest, jest-junit, surefire, go-junit-report) into the
results model, so those runs get the same summary, annotations and comment.

junitparser knows what the JUnit elements mean (results, skipped, system-out) and reads them for
us, one ``<testcase>`` at a time: the file is read with ``iterparse`` and each case is handed to
junitparser's ``TestCase`` and then dropped, so memory holds the results, not the document.
Measured with scripts/bench_report.py on a 100,000-testcase file (13 MiB): junitparser's
whole-document ``JUnitXml.fromfile`` reads it in 0.4 s at 86 MiB peak, this reader in 0.65 s at
63 MiB including the results model, and ``tiergate report`` end to end takes 0.8 s. Both are
fast enough; this one stays flat when runners put megabytes of output in every testcase."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from junitparser import Error, Failure, Skipped, TestCase

from tiergate.errors import InputError
from tiergate.junit import dotted_module
from tiergate.results import RunResult, TestResult

_ROOTS = ("testsuites", "testsuite")


def read_junit(path: Path) -> RunResult:
    run = RunResult(sources=[str(path)])
    stack: list[ET.Element] = []
    suite_files: list[str | None] = []
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            tag = _local(elem.tag)
            if event == "start":
                if not stack and tag not in _ROOTS:
                    raise InputError(f"{path}: not a readable JUnit file: root element is "
                                     f"<{tag[:40]}>, expected <testsuites> or <testsuite>")
                if tag == "testsuite":
                    suite_files.append(elem.get("file") or (suite_files[-1] if suite_files
                                                            else None))
                stack.append(elem)
                continue
            stack.pop()
            if tag == "testcase":
                result = _test_result(elem, suite_files[-1] if suite_files else None)
                run.tests[result.nodeid] = result
                if stack:
                    stack[-1].remove(elem)  # keep memory flat: the case is in the model now
            elif tag == "testsuite":
                suite_files.pop()
                if stack:
                    stack[-1].remove(elem)
    except ET.ParseError as exc:
        raise InputError(f"{path}: not a readable JUnit file: {exc}") from None
    except FileNotFoundError:
        raise InputError(f"{path}: not a readable JUnit file: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable JUnit file: {exc.__class__.__name__}") from None
    return run


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def nodeid_of(classname: str, name: str, file: str | None) -> str:
    """The test's id from its JUnit names. A pytest case whose file is known gets its pytest node
    id back (the inverse of ``tiergate.junit.split_nodeid``, so ``tests/a.py::TestX::test_y[p::q]``
    survives the round trip: class names hold no dots, the parameter id is kept whole in the
    name); any other case is ``classname::name``."""
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


def _test_result(elem: ET.Element, suite_file: str | None) -> TestResult:
    case = TestCase.fromelem(elem)  # type: ignore[no-untyped-call]
    classname = case.classname or ""
    name = case.name or "?"
    nodeid = nodeid_of(classname, name, elem.get("file") or suite_file)
    line = elem.get("line")
    outcome, message, longrepr, phase = "passed", None, None, None
    for result in case.result:
        text = (result.text or "").strip() or None
        msg = (result.message or "").strip() or (text.splitlines()[0] if text else None)
        if isinstance(result, Failure | Error):
            timeout = (msg or "").lower().startswith("timeout")
            outcome = "timeout" if timeout else ("failed" if isinstance(result, Failure)
                                                 else "error")
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
        nodeid=nodeid,
        path=elem.get("file") or suite_file,
        line=int(line) if line and line.isdigit() else None,
        outcome=outcome,
        duration=duration,
        phase=phase or ("call" if outcome in ("failed", "error", "timeout") else None),
        message=message,
        longrepr=longrepr,
        stdout=stdout,
        stderr=stderr,
    )
