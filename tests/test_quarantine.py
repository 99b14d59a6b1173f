"""Quarantine: a listed test runs and is reported, its failure does not fail the tier, and an
entry past its ``until`` date is a ``quarantine-expired`` error. End to end under ``tiergate
run`` and ``pytest --tier``."""

from __future__ import annotations

from pathlib import Path

import pytest
from supervised import events, findings, make_project, results, run_tiergate

from tiergate.results.model import build

pytest_plugins = ["pytester"]

TESTS = {"tests/test_api.py": """
    def test_upload():
        assert False, "the upload mock races the server"

    def test_download():
        pass
"""}


def quarantine(test: str = "tests/test_api.py::test_upload", until: str = "2999-01-01") -> str:
    return (f'[tool.tiergate.quarantine."{test}"]\nreason = "races the server"\n'
            f'issue = "https://github.com/o/r/issues/12"\nowner = "@alice"\nuntil = {until}\n')


def test_a_quarantined_failing_test_does_not_fail_the_tier(tmp_path: Path) -> None:
    project = make_project(tmp_path, TESTS, quarantine())
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = findings(project)
    assert data["outcome"] == "passed" and data["counts"]["failed"] == 1  # reported as it is
    summary = (results(project) / "summary.md").read_text()
    quarantined = summary[summary.index("Quarantine"):]
    assert "test\\_api.py::test\\_upload` | failed | races the server" in quarantined
    assert "issues/12" in quarantined and "alice" in quarantined
    run = build(events(project))
    assert run.tests["tests/test_api.py::test_upload"].quarantine is not None
    assert run.tests["tests/test_api.py::test_download"].quarantine is None


def test_a_glob_pattern_quarantines_the_tests_it_matches(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(quarantine("tests/test_api.py::test_up*"))
    for name, body in TESTS.items():
        pytester.path.joinpath("tests").mkdir(exist_ok=True)
        pytester.path.joinpath(name).write_text(body.replace("\n    ", "\n"))
    result = pytester.runpytest("--tier", "fast", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()  # pytest's own 1: only a quarantined test failed


def test_an_expired_quarantine_fails_the_tier(tmp_path: Path) -> None:
    project = make_project(tmp_path, TESTS, quarantine(until="2020-01-01"))
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expired = [f for f in findings(project)["findings"] if f["kind"] == "quarantine-expired"]
    assert [f["severity"] for f in expired] == ["error"]
    assert "ended on 2020-01-01" in expired[0]["message"]


def test_an_entry_without_until_is_a_one_line_error(tmp_path: Path) -> None:
    pyproject = '[tool.tiergate.quarantine."tests/test_api.py::test_upload"]\nreason = "x"\n'
    project = make_project(tmp_path, TESTS, pyproject)
    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs until" in lines[0], proc.stderr


def test_the_quarantine_command_adds_lists_and_removes_entries(tmp_path: Path) -> None:
    original = "# our tiers\n[tool.tiergate.tiers.fast]\nretries = 1\n"
    project = make_project(tmp_path, TESTS, original)
    added = run_tiergate(project, "quarantine", "add", "tests/test_api.py::test_upload",
                         "--reason", 'races "the" server', "--until", "2999-01-01",
                         "--owner", "@alice")
    assert added.returncode == 0, added.stderr
    listed = run_tiergate(project, "quarantine", "list")
    assert listed.stdout.splitlines() == [
        'tests/test_api.py::test_upload  until 2999-01-01, @alice: races "the" server']
    assert run_tiergate(project, "run", "--tier", "fast").returncode == 0  # it took effect
    removed = run_tiergate(project, "quarantine", "remove", "tests/test_api.py::test_upload")
    assert removed.returncode == 0, removed.stderr
    assert (project / "pyproject.toml").read_text() == original
    again = run_tiergate(project, "quarantine", "remove", "tests/test_api.py::test_upload")
    assert again.returncode == 2 and "is not quarantined" in again.stderr
