"""Failure items of the PR comment: a group of parametrized cases is marked new as its cases
are, and an item's `path:line` link points at the line that failed, as its annotation does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.report import fingerprint
from tiergate.report.links import Links
from tiergate.report.summary import COMMENT_LIMIT, render_summary
from tiergate.results.model import RunResult, TestResult

SHA = "0123456789abcdef0123456789abcdef01234567"
LINKS = Links("https://github.com", "octo/app", SHA)
BLOB = f"https://github.com/octo/app/blob/{SHA}/"
# pytest's long traceback style: the test's frame, the code under test, then an installed
# package's frame, which "Files changed" cannot show.
TRACEBACK = """\
    def test_parse(case):
>       parse_header(case)

tests/test_parse.py:12: in test_parse
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _

    def parse_header(text):
>       raise ValueError("bad header")
E       ValueError: bad header

src/app/parse.py:31: ValueError
/usr/lib/python3/site-packages/yaml/reader.py:88: in peek
"""


def failure(nodeid: str, longrepr: str | None = TRACEBACK) -> TestResult:
    return TestResult(nodeid, "tests/test_parse.py", 9, "failed", 0.1, "call",
                      "ValueError: bad header", longrepr)


def run_of(count: int, longrepr: str | None = TRACEBACK) -> RunResult:
    run = RunResult(tier="fast", started=100.0, finished=101.0)
    for i in range(count):
        nodeid = f"tests/test_parse.py::test_parse[case_{i}]"
        run.tests[nodeid] = failure(nodeid, longrepr)
    return run


@pytest.fixture(autouse=True)
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("tests/test_parse.py", "src/app/parse.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("\n" * 40)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    return tmp_path


def group_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("- ❌"))


def known_prints(run: RunResult, count: int) -> set[str]:
    return {fingerprint.of_failure(t) for t in list(run.tests.values())[:count]}


def test_a_group_of_new_failures_is_marked_new() -> None:
    run = run_of(130)
    item = group_line(render_summary(run, budget=COMMENT_LIMIT, known=set(), links=LINKS,
                                     diagnostics=False))
    assert "130 \N{MULTIPLICATION SIGN}" in item
    assert item.endswith("**new**: ValueError: bad header"), item


def test_a_group_with_some_known_failures_counts_the_new_ones() -> None:
    run = run_of(130)
    text = render_summary(run, budget=COMMENT_LIMIT, known=known_prints(run, 100),
                          links=LINKS, diagnostics=False)
    assert "**30 new**: ValueError: bad header" in group_line(text)


def test_a_group_of_known_failures_is_marked_known() -> None:
    run = run_of(130)
    text = render_summary(run, budget=COMMENT_LIMIT, known=known_prints(run, 130),
                          links=LINKS, diagnostics=False)
    item = group_line(text)
    assert "*(known)*: ValueError" in item and "new" not in item, item


def test_without_a_base_commit_a_group_has_no_mark() -> None:
    item = group_line(render_summary(run_of(3), links=LINKS, diagnostics=False))
    assert "new" not in item and "known" not in item, item


@pytest.mark.parametrize("count", [1, 130])
def test_a_failure_links_to_the_line_that_failed(count: int) -> None:
    item = group_line(render_summary(run_of(count), links=LINKS, diagnostics=False))
    assert f'href="{BLOB}src/app/parse.py#L31"' in item, item
    assert "<code>src/app/parse.py:31</code>" in item, item
    assert "#L9" not in item and "yaml/reader.py" not in item, item


def test_a_native_traceback_links_to_the_deepest_frame_in_the_repository(
        repository: Path) -> None:
    native = (f'Traceback (most recent call last):\n  File "{repository}/tests/test_parse.py", '
              f'line 12, in test_parse\n  File "{repository}/src/app/parse.py", line 31, in '
              'parse_header\nValueError: bad header\n')
    item = group_line(render_summary(run_of(1, native), links=LINKS, diagnostics=False))
    assert f'href="{BLOB}src/app/parse.py#L31"' in item, item


@pytest.mark.parametrize("longrepr", [None, "E   ValueError: bad header\n",
                                      "/usr/lib/python3/site-packages/yaml/reader.py:88: in x\n"])
def test_without_a_frame_in_the_repository_a_failure_links_to_its_test(
        longrepr: str | None) -> None:
    item = group_line(render_summary(run_of(1, longrepr), links=LINKS, diagnostics=False))
    assert f'href="{BLOB}tests/test_parse.py#L9"' in item, item
