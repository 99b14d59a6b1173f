"""A pytest that a test starts (pytester, a tool's own test suite) under ``tiergate run``.

It inherits the run's environment, so it gets what every Python child of a run gets: the dump
handler (the run's hang dumps show its stacks) and the tier's network guard. Nothing else: the
plugin stays inert without ``--tier``/``--tiergate-run``, so the inner run writes nothing into the
outer run's event log and its outcomes are what they would be without tiergate.
"""

from __future__ import annotations

from pathlib import Path

from supervised import events, findings, make_project, run_tiergate

TIER = """
[tool.tiergate.tiers.fast]
test-timeout = "60s"
leaks = "off"
"""

OUTER = """
    INNER = '''
    def test_inner_passes(request):
        assert request.config.pluginmanager.get_plugin("tiergate-run") is None
        assert request.config.getoption("tiergate_tier") is None

    def test_inner_fails():
        assert False
    '''

    def test_runs_a_nested_pytest(pytester):
        pytester.makepyfile(test_inner=INNER)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1, failed=1)
        assert result.ret == 1
        assert not (pytester.path / ".tiergate").exists()
"""


def test_a_nested_pytest_writes_nothing_into_the_outer_event_log(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"test_outer.py": OUTER}, TIER)
    proc = run_tiergate(project, "run", "--tier", "fast", "--", "-p", "pytester")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert findings(project)["counts"]["passed"] == 1
    log = events(project)
    supervisor = next(e["pid"] for e in log if e["event"] == "run-start")
    pytest_pid = next(e["pid"] for e in log if e["event"] == "session-start")
    assert {e["pid"] for e in log} == {supervisor, pytest_pid}
    assert [e["event"] for e in log].count("session-start") == 1
    assert not any("test_inner" in str(e.get("nodeid") or e.get("tests") or "") for e in log)
