"""Reproduction tests (``@pytest.mark.reproduces``) as a user meets them: one that still fails
counts as reproducing its bug, one that passes asks for the marker to go."""

from __future__ import annotations

import json
from typing import Any

import pytest

SUITE = """
import pytest

@pytest.mark.reproduces("BUG-601", reason="the cache returns stale rows")
def test_still_broken():
    assert "stale" == "fresh"

@pytest.mark.reproduces("BUG-602")
def test_fixed_now():
    assert True

def test_plain():
    pass
"""


def _read(pytester: pytest.Pytester, name: str) -> Any:
    return (pytester.path / ".tiergate" / "fast" / name).read_text()


def _finishes(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in _read(pytester, "events.jsonl").splitlines()]
    return {r["nodeid"].split("::")[-1]: r for r in records if r["event"] == "test-finish"}


def test_failing_reproduction_reproduces_and_passing_one_is_fixed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_bugs=SUITE)
    result = pytester.runpytest_subprocess("--tier", "fast", "--strict-markers")
    result.assert_outcomes(passed=1, xfailed=1, xpassed=1)

    finish = _finishes(pytester)
    assert finish["test_still_broken"]["outcome"] == "xfailed"
    assert finish["test_still_broken"]["reproduces"] == "BUG-601"
    assert "reproduces BUG-601: the cache returns stale rows" in finish["test_still_broken"][
        "message"
    ]
    assert finish["test_fixed_now"]["outcome"] == "xpassed"
    assert finish["test_fixed_now"]["reproduces"] == "BUG-602"
    assert finish["test_plain"].get("reproduces") is None  # absent: events carry no empty fields

    document = json.loads(_read(pytester, "findings.json"))
    assert document["counts"]["failed"] == 0
    assert document["counts"]["xfailed"] == 1
    fixed = [f for f in document["findings"] if f["kind"] == "reproduction-fixed"]
    assert len(fixed) == 1
    assert fixed[0]["test"] == "test_bugs.py::test_fixed_now"
    assert fixed[0]["severity"] == "error"
    assert "BUG-602" in fixed[0]["message"] and "remove @pytest.mark.reproduces" in fixed[0][
        "message"
    ]
    where = finish["test_fixed_now"]
    assert fixed[0]["location"] == {"path": where["path"], "line": where["line"]}
    assert document["outcome"] == "failed"  # a fixed bug cannot slip by with its marker


def test_only_reproducing_tests_pass_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bugs="""
        import pytest

        @pytest.mark.reproduces("BUG-7", reason="off by one")
        def test_still_broken():
            assert 1 + 1 == 3
        """
    )
    pytester.runpytest_subprocess("--tier", "fast").assert_outcomes(xfailed=1)
    document = json.loads(_read(pytester, "findings.json"))
    assert document["outcome"] == "passed" and document["findings"] == []


def test_marker_without_a_bug_id_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bugs="""
        import pytest

        @pytest.mark.reproduces(reason="no id")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--tier", "fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_x: @pytest.mark.reproduces needs a bug id*"])


def test_reproductions_under_xdist_give_one_finding(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bugs=SUITE)
    pytester.runpytest_subprocess("--tier", "fast", "-n", "2").assert_outcomes(
        passed=1, xfailed=1, xpassed=1
    )
    document = json.loads(_read(pytester, "findings.json"))
    assert [f["test"] for f in document["findings"] if f["kind"] == "reproduction-fixed"] == [
        "test_bugs.py::test_fixed_now"
    ]
