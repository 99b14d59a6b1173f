"""Tests that no longer run: the base commit's check run keeps the ids of the tests that ran
there, and a pull request's comment and check run list those missing or skipped now. Posted
against the local GitHub API stand-in (tests/ghapi.py), with results dirs as runs leave them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ghapi import GhApi

from tiergate import cli
from tiergate.github import known
from tiergate.protocol.events import EventWriter
from tiergate.report.summary import render_summary
from tiergate.results.inputs import load_run

HEAD, BASE = "a" * 40, "b" * 40
CHECK = "tiergate (fast)"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ghapi: GhApi) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {
        "number": 7, "head": {"sha": HEAD}, "base": {"sha": BASE}}}))
    for name, value in {
        "GITHUB_API_URL": ghapi.url, "GITHUB_REPOSITORY": "octo/app", "GITHUB_TOKEN": "ghs_x",
        "GITHUB_SHA": HEAD, "GITHUB_EVENT_PATH": str(event),
        "GITHUB_EVENT_NAME": "pull_request", "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "42", "GITHUB_WORKSPACE": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def run_dir(path: Path, outcomes: dict[str, str], not_run: tuple[str, ...] = ()) -> Path:
    """A results dir of a run whose tests ended as *outcomes* say; *not_run* were selected (in
    the collected list) and never started."""
    path.mkdir(parents=True)
    w = EventWriter(path / "events.jsonl")
    w.emit("run-start", tier="fast", settings={})
    w.emit("collected", tests=[*outcomes, *not_run])
    for nodeid, outcome in outcomes.items():
        w.emit("test-start", nodeid=nodeid)
        w.emit("test-finish", nodeid=nodeid, outcome=outcome, duration=0.01,
               message="skipped: needs a GPU" if outcome == "skipped" else None)
    w.emit("run-finish", exit_code=0)
    w.close()
    return path


def ids(*names: str) -> list[str]:
    return [f"tests/test_app.py::test_{n}" for n in names]


def post_base_then_head(tmp_path: Path, ghapi: GhApi, base: dict[str, str],
                        head: dict[str, str]) -> str:
    """Posts the base's run, moves its check run to the base commit, posts the head's run;
    returns the PR comment's body ("" when none was written)."""
    assert cli.main(["post", "--results-dir", str(run_dir(tmp_path / "base", base))]) == 0
    (posted,) = ghapi.state.check_runs.values()
    ghapi.state.check_runs.clear()
    ghapi.state.comments.clear()
    ghapi.add_check_run(BASE, CHECK, posted["output"]["text"])
    assert cli.main(["post", "--results-dir", str(run_dir(tmp_path / "head", head))]) == 0
    bodies = [c["body"] for c in ghapi.state.comments.values()]
    return bodies[0] if bodies else ""


def shown(markdown: str) -> str:
    return markdown.replace("\\", "")  # as GitHub renders it: markdown escapes gone


def test_tests_gone_or_skipped_since_the_base_are_listed_in_the_comment_and_check_run(
        tmp_path: Path, env: None, ghapi: GhApi) -> None:
    base = dict.fromkeys(ids("a", "b", "c", "d", "e"), "passed")
    base["tests/test_app.py::test_old_skip"] = "skipped"  # did not run on the base either
    head = {**dict.fromkeys(ids("a", "b", "c"), "passed"),
            "tests/test_app.py::test_d": "skipped", "tests/test_app.py::test_old_skip": "skipped"}
    body = shown(post_base_then_head(tmp_path, ghapi, base, head))
    # green, yet commented on (mode on-failure): the comment is where a review sees it
    assert "⚠️ **2 tests no longer run** that ran on the base commit: 1 missing (removed, " \
           "renamed or deselected), 1 skipped now." in body
    assert "- <code>tests/test_app.py::test_e</code>\n" in body
    assert "- <code>tests/test_app.py::test_d</code> (skipped)" in body
    assert "test_old_skip" not in body
    (check,) = [c for c in ghapi.state.check_runs.values() if c["head_sha"] == HEAD]
    assert "2 tests no longer run" in shown(check["output"]["summary"])
    # and the head's own list is kept for the next pull request: what ran, not what skipped
    assert known.parse_tests(check["output"]["text"]) == set(ids("a", "b", "c"))


def test_a_run_that_lost_nothing_says_nothing(tmp_path: Path, env: None, ghapi: GhApi) -> None:
    same = dict.fromkeys(ids("a", "b"), "passed")
    assert post_base_then_head(tmp_path, ghapi, same, {**same, **dict.fromkeys(
        ids("new"), "passed")}) == ""  # green, nothing lost: no comment
    (check,) = [c for c in ghapi.state.check_runs.values() if c["head_sha"] == HEAD]
    assert "no longer run" not in check["output"]["summary"]


def test_without_a_list_on_the_base_nothing_is_compared(tmp_path: Path, env: None,
                                                        ghapi: GhApi) -> None:
    ghapi.add_check_run(BASE, CHECK, "<!-- tiergate:fingerprints v1 -->")  # an older tiergate
    results = run_dir(tmp_path / "head", dict.fromkeys(ids("a"), "passed"))
    assert cli.main(["post", "--results-dir", str(results)]) == 0
    assert not ghapi.state.comments


def test_tests_the_run_did_not_get_to_are_not_run_not_lost(tmp_path: Path) -> None:
    run = load_run([run_dir(tmp_path / "r", dict.fromkeys(ids("a"), "failed"),
                            not_run=tuple(ids("b")))])
    text = shown(render_summary(run, base_tests=set(ids("a", "b", "c"))))
    assert "**1 test no longer run** that ran on the base commit: 1 missing" in text
    assert "test_c</code>" in text


def test_many_lost_tests_are_counted_past_the_first_thirty(tmp_path: Path) -> None:
    run = load_run([run_dir(tmp_path / "r", dict.fromkeys(ids("a"), "passed"))])
    base = {f"tests/test_app.py::test_{i:03}" for i in range(100)}
    text = shown(render_summary(run, base_tests=base))
    assert "**100 tests no longer run**" in text
    assert text.count("- <code>tests/test_app.py::test_") == 30
    assert "- … and 70 more" in text


def test_the_stored_list_round_trips_and_a_damaged_or_huge_one_is_none() -> None:
    ids = [f"tests/test_m{i % 40}.py::test_case[{i}-x]" for i in range(5000)]
    text = known.tests_marker(ids, room=60_000)
    assert "-->" not in text[:-3] and len(text) < 60_000
    assert known.parse_tests(f"before {text} after") == set(ids)
    assert known.tests_marker(ids, room=100) == ""  # does not fit: none kept
    assert known.parse_tests("<!-- tiergate:tests v1 bm90IHpsaWI= -->") is None
    assert known.parse_tests("no list") is None
    bomb: Any = __import__("zlib").compress(b"\n" * (64 << 20), 9)
    packed = __import__("base64").b64encode(bomb).decode()
    assert known.parse_tests(f"<!-- tiergate:tests v1 {packed} -->") is None
