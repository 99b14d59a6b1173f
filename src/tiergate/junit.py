"""``junit.xml`` from the results model: standard JUnit that CI systems read. Timeouts are failures
whose message starts with ``timeout``, with the hang dump in ``system-err``; tests the run never
reached are skipped with the reason."""

from __future__ import annotations

from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from tiergate.results import RunResult, TestResult


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """pytest's JUnit naming: ``tests/test_a.py::TestX::test_y`` → tests.test_a.TestX, test_y."""
    parts = nodeid.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".").replace("\\", ".")
    return ".".join([module, *parts[1:-1]]), parts[-1] if len(parts) > 1 else parts[0]


def _case(test: TestResult, dump_text: str | None) -> TestCase:
    classname, name = split_nodeid(test.nodeid)
    case = TestCase(name, classname, round(test.duration, 3))
    if test.path:
        case._elem.set("file", test.path)
    if test.line:
        case._elem.set("line", str(test.line))
    message = test.message or test.outcome
    if test.outcome == "timeout":
        if not message.startswith("timeout"):
            message = f"timeout: {message}"
        failure = Failure(message, "timeout")
        failure.text = test.longrepr or message
        case.result = [failure]
    elif test.outcome in ("failed", "xpassed"):
        failure = Failure(message, "crash" if message.startswith("crash") else "failure")
        failure.text = test.longrepr or message
        case.result = [failure]
    elif test.outcome == "error":
        error = Error(message, f"{test.phase or 'setup'} error")
        error.text = test.longrepr or message
        case.result = [error]
    elif test.outcome in ("skipped", "xfailed"):
        case.result = [
            Skipped(message, "pytest.xfail" if test.outcome == "xfailed" else "pytest.skip")
        ]
    if test.stdout:
        case.system_out = test.stdout
    err = "\n".join(x for x in (test.stderr, dump_text) if x)
    if err:
        case.system_err = err
    return case


def write_junit(run: RunResult, path: Path, results_dir: Path | None = None) -> Path:
    suite = TestSuite(f"tiergate.{run.tier}" if run.tier else "tiergate")
    folder = results_dir or path.parent
    cases = [_case(test, _read_dump(folder, test.dump)) for test in run.tests.values()]
    why = "the tier's budget ran out" if run.budget_expired else "the run stopped first"
    for nodeid in run.not_run:
        classname, name = split_nodeid(nodeid)
        case = TestCase(name, classname, 0.0)
        case.result = [Skipped(f"not run: {why}", "tiergate.not-run")]
        cases.append(case)
    # add_testcases counts the suite once; add_testcase per case recounts it each time (O(n²)).
    suite.add_testcases(cases)
    suite.time = round(run.duration, 3)
    xml = JUnitXml("tiergate")
    xml.add_testsuite(suite)
    tmp = path.with_suffix(".xml.tmp")
    xml.write(str(tmp), pretty=False)
    tmp.replace(path)
    return path


def _read_dump(folder: Path, relative: str | None) -> str | None:
    if not relative:
        return None
    try:
        return (folder / relative).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
