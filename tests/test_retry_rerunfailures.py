"""With pytest-rerunfailures installed and active, tiergate's retries replace its reruns: its
``@pytest.mark.flaky(reruns=n)`` and ``--reruns n`` set how often, tiergate runs the attempts
(each kept in the events and junit.xml), nothing runs a test twice over, and one line says so.
The `flaky` package's ``flaky(max_runs=n)`` is not read as rerunfailures' marker."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tiergate.results.model import build

pytest_plugins = ["pytester"]

pytest.importorskip("pytest_rerunfailures")

# Each test counts its runs in a file named after it, so a second retrier would show.
COUNTED = """
import pytest
from pathlib import Path

def ran(name):
    path = Path(__file__).with_name("runs-" + name)
    with path.open("a") as runs:
        runs.write("x")
    return len(path.read_text())

@pytest.mark.flaky(reruns=2)
def test_fails_once():
    if ran("fails_once") == 1:
        print("output of attempt 1")
        assert False, "the service was not ready"

@pytest.mark.flaky(reruns=2)
def test_always_fails():
    ran("always_fails")
    assert False, "broken for good"

@pytest.mark.tiergate_retries(0)
@pytest.mark.flaky(reruns=2)
def test_not_retried():
    ran("not_retried")
    assert False, "not to be retried"

@pytest.mark.flaky(max_runs=3)
def test_flaky_package_style():
    ran("flaky_package_style")
    assert False, "box/flaky's marker"

def test_unmarked():
    ran("unmarked")
    assert False, "no marker"
"""


def runs(root: Path) -> dict[str, int]:
    return {p.name.removeprefix("runs-"): len(p.read_text()) for p in root.glob("runs-*")}


def log(root: Path) -> list[dict[str, object]]:
    path = root / ".tiergate" / "fast" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def junit(root: Path) -> dict[str, list[str]]:
    tree = ET.parse(root / ".tiergate" / "fast" / "junit.xml")
    return {c.get("name", ""): [child.tag for child in c] for c in tree.iter("testcase")}


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyprojecttoml("[tool.tiergate.tiers.fast]\n")
    pytester.makepyfile(test_counted=COUNTED)
    return pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider", "-p", "rerunfailures",
                              "--strict-markers", *args)


def test_the_plugin_is_really_active(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plugin(request):\n"
                        "    assert request.config.pluginmanager.hasplugin('rerunfailures')\n")
    assert pytester.runpytest("-p", "rerunfailures").ret == 0


MACHINERY = """
import json, os
def pytest_sessionfinish(session):
    config = session.config
    seen = {"worker": hasattr(config, "workerinput"),
            "plugin": config.pluginmanager.hasplugin("rerunfailures"),
            "db": type(getattr(config, "failures_db", None)).__name__}
    with open(os.path.join(str(config.rootpath), "machinery-%d" % os.getpid()), "w") as out:
        json.dump(seen, out)
"""


@pytest.mark.parametrize("tier", [False, True], ids=["plain-pytest", "under-a-tier"])
def test_under_a_tier_none_of_its_machinery_runs(pytester: pytest.Pytester, tier: bool) -> None:
    # Under xdist it starts a socket server and its thread in every run (ServerStatusDB), and
    # it keeps each failure's exception on its test: under a tier it is not even configured.
    pytest.importorskip("xdist")
    pytester.makepyprojecttoml("[tool.tiergate.tiers.fast]\n")
    pytester.makeconftest(MACHINERY)
    pytester.makepyfile("def test_one():\n    pass\n")
    args = ["--tier", "fast"] if tier else []
    assert pytester.runpytest_subprocess("-p", "rerunfailures", "-n", "1", *args).ret == 0
    seen = sorted((json.loads(p.read_text()) for p in pytester.path.glob("machinery-*")),
                  key=lambda s: s["worker"])
    if tier:
        assert seen == [{"worker": False, "plugin": False, "db": "NoneType"},
                        {"worker": True, "plugin": False, "db": "NoneType"}]
    else:  # the control: the plugin and its machinery are there without a tier
        assert seen == [{"worker": False, "plugin": True, "db": "ServerStatusDB"},
                        {"worker": True, "plugin": True, "db": "ClientStatusDB"}]


def test_their_marker_runs_as_tiergate_retries_each_attempt_kept_none_twice(
        pytester: pytest.Pytester) -> None:
    result = run(pytester)
    result.stderr.fnmatch_lines([
        "tiergate: pytest-rerunfailures is installed; tiergate runs the retries instead and "
        "keeps every attempt (tier fast: no retries for the tier; "
        "@pytest.mark.flaky(reruns=n) per test)"])
    # flaky(reruns=2): up to 3 runs; tiergate_retries(0) wins; max_runs=3 is box/flaky's 3 runs
    assert runs(pytester.path) == {"fails_once": 2, "always_fails": 3, "not_retried": 1,
                                   "flaky_package_style": 3, "unmarked": 1}
    tests = build(log(pytester.path)).tests
    once = tests["test_counted.py::test_fails_once"]
    assert once.flaky and [(a.number, a.message, a.stdout) for a in once.attempts] == [
        (1, "AssertionError: the service was not ready", "output of attempt 1\n")]
    assert [a.number for a in tests["test_counted.py::test_always_fails"].attempts] == [1, 2]
    assert not tests["test_counted.py::test_not_retried"].attempts
    cases = junit(pytester.path)
    assert cases["test_fails_once"] == ["flakyFailure"]
    assert cases["test_always_fails"] == ["failure", "rerunFailure", "rerunFailure"]
    assert cases["test_not_retried"] == ["failure"]
    result.stdout.fnmatch_lines(["*4 failed, 1 passed, 5 rerun*"])


def test_installed_but_not_used_it_is_not_mentioned(pytester: pytest.Pytester) -> None:
    result = run(pytester, "-k", "unmarked")  # no flaky marker selected, none of its options
    assert "rerunfailures" not in result.stderr.str()
    assert runs(pytester.path) == {"unmarked": 1}


def test_reruns_on_the_command_line_is_the_tier_s_retries(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--reruns", "1", "--reruns-delay", "1", "--only-rerun", "Error")
    result.stderr.fnmatch_lines([
        "tiergate: pytest-rerunfailures is installed; tiergate runs the retries instead*"
        "(tier fast: --reruns 1 as the tier's retries; @pytest.mark.flaky(reruns=n) per test); "
        "not read: --reruns-delay (set retry-delay), --only-rerun (set retry-on)"])
    # The markers still win over --reruns; the unmarked test gets its one retry.
    assert runs(pytester.path) == {"fails_once": 2, "always_fails": 3, "not_retried": 1,
                                   "flaky_package_style": 3, "unmarked": 2}
    unmarked = build(log(pytester.path)).tests["test_counted.py::test_unmarked"]
    assert unmarked.outcome == "failed" and [a.number for a in unmarked.attempts] == [1]


def test_the_tier_s_retries_win_over_reruns(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.tiergate.tiers.fast]\nretries = 2\n")
    pytester.makepyfile(test_counted=COUNTED)
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider", "--reruns", "5",
                                "-k", "unmarked")
    result.stderr.fnmatch_lines(["*(tier fast: the tier's retries = 2;*"])
    assert runs(pytester.path) == {"unmarked": 3}


def test_force_reruns_does_not_rerun_what_tiergate_does_not_retry(
        pytester: pytest.Pytester) -> None:
    result = run(pytester, "--force-reruns", "2", "-k", "not_retried or unmarked")
    result.stderr.fnmatch_lines(["*not read: --force-reruns (set retries)"])
    assert runs(pytester.path) == {"not_retried": 1, "unmarked": 1}
    assert not [e for e in log(pytester.path) if e["event"] == "test-attempt"]
