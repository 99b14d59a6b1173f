"""``junit.xml`` from the results model: standard JUnit that CI systems read. Timeouts are failures
whose message starts with ``timeout``, with the hang dump in ``system-err``; tests the run never
reached are skipped with the reason. What tiergate itself decided is said in the ``type``
attribute (``timeout``, ``crash``, ``tiergate.not-run``), which JUnit readers show and otherwise
ignore; the suite property ``tiergate.types`` says they are set, and ``junit_in.py`` reads the file
back by them.

Written as text, one element per test, rather than through an XML tree: this runs at the end of
every ``pytest --tier`` run, and building a tree of every test cost more than the rest of the
reports together. Text and attribute values are escaped here, and characters XML 1.0 cannot carry
(control characters, lone surrogates) are written as ``\\xNN`` the way pytest's own JUnit does.
"""

from __future__ import annotations

import re
from pathlib import Path

from tiergate.results.model import Attempt, RunResult, TestResult

# The type of a <failure> tiergate decided: a test past its limit, a test whose process died.
TIMEOUT_TYPE = "timeout"  # the values earlier versions wrote: filters on them keep working
CRASH_TYPE = "crash"
NOT_RUN_TYPE = "tiergate.not-run"
# A suite property saying those types are set: its reader trusts them over the message.
MARK_PROPERTY = "tiergate.types"
_MARK = f'<properties><property name="{MARK_PROPERTY}" value="1" /></properties>'

# What XML 1.0 cannot carry (it allows tab, newline, carriage return, U+0020-U+D7FF,
# U+E000-U+FFFD and U+10000 up); each becomes \xNN.
_ILLEGAL_CHARACTERS = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_ILLEGAL = f"[{_ILLEGAL_CHARACTERS}]"
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTRIBUTE = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;",
     "\t": "&#09;"}
)
# What either step changes (an illegal character, one the table replaces), found by one scan in
# C: a translate looks every character up in its table (about 1.5 µs for a test's name), and
# nearly no name or text holds one of these. The text pattern compiles where first used (a
# test's output). A name is judged by a pattern of ASCII characters alone, compiled here: a
# class that reaches the surrogates costs re a 65,536-entry table to build (some 4 M
# instructions, more than the rest of this module), and a name that is not ASCII takes the
# full steps, right for any text.
_TEXT_UNSAFE = f"[&<>{_ILLEGAL_CHARACTERS}]"
_ATTRIBUTE_UNSAFE_ASCII = re.compile('[&<>"\x00-\x1f]')


def _legal(value: str) -> str:
    if value.isprintable():  # no control character, no surrogate
        return value
    return re.sub(_ILLEGAL, lambda m: f"\\x{ord(m.group()):02X}", value)


def _text(value: str) -> str:
    if not re.search(_TEXT_UNSAFE, value):
        return value
    return _legal(value).translate(_TEXT)


def _attribute(value: str) -> str:
    if value.isascii() and not _ATTRIBUTE_UNSAFE_ASCII.search(value):
        return value
    return _legal(value).translate(_ATTRIBUTE)


def dotted_module(path: str) -> str:
    """A node id's file as pytest's JUnit names it: ``tests/test_a.py`` → ``tests.test_a``."""
    dotted = path.replace("/", ".")
    return dotted[:-3] if dotted.endswith(".py") else dotted


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """pytest's JUnit class name and name of a node id, as ``mangle_test_address`` in
    _pytest/junitxml.py makes them: the file as a dotted module, then the names up to the
    parameter id, which is kept whole (it may hold ``::``, ``/``, ``.`` and ``[``):
    ``tests/test_a.py::TestX::test_y[a::b]`` → ``tests.test_a.TestX``, ``test_y[a::b]``. A node
    id that is a file (a module skipped or failed at collection) has no class name."""
    path, separator, tail = nodeid.partition("::")
    if not separator:
        return "", dotted_module(path)
    names, bracket, params = tail.partition("[")
    *classes, name = names.split("::")
    return ".".join([dotted_module(path), *classes]), name + bracket + params


class _Cases:
    """``<testcase>`` elements. What the tests of one module or class share (the escaped
    class name, the file attribute) is worked out once, not once per test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._classnames: dict[str, str] = {}
        self._files: dict[str, str] = {"": ""}

    def head(self, nodeid: str, duration: float) -> str:
        # split_nodeid, with the class name worked out once per module and class
        path, separator, tail = nodeid.partition("::")
        if separator:
            names, bracket, params = tail.partition("[")
            parent, _, name = names.rpartition("::")
            key = f"{path}::{parent}"
            classname = self._classnames.get(key)
            if classname is None:
                classname = self._classnames[key] = _attribute(split_nodeid(nodeid)[0])
            if bracket:
                name += bracket + params
            name = _attribute(name)
        else:
            classname, name = "", _attribute(dotted_module(path))
        return f'<testcase name="{name}" classname="{classname}" time="{duration:.3f}"'

    def case(self, test: TestResult) -> str:
        head = self.head(test.nodeid, test.duration)
        path = test.path or ""
        file = self._files.get(path)
        if file is None:
            file = self._files[path] = f' file="{_attribute(path)}"'
        head += f'{file} line="{test.line}"' if test.line else file
        outcome = test.outcome
        if (outcome == "passed" and not test.stdout and not test.stderr and not test.dump
                and not test.attempts):
            return head + " />"  # the common case
        message = test.message or outcome
        body = ""
        if outcome == "timeout":
            if not message.startswith("timeout"):
                message = f"timeout: {message}"
            body = _result("failure", message, TIMEOUT_TYPE, test.longrepr or message)
        elif outcome in ("failed", "xpassed"):
            kind = CRASH_TYPE if test.crashed else "failure"
            body = _result("failure", message, kind, test.longrepr or message)
        elif outcome == "error":
            body = _result("error", message, f"{test.phase or 'setup'} error",
                           test.longrepr or message)
        elif outcome == "skipped" and test.phase == "collect":
            # a module skipped at collection, as pytest's JUnit has it (its reason in the text)
            where = f"{test.path}:{test.line}: " if test.path and test.line else ""
            body = _result("skipped", "collection skipped", None, where + message)
        elif outcome in ("skipped", "xfailed"):
            kind = "pytest.xfail" if outcome == "xfailed" else "pytest.skip"
            body = _result("skipped", message, kind, None)
        if test.attempts:
            failures, errors = _attempts(test, self.folder)
            # Surefire's order: failure, rerun/flakyFailure..., skipped, error, rerun/flakyError...
            body = failures + body + errors if outcome == "error" else body + failures + errors
        if test.stdout:
            body += f"<system-out>{_text(test.stdout)}</system-out>"
        err = "\n".join(x for x in (test.stderr, _read_dump(self.folder, test.dump)) if x)
        if err:
            body += f"<system-err>{_text(err)}</system-err>"
        return f"{head}>{body}</testcase>" if body else f"{head} />"


def _attempts(test: TestResult, folder: Path) -> tuple[str, str]:
    """The earlier attempts of a test that was run again, as Maven Surefire writes them: each
    a ``<flakyFailure>`` (``flakyError``) of a test that then passed, else a ``<rerunFailure>``
    (``rerunError``), holding its traceback and its own output. Returned as the failures and
    the errors, which the schema places apart."""
    prefix = "flaky" if test.flaky else "rerun"
    failures: list[str] = []
    errors: list[str] = []
    for attempt in test.attempts:
        error = attempt.outcome == "error"
        tag = prefix + ("Error" if error else "Failure")
        (errors if error else failures).append(_attempt(tag, attempt, folder))
    return "".join(failures), "".join(errors)


def _attempt(tag: str, attempt: Attempt, folder: Path) -> str:
    message = attempt.message or attempt.outcome
    kind = {"timeout": TIMEOUT_TYPE, "error": f"{attempt.phase or 'setup'} error"}.get(
        attempt.outcome, "failure")
    body = f"<stackTrace>{_text(attempt.longrepr or message)}</stackTrace>"
    if attempt.stdout:
        body += f"<system-out>{_text(attempt.stdout)}</system-out>"
    err = "\n".join(x for x in (attempt.stderr, _read_dump(folder, attempt.dump)) if x)
    if err:
        body += f"<system-err>{_text(err)}</system-err>"
    return (f'<{tag} message="{_attribute(message)}" type="{_attribute(kind)}">{body}'
            f"</{tag}>")


def _result(tag: str, message: str, kind: str | None, text: str | None) -> str:
    attributes = f'message="{_attribute(message)}"'
    if kind is not None:
        attributes += f' type="{_attribute(kind)}"'
    if text is None:
        return f"<{tag} {attributes} />"
    return f"<{tag} {attributes}>{_text(text)}</{tag}>"


def write_junit(run: RunResult, path: Path, results_dir: Path | None = None) -> Path:
    writer = _Cases(results_dir or path.parent)
    cases = [writer.case(test) for test in run.tests.values()]
    why = "the tier's budget ran out" if run.budget_expired else "the run stopped first"
    skipped = _result("skipped", f"not run: {why}", NOT_RUN_TYPE, None)
    cases += [f"{writer.head(nodeid, 0.0)}>{skipped}</testcase>" for nodeid in run.not_run]
    counts = run.counts()  # the same outcome-to-element mapping as _case
    failures = counts["timeout"] + counts["failed"] + counts["xpassed"]
    skips = counts["skipped"] + counts["xfailed"] + counts["not_run"]
    suite_name = f"tiergate.{run.tier}" if run.tier else "tiergate"
    totals = (f'tests="{len(cases)}" errors="{counts["error"]}" failures="{failures}" '
              f'skipped="{skips}" time="{round(run.duration, 3)}"')
    document = "".join([
        "<?xml version='1.0' encoding='utf-8'?>\n",
        f'<testsuites name="tiergate" {totals}>',
        f'<testsuite name="{_attribute(suite_name)}" {totals}>',
        _MARK,
        *cases,
        "</testsuite></testsuites>\n",
    ])
    tmp = path.with_suffix(".xml.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)
    return path


def _read_dump(folder: Path, relative: str | None) -> str | None:
    if not relative:
        return None
    try:
        return (folder / relative).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
