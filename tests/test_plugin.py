"""The pytest plugin, through pytester: inert by default, a tier's selection and limits with --tier,
and an event stream that says what happened to every test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SUITE = """
import time, pytest

def test_ok():
    pass

def test_fails():
    assert 1 == 2, "numbers differ"

@pytest.mark.integration
def test_needs_db():
    pass

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False

def test_sleeps_past_limit():
    time.sleep(30)

def test_after_the_hang():
    pass
"""


def events(pytester: pytest.Pytester, tier: str = "fast") -> list[dict[str, Any]]:
    path = pytester.path / ".tiergate" / tier / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def finishes(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    return {e["nodeid"].split("::")[-1]: e for e in events(pytester) if e["event"] == "test-finish"}


def test_plain_pytest_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_a(): pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert not (pytester.path / ".tiergate").exists()
    # pytest names every installed plugin in its header; nothing else may mention tiergate
    lines = [ln for ln in result.stdout.lines if not ln.startswith("plugins:")]
    assert not any("tiergate" in ln or "tier" in ln for ln in lines)


def test_plain_pytest_loads_only_the_entry_point(pytester: pytest.Pytester) -> None:
    # Every pytest run of a project with tiergate installed imports the entry point: it must
    # not cost that run the tier machinery's imports.
    pytester.makeconftest(
        "import sys\n"
        "def pytest_sessionfinish(session):\n"
        "    names = sorted(m for m in sys.modules if m.startswith('tiergate'))\n"
        "    print('LOADED', ' '.join(names))\n"
    )
    pytester.makepyfile(test_x="def test_a(): pass\n")
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*LOADED tiergate tiergate.plugin"])


def test_the_tier_machinery_is_not_loaded_by_the_assertion_rewriter(
    pytester: pytest.Pytester,
) -> None:
    """pytest's rewriter loads each module it marks with a slow marshal.load (about 170 M
    instructions for tiergate's): the plugin opts its own modules out, and the suite's tests
    keep their rewritten asserts."""
    pytester.makeconftest(
        "import sys\n"
        "def pytest_sessionfinish(session):\n"
        "    by = {type(m.__loader__).__name__ for n, m in sys.modules.items()\n"
        "          if n.startswith('tiergate.') and n != 'tiergate.plugin'}\n"
        "    print('LOADERS', ' '.join(sorted(by)))\n"
    )
    pytester.makepyfile(test_x="def test_a():\n    a, b = 1, 2\n    assert a == b\n")
    result = pytester.runpytest_subprocess("-s", "--tier", "fast")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*LOADERS SourceFileLoader", "*assert 1 == 2*"])


def test_disabled_with_no_tiergate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_a(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:tiergate", "--tier", "fast")
    assert result.ret == 4  # --tier is not an option when the plugin is off
    assert "unrecognized arguments: --tier" in result.stderr.str()


def test_tier_selects_limits_and_records(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makepyprojecttoml('[tool.tiergate.tiers.fast]\ntest-timeout = "1s"\n')
    result = pytester.runpytest_subprocess("--tier", "fast")
    # the integration test is not in the fast tier; the hang fails as a timeout and the run goes on
    result.assert_outcomes(passed=2, failed=2, skipped=1, xfailed=1, deselected=1)
    done = finishes(pytester)
    assert "test_needs_db" not in done
    assert done["test_ok"]["outcome"] == "passed"
    assert done["test_fails"]["outcome"] == "failed"
    assert done["test_fails"]["message"] == "AssertionError: numbers differ"
    assert done["test_skipped"]["outcome"] == "skipped"
    assert done["test_skipped"]["message"] == "not today"
    assert done["test_known_bug"]["outcome"] == "xfailed"
    assert done["test_sleeps_past_limit"]["outcome"] == "timeout"
    assert done["test_sleeps_past_limit"]["message"].startswith("timeout: ran past its 1s limit")
    assert done["test_after_the_hang"]["outcome"] == "passed"
    for event in done.values():
        assert event["path"] == "test_suite.py" and event["line"] > 0 and event["pid"] > 0
    assert {e["timeout"] for e in done.values()} == {1.0}
    # no one follows a plain pytest --tier run live: its tests' starts are not written
    assert not [e for e in events(pytester) if e["event"] == "test-start"]


def test_a_passing_test_that_prints_keeps_its_output(pytester: pytest.Pytester) -> None:
    # A quiet pass is one short line; a pass with captured output takes the full record.
    pytester.makepyfile(
        test_out="import sys\n"
        "def test_prints():\n    print('hello'); sys.stderr.write('warned')\n"
        "def test_quiet(): pass\n"
    )
    pytester.runpytest_subprocess("--tier", "fast").assert_outcomes(passed=2)
    done = {e["nodeid"].split("::")[1]: e for e in events(pytester)
            if e["event"] == "test-finish"}
    assert done["test_prints"]["outcome"] == "passed"
    assert (done["test_prints"]["stdout"], done["test_prints"]["stderr"]) == ("hello\n", "warned")
    assert done["test_quiet"]["outcome"] == "passed" and "stdout" not in done["test_quiet"]


def test_reports_are_written_without_the_supervisor(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makepyprojecttoml('[tool.tiergate.tiers.fast]\ntest-timeout = "1s"\n')
    pytester.runpytest_subprocess("--tier", "fast")
    results = pytester.path / ".tiergate" / "fast"
    findings = json.loads((results / "findings.json").read_text())
    assert findings["schema"] == 1 and findings["tier"] == "fast"
    assert findings["outcome"] == "failed"
    assert findings["counts"]["timeout"] == 1 and findings["counts"]["passed"] == 2
    assert [f["kind"] for f in findings["findings"]] == ["timeout"]
    junit = (results / "junit.xml").read_text()
    assert 'type="timeout"' in junit and 'message="timeout: ran past its 1s limit' in junit


def test_timeout_marker_wins_over_the_tier(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
        import time, pytest
        @pytest.mark.timeout(0.5)
        def test_short():
            time.sleep(5)
    """
    )
    result = pytester.runpytest_subprocess("--tier", "fast")
    result.assert_outcomes(failed=1)
    assert finishes(pytester)["test_short"]["message"].startswith("timeout: ran past its 0.5s")


def test_the_closest_timeout_marker_applies_as_pytest_resolves_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_x="""
        import pytest
        pytestmark = pytest.mark.timeout(30)

        def test_module_mark(): pass

        @pytest.mark.timeout(0)
        class TestUnlimited:
            def test_class_mark(self): pass

            @pytest.mark.timeout(7)
            def test_own_mark(self): pass
    """,
        test_y="def test_tier_limit(): pass\n",
    )
    result = pytester.runpytest_subprocess("--tier", "fast")
    result.assert_outcomes(passed=4)
    limits = {name: event["timeout"] for name, event in finishes(pytester).items()}
    assert limits == {"test_module_mark": 30.0, "test_class_mark": None, "test_own_mark": 7.0,
                      "test_tier_limit": 60.0}
    result = pytester.runpytest_subprocess("--tier", "fast", "--timeout", "9")
    assert finishes(pytester)["test_tier_limit"]["timeout"] == 9.0


def test_user_marker_expression_narrows_the_tier(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
        import pytest
        @pytest.mark.db
        def test_db(): pass
        def test_plain(): pass
        @pytest.mark.slow
        def test_slow(): pass
    """
    )
    result = pytester.runpytest_subprocess("--tier", "fast", "-m", "not db")
    result.assert_outcomes(passed=1, deselected=2)


def test_tier_paths(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.tiergate.tiers.fast]\npaths = ["unit"]\n')
    pytester.mkpydir("unit").joinpath("test_u.py").write_text("def test_u(): pass\n")
    pytester.mkpydir("other").joinpath("test_o.py").write_text("def test_o(): pass\n")
    result = pytester.runpytest_subprocess("--tier", "fast")
    result.assert_outcomes(passed=1, deselected=1)


def test_bad_tier_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_a(): pass\n")
    result = pytester.runpytest_subprocess("--tier", "nope")
    assert result.ret == 4
    assert "unknown tier 'nope'" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_setup_and_teardown_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
        import pytest
        @pytest.fixture
        def broken():
            raise RuntimeError("no database")
        @pytest.fixture
        def bad_teardown():
            yield
            raise RuntimeError("cleanup failed")
        def test_setup(broken): pass
        def test_teardown(bad_teardown): pass
    """
    )
    pytester.runpytest_subprocess("--tier", "fast")
    done = finishes(pytester)
    assert done["test_setup"]["outcome"] == "error" and done["test_setup"]["phase"] == "setup"
    assert done["test_teardown"]["outcome"] == "error"
    assert done["test_teardown"]["phase"] == "teardown"


def test_collection_error_is_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="import nonexistent_module_xyz\n", test_y="def test_y(): pass\n")
    pytester.runpytest_subprocess("--tier", "fast")
    done = [e for e in events(pytester) if e["event"] == "test-finish"]
    errors = [e for e in done if e["outcome"] == "error"]
    assert errors and errors[0]["phase"] == "collect"
    assert "nonexistent_module_xyz" in errors[0]["longrepr"]


def test_xdist_workers_write_their_own_events(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="\n".join(f"def test_{i}(): pass" for i in range(8)))
    result = pytester.runpytest_subprocess("--tier", "fast", "-n", "2")
    result.assert_outcomes(passed=8)
    all_events = events(pytester)
    done = [e for e in all_events if e["event"] == "test-finish"]
    assert len(done) == 8
    assert {e["worker"] for e in done} <= {"gw0", "gw1"}
    collected = [e for e in all_events if e["event"] == "collected"]
    assert len(collected) == 1 and len(collected[0]["tests"]) == 8


# Runs in the controller only (it has no workerinput), after tiergate configured it: it talks
# to its own loopback listener, which the tier's network = "none" would refuse in a process that
# runs tests, and it lists the threads and audit hooks the controller has.
CONTROLLER_CONFTEST = """
import json, socket, sys, threading

def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput"):
        return
    listener = socket.create_server(("127.0.0.1", 0))
    seen = {}
    try:
        with socket.create_connection(listener.getsockname(), timeout=5):
            seen["connect"] = "ok"
    except OSError as exc:
        seen["connect"] = str(exc)
    finally:
        listener.close()
    seen["plugins"] = sorted(n for n, p in session.config.pluginmanager.list_name_plugin()
                             if "tiergate" in str(n) or "LeakWatch" in type(p).__name__)
    with open("controller.json", "w") as out:
        json.dump(seen, out)
"""


def test_the_xdist_controller_runs_no_tests_so_no_guard_no_probes(
        pytester: pytest.Pytester) -> None:
    # The controller only hands tests to workers: the guard, the leak watch and the network
    # markers live in the workers, and a module that fails to collect is told once per worker,
    # not once more by the controller.
    pytester.makepyprojecttoml('[tool.tiergate.tiers.fast]\nnetwork = "none"\n')
    pytester.makeconftest(CONTROLLER_CONFTEST)
    pytester.makepyfile(test_x="def test_a(): pass\n", test_broken="import nonexistent_xyz\n")
    pytester.runpytest_subprocess("--tier", "fast", "-n", "2")
    seen = json.loads((pytester.path / "controller.json").read_text())
    assert seen["connect"] == "ok"
    assert seen["plugins"] == ["tiergate", "tiergate-reproduce", "tiergate-retries",
                               "tiergate-run"]
    broken = [e for e in events(pytester)
              if e["event"] == "test-finish" and e["nodeid"] == "test_broken.py"]
    assert broken and {e.get("worker") for e in broken} <= {"gw0", "gw1"}
    assert len(broken) == len({e.get("worker") for e in broken})


@pytest.mark.parametrize("session_timeout", [False, True], ids=["tests-timed", "session-too"])
def test_pytest_timeout_stands_down_when_the_tests_start(
        pytester: pytest.Pytester, session_timeout: bool) -> None:
    # tiergate times every test, so pytest-timeout's two wrappers around each test would only
    # cost; its options, marker and header stay, and a --session-timeout keeps it.
    pytester.makepyprojecttoml("[tool.tiergate.tiers.fast]\n")
    pytester.makepyfile(test_x="""
import time, pytest

def test_plugin(request):
    print("TIMEOUT-PLUGIN", request.config.pluginmanager.get_plugin("timeout") is not None)

@pytest.mark.timeout(1)
def test_marked():
    time.sleep(5)
""")
    extra = ["--session-timeout", "600"] if session_timeout else []
    result = pytester.runpytest_subprocess("--tier", "fast", "-s", "--timeout", "30", *extra)
    result.stdout.fnmatch_lines(["timeout: 30.0s", f"*TIMEOUT-PLUGIN {session_timeout}*"])
    assert finishes(pytester)["test_marked"]["outcome"] == "timeout"  # tiergate's timer


def test_events_are_valid_json_lines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_a(): print('x' * 100000)\n")
    pytester.runpytest_subprocess("--tier", "fast")
    path: Path = pytester.path / ".tiergate" / "fast" / "events.jsonl"
    lines = path.read_text().splitlines()
    assert all(json.loads(line)["event"] for line in lines)
    assert [json.loads(line)["event"] for line in lines][:2] == ["run-start", "session-start"]


def test_finding_paths_are_made_project_relative(tmp_path: Path) -> None:
    from tiergate.plugin.tierrun import project_relative
    from tiergate.protocol.findings import Culprit, Finding, Location

    finding = Finding(
        kind="leak-thread",
        test="tests/test_a.py::test_a",
        severity="error",
        message="left a thread",
        location=Location(str(tmp_path / "pkg" / "mod.py"), 3),
        culprit=Culprit(path="/usr/lib/python3.11/threading.py", line=9, function="start"),
    )
    moved = project_relative(finding, tmp_path)
    assert moved.location is not None and moved.location.path == "pkg/mod.py"
    assert moved.culprit is not None and moved.culprit.path == "/usr/lib/python3.11/threading.py"


def test_a_test_that_takes_sigalrm_does_not_disable_later_timeouts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_x="""
        import signal, time
        def test_uses_alarm_itself():
            fired = []
            signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            time.sleep(0.2)
            assert fired
        def test_hangs_later():
            time.sleep(30)
    """
    )
    result = pytester.runpytest_subprocess("--tier", "fast", "--timeout", "1")
    result.assert_outcomes(passed=1, failed=1)
    assert finishes(pytester)["test_hangs_later"]["outcome"] == "timeout"


# -- issue 15: pytest's outcomes and names, exactly --------------------------------------------

def junit_cases(path: Path) -> list[tuple[str | None, str | None, list[tuple[str, str | None]]]]:
    """Each testcase's class name, name and result elements (tag, message), in file order."""
    import xml.etree.ElementTree as ET

    return [(case.get("classname"), case.get("name"),
             [(child.tag, child.get("message")) for child in case
              if child.tag in ("failure", "error", "skipped")])
            for case in ET.parse(path).getroot().iter("testcase")]


def junit_totals(path: Path) -> dict[str, str | None]:
    import xml.etree.ElementTree as ET

    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return {key: suite.get(key) for key in ("tests", "errors", "failures", "skipped")}


def test_junit_names_are_pytests_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{"tests/sub/test_names": """
        import pytest
        IDS = ["::1", "a/b", "x.y", "[z]", "p::q/r.s[t]", "fe80::1%eth0", "plain"]

        @pytest.mark.parametrize("v", IDS, ids=IDS)
        def test_x(v):
            pass

        class TestK:
            @pytest.mark.parametrize("v", IDS, ids=IDS)
            def test_y(self, v):
                assert v != "a/b"
    """})
    result = pytester.runpytest_subprocess("--tier", "fast", "--junitxml=pytest.xml")
    result.assert_outcomes(passed=13, failed=1)
    ours = junit_cases(pytester.path / ".tiergate" / "fast" / "junit.xml")
    theirs = junit_cases(pytester.path / "pytest.xml")
    assert [case[:2] for case in ours] == [case[:2] for case in theirs]
    assert ("tests.sub.test_names", "test_x[::1]", []) in ours
    assert [case[2][0][0] for case in ours if case[2]] == ["failure"]


def test_modules_skipped_at_collection_count_as_pytest_counts_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_importorskip="import pytest\npytest.importorskip('nonexistent_module_xyz')\n",
        test_module_skip="import pytest\n"
        "pytest.skip('needs a GPU', allow_module_level=True)\n",
        test_tests="""
        import pytest
        def test_ok(): pass
        @pytest.mark.skip(reason="not today")
        def test_skipped(): pass
        """,
    )
    result = pytester.runpytest_subprocess("--tier", "fast", "--junitxml=pytest.xml")
    result.assert_outcomes(passed=1, skipped=3)
    results = pytester.path / ".tiergate" / "fast"
    counts = json.loads((results / "findings.json").read_text())["counts"]
    assert (counts["passed"], counts["skipped"]) == (1, 3)
    assert junit_totals(results / "junit.xml") == junit_totals(pytester.path / "pytest.xml")
    ours = sorted(junit_cases(results / "junit.xml"))
    assert ours == sorted(junit_cases(pytester.path / "pytest.xml"))
    assert ("", "test_module_skip", [("skipped", "collection skipped")]) in ours
    skips = {e["nodeid"]: e for e in events(pytester)
             if e["event"] == "test-finish" and e.get("phase") == "collect"}
    assert set(skips) == {"test_importorskip.py", "test_module_skip.py"}
    assert {e["outcome"] for e in skips.values()} == {"skipped"}
    assert skips["test_module_skip.py"]["message"] == "needs a GPU"
    assert skips["test_importorskip.py"]["message"] == (
        "could not import 'nonexistent_module_xyz': No module named 'nonexistent_module_xyz'")
    assert skips["test_module_skip.py"]["line"] == 2
    # read back (`tiergate report --junit`), from our JUnit and from pytest's own
    from tiergate.results.junit_in import read_junit

    for path, nodeid in ((results / "junit.xml", "test_module_skip.py"),
                         (pytester.path / "pytest.xml", "test_module_skip")):
        run = read_junit(path)
        assert run.counts()["skipped"] == 3
        again = run.tests[nodeid]
        assert (again.outcome, again.phase, again.message) == ("skipped", "collect", "needs a GPU")


LEAKY = """
import os, threading, time

def test_leaves_a_thread():
    threading.Thread(target=time.sleep, args=(30,), name="poller", daemon=True).start()

def test_changes_the_environment():
    os.environ["TIERGATE_TEST_LEFTOVER"] = "1"

def test_clean():
    pass
"""


def test_the_plugin_alone_fails_a_tier_that_fails_on_leaks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("--tier", "fast")
    result.assert_outcomes(passed=3)  # pytest's own counts stay what they are
    assert result.ret == 1
    findings = json.loads((pytester.path / ".tiergate" / "fast" / "findings.json").read_text())
    kinds = [f["kind"] for f in findings["findings"] if f["severity"] == "error"]
    assert findings["outcome"] == "failed" and "leak-thread" in kinds
    lines = [line for line in result.stdout.lines if line.startswith("tiergate:")]
    assert lines == [f"tiergate: {len(kinds)} error findings ({', '.join(dict.fromkeys(kinds))});"
                     " see .tiergate/fast/summary.md"]
    # a tier that only warns about leaks stays green, as `tiergate run` would
    pytester.makepyprojecttoml('[tool.tiergate.tiers.fast]\nleaks = "warn"\n')
    result = pytester.runpytest_subprocess("--tier", "fast")
    assert result.ret == 0
    assert not [line for line in result.stdout.lines if line.startswith("tiergate:")]


def test_the_plugin_alone_keeps_pytests_exit_status_on_a_clean_or_failing_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_clean="def test_a(): pass\ndef test_b(): pass\n")
    result = pytester.runpytest_subprocess("--tier", "fast")
    assert result.ret == 0
    assert not [line for line in result.stdout.lines if line.startswith("tiergate:")]
    pytester.makepyfile(test_leaky=LEAKY, test_bad="def test_bad(): assert False\n")
    result = pytester.runpytest_subprocess("--tier", "fast")
    assert result.ret == 1  # pytest's own: a test failed
    assert not [line for line in result.stdout.lines if line.startswith("tiergate:")]


def test_the_plugin_alone_passes_a_tier_that_allows_no_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="import pytest\n@pytest.mark.slow\ndef test_slow(): pass\n")
    result = pytester.runpytest_subprocess("--tier", "fast")
    assert result.ret == 5  # pytest's own: nothing selected, as `tiergate run` says too
    pytester.makepyprojecttoml("[tool.tiergate.tiers.fast]\nallow-no-tests = true\n")
    result = pytester.runpytest_subprocess("--tier", "fast")
    assert result.ret == 0  # as `tiergate run` exits for a tier that allows no tests
    # collected, not run: no verdict on tests that were never meant to run
    pytester.makepyfile(test_y="def test_fast(): pass\n")
    result = pytester.runpytest_subprocess("--tier", "fast", "--collect-only")
    assert result.ret == 0 and not [ln for ln in result.stdout.lines if ln.startswith("tiergate:")]
