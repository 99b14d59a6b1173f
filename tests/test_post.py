"""`tiergate post` against the local GitHub API stand-in (tests/ghapi.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ghapi import GhApi
from resultsdirs import HOSTILE, finding, leak, timeout_finding, write_results_dir

from tiergate import cli
from tiergate.github.client import GitHubClient, GitHubError
from tiergate.github.comment import marker
from tiergate.github.known import marker as known_marker
from tiergate.github.known import parse as parse_prints
from tiergate.report import fingerprint
from tiergate.results.inputs import load_run

SECRET = "gh-secret-0123456789"
HEAD, BASE = "a" * 40, "b" * 40


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ghapi: GhApi) -> Path:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {
        "number": 7, "head": {"sha": HEAD}, "base": {"sha": BASE}}}))
    for name, value in {
        "GITHUB_API_URL": ghapi.url, "GITHUB_REPOSITORY": "octo/app", "GITHUB_TOKEN": "ghs_x",
        "GITHUB_SHA": "c" * 40, "GITHUB_EVENT_PATH": str(event),
        "GITHUB_EVENT_NAME": "pull_request", "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "42", "GITHUB_WORKSPACE": str(tmp_path), "DB_PASSWORD": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return event


def failing_dir(tmp_path: Path, findings: list[dict[str, Any]] | None = None) -> Path:
    return write_results_dir(
        tmp_path / "res", failures=[("tests/test_bad.py::test_x", f"{HOSTILE} {SECRET}")],
        findings=findings if findings is not None else [leak(0), timeout_finding()],
        dumps={"dumps/test_db.txt": f"Thread 0x1 password={SECRET}"})


def post(results: Path, *extra: str) -> int:
    return cli.main(["post", "--results-dir", str(results), *extra])


def comments(api: GhApi) -> list[dict[str, Any]]:
    return list(api.state.comments.values())


def test_post_twice_creates_one_comment_then_updates_it(tmp_path: Path, env: Path,
                                                         ghapi: GhApi) -> None:
    results = failing_dir(tmp_path)
    assert post(results) == 0
    assert [c["issue_number"] for c in comments(ghapi)] == [7]
    first_id = comments(ghapi)[0]["id"]
    assert post(results) == 0
    assert [c["id"] for c in comments(ghapi)] == [first_id]
    methods = [(r["method"], r["path"]) for r in ghapi.writes()]
    assert methods.count(("POST", "/repos/octo/app/issues/7/comments")) == 1
    # the second post made a new check run, which the header links: updated in place
    assert ("PATCH", f"/repos/octo/app/issues/comments/{first_id}") in methods
    assert comments(ghapi)[0]["body"].startswith(marker("fast"))


def _comment_writes(ghapi: GhApi) -> list[str]:
    return [r["method"] for r in ghapi.writes() if "/comments" in r["path"]]


def test_the_header_says_which_commit_and_run(tmp_path: Path, env: Path, ghapi: GhApi) -> None:
    assert post(failing_dir(tmp_path)) == 0
    body = comments(ghapi)[0]["body"]
    (check_id,) = ghapi.state.check_runs
    header = body.split("\n\n", 1)[0].splitlines()[1:]  # after the hidden markers
    header = [line for line in header if not line.startswith("<!--")]
    assert len(header) <= 5
    about = header[-1]
    assert f'<a href="https://github.com/octo/app/commit/{HEAD}"><code>{HEAD[:7]}</code></a>' \
        in about
    assert '<a href="https://github.com/octo/app/actions/runs/42">run</a>' in about
    assert f'<a href="https://github.com/octo/app/runs/{check_id}">check run</a>' in about
    assert "actions/runs/42#artifacts" in about
    assert "Slowest tests" not in body and "Heaviest" not in body and "mermaid" not in body


def test_comment_changes_edits_only_when_the_findings_change(tmp_path: Path, env: Path,
                                                              ghapi: GhApi) -> None:
    assert post(failing_dir(tmp_path), "--comment", "changes") == 0
    assert post(failing_dir(tmp_path), "--comment", "changes") == 0
    assert _comment_writes(ghapi) == ["POST"]  # same verdict and findings: left as it is
    other = write_results_dir(tmp_path / "other", failures=[("tests/test_bad.py::test_y", "no")])
    assert post(other, "--comment", "changes") == 0
    assert _comment_writes(ghapi) == ["POST", "PATCH"]
    assert "test\\_y" in comments(ghapi)[0]["body"]


def test_comment_off_writes_none_and_always_writes_on_green(tmp_path: Path, env: Path,
                                                            ghapi: GhApi) -> None:
    assert post(failing_dir(tmp_path), "--comment", "off") == 0
    assert comments(ghapi) == [] and len(ghapi.state.check_runs) == 1
    assert post(write_results_dir(tmp_path / "green", passed=4), "--comment", "always") == 0
    (only,) = comments(ghapi)
    assert "passed" in only["body"] and "green again" not in only["body"]  # its first comment


def test_the_tiers_comment_key_is_read_from_the_results(tmp_path: Path, env: Path,
                                                         ghapi: GhApi) -> None:
    results = write_results_dir(tmp_path / "res", failures=[("tests/test_bad.py::test_x", "no")],
                                settings={"comment": "off"})
    assert post(results) == 0
    assert comments(ghapi) == []
    assert post(results, "--comment", "on-failure") == 0  # the option wins
    assert len(comments(ghapi)) == 1


def test_comment_and_check_run_carry_nothing_hostile(tmp_path: Path, env: Path,
                                                     ghapi: GhApi) -> None:
    assert post(failing_dir(tmp_path)) == 0
    body = comments(ghapi)[0]["body"]
    (check,) = ghapi.state.check_runs.values()
    everything = json.dumps([body, check])
    assert "<script>" not in body and "@everyone" not in body
    assert SECRET not in everything
    assert not any(line.lstrip().startswith("::") for line in body.splitlines())


def test_check_run_with_chunked_annotations(tmp_path: Path, env: Path, ghapi: GhApi) -> None:
    results = failing_dir(tmp_path, [leak(i) for i in range(120)] + [timeout_finding()])
    assert post(results) == 0
    writes = [r for r in ghapi.writes() if "check-runs" in r["path"]]
    assert writes[0]["method"] == "POST" and writes[0]["body"]["head_sha"] == HEAD
    assert all(r["method"] == "PATCH" for r in writes[1:]) and len(writes) == 3
    assert all(len(r["body"]["output"]["annotations"]) <= 50 for r in writes)
    (check,) = ghapi.state.check_runs.values()
    notes = check["output"]["annotations"]
    # 120 leaks + the failure + the hang on its culprit's line and on the test's line
    assert len(notes) == 123
    hang = [n for n in notes if n["title"].startswith("tiergate timeout")]
    assert {(n["path"], n["start_line"]) for n in hang} == {("src/app/db.py", 88),
                                                           ("tests/test_hang.py", 7)}
    assert check["conclusion"] == "failure"
    assert "tiergate:fingerprints v1" in check["output"]["text"]


def test_findings_known_on_the_base_commit_are_marked(tmp_path: Path, env: Path,
                                                      ghapi: GhApi) -> None:
    results = failing_dir(tmp_path, [leak(0), leak(2)])
    old = fingerprint.of_run(load_run([results]))
    known = [p for p in old if p == fingerprint.of_finding(
        load_run([results]).findings[0])]
    ghapi.add_check_run(BASE, "tiergate (fast)", known_marker(known))
    assert post(results) == 0
    body = comments(ghapi)[0]["body"]
    assert "*(known)*" in body and "**new**" in body
    assert body.index("test\\_2</code> **new**") < body.index("test\\_0</code> *(known)*")


def test_a_racing_duplicate_is_removed_and_user_comments_are_left_alone(
        tmp_path: Path, env: Path, ghapi: GhApi) -> None:
    ghapi.add_comment(7, f"{marker('fast')}\nold one")
    ghapi.add_comment(7, f"{marker('fast')}\nduplicate from a racing run")
    user = ghapi.add_comment(7, f"quoting {marker('fast')}", login="someone", type_="User")
    assert post(failing_dir(tmp_path)) == 0
    left = comments(ghapi)
    assert len(left) == 2 and user in left
    ours = next(c for c in left if c is not user)
    assert ours["id"] == 1001 and "Failures" in ours["body"]


def test_green_again_updates_the_comment(tmp_path: Path, env: Path, ghapi: GhApi) -> None:
    assert post(failing_dir(tmp_path)) == 0
    green = write_results_dir(tmp_path / "green", passed=4)
    assert post(green) == 0
    (only,) = comments(ghapi)
    assert "All green again" in only["body"] and "passed" in only["body"]


@pytest.mark.parametrize(("allow", "conclusion"), [(False, "failure"), (True, "neutral")])
def test_a_run_without_tests_is_no_success(tmp_path: Path, env: Path, ghapi: GhApi,
                                           allow: bool, conclusion: str) -> None:
    assert post(write_results_dir(tmp_path / "none", passed=0,
                                  settings={"allow-no-tests": allow})) == 0
    (check,) = ghapi.state.check_runs.values()
    assert check["conclusion"] == conclusion
    assert check["output"]["title"].startswith("no tests ran: 0 passed")
    assert len(comments(ghapi)) == (0 if allow else 1)


def test_allowed_no_tests_after_a_failure_is_not_all_green(tmp_path: Path, env: Path,
                                                          ghapi: GhApi) -> None:
    assert post(failing_dir(tmp_path)) == 0
    assert post(write_results_dir(tmp_path / "none", passed=0,
                                  settings={"allow-no-tests": True})) == 0
    (only,) = comments(ghapi)
    assert "All green again" not in only["body"] and "⚠️ **No tests ran**" in only["body"]


def test_a_cancelled_run_is_a_cancelled_check_run(tmp_path: Path, env: Path,
                                                  ghapi: GhApi) -> None:
    results = write_results_dir(tmp_path / "res", passed=2)
    with (results / "events.jsonl").open("a") as log:
        log.write(json.dumps({"event": "cancelled", "t": 9e9, "pid": 1, "signal": "SIGINT"})
                  + "\n")
    assert post(results) == 0
    (check,) = ghapi.state.check_runs.values()
    assert check["conclusion"] == "cancelled"
    assert check["output"]["title"].startswith("cancelled (SIGINT): 2 passed")
    (comment,) = comments(ghapi)
    assert "🛑" in comment["body"] and "All green" not in comment["body"]


def test_a_green_run_without_an_earlier_comment_posts_none(tmp_path: Path, env: Path,
                                                          ghapi: GhApi) -> None:
    assert post(write_results_dir(tmp_path / "green", passed=4)) == 0
    assert comments(ghapi) == [] and len(ghapi.state.check_runs) == 1


def test_comments_are_found_across_pages(tmp_path: Path, env: Path, ghapi: GhApi) -> None:
    for i in range(250):
        ghapi.add_comment(7, f"chatter {i}", login="someone", type_="User")
    ghapi.add_comment(7, f"{marker('fast')}\nours")
    assert post(failing_dir(tmp_path)) == 0
    assert sum(marker("fast") in c["body"] for c in comments(ghapi)) == 1
    listed = [r for r in ghapi.requests if r["path"].endswith("/issues/7/comments")
              and r["method"] == "GET"]
    assert len(listed) >= 3  # followed Link: rel="next"


def test_fork_token_exits_0_with_a_notice(tmp_path: Path, env: Path, ghapi: GhApi,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ghapi.config.fork = True
    assert post(failing_dir(tmp_path)) == 0
    assert post(failing_dir(tmp_path), "--fail-on-error") == 0
    out = capsys.readouterr().out
    assert "::notice title=tiergate post::" in out and "read-only" in out
    assert comments(ghapi) == []


def test_a_502_on_the_first_write_is_retried(tmp_path: Path, env: Path, ghapi: GhApi) -> None:
    ghapi.config.fail_writes = 1
    assert post(failing_dir(tmp_path), "--fail-on-error") == 0
    statuses = [r["status"] for r in ghapi.writes()]
    assert statuses[0] == 502 and statuses[1] == 201
    assert len(ghapi.state.check_runs) == 1 and len(comments(ghapi)) == 1


def test_missing_token_is_one_line_and_exit_0(tmp_path: Path, env: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    results = failing_dir(tmp_path)
    assert post(results) == 0
    assert capsys.readouterr().out.strip().count("\n") == 0
    assert post(results, "--fail-on-error") == 2
    assert "set GITHUB_TOKEN" in capsys.readouterr().err


def test_nightly_issue_opened_updated_and_closed(tmp_path: Path, env: Path, ghapi: GhApi,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    env.write_text(json.dumps({"schedule": "0 3 * * *"}))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "schedule")
    results = failing_dir(tmp_path)
    assert post(results) == 0
    (issue,) = ghapi.state.issues.values()
    assert issue["state"] == "open" and issue["labels"] == [{"name": "tiergate"}]
    assert post(results) == 0
    assert len(ghapi.state.issues) == 1
    assert ("PATCH", "/repos/octo/app/issues/1") in [(r["method"], r["path"])
                                                    for r in ghapi.writes()]
    assert post(write_results_dir(tmp_path / "green", passed=2)) == 0
    assert issue["state"] == "closed" and issue["state_reason"] == "completed"
    closing = [c for c in comments(ghapi) if c["issue_number"] == 1]
    assert len(closing) == 1 and "passes again" in closing[0]["body"]
    assert comments(ghapi) == closing  # no PR comment on a scheduled run


def test_client_honours_retry_after_and_rate_limit_reset() -> None:
    waits: list[float] = []
    client = GitHubClient("http://127.0.0.1:9", "t", sleep=waits.append, clock=lambda: 1000.0)
    limited = GitHubError(429, "slow down", "GET", "/x", {"Retry-After": "7"})
    assert client._retry_wait(limited, 1) == 7
    reset = GitHubError(403, "API rate limit exceeded", "GET", "/x",
                        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1030"})
    assert client._retry_wait(reset, 1) == 31
    assert client._retry_wait(GitHubError(502, "", "GET", "/x"), 2) == 2
    assert client._retry_wait(GitHubError(404, "", "GET", "/x"), 1) is None
    too_long = GitHubError(429, "", "GET", "/x", {"Retry-After": "3600"})
    assert client._retry_wait(too_long, 1) is None


def test_client_sends_the_token_only_to_the_api_host() -> None:
    client = GitHubClient("http://127.0.0.1:9", "t")
    with pytest.raises(GitHubError, match="another host"):
        client.url("https://evil.example/next?page=2")


def test_check_run_stand_in_rejects_what_github_rejects(ghapi: GhApi) -> None:
    client = GitHubClient(ghapi.url, "t", retries=0)
    too_many = [{"path": "a.py", "start_line": 1, "end_line": 1,
                 "annotation_level": "warning", "message": "m"}] * 51
    with pytest.raises(GitHubError) as exc:
        client.post("/repos/o/r/check-runs", {"name": "x", "head_sha": HEAD,
                                              "output": {"title": "t", "summary": "s",
                                                         "annotations": too_many}})
    assert exc.value.status == 422
    with pytest.raises(GitHubError) as exc:
        client.post("/repos/o/r/check-runs", {"name": "x", "head_sha": HEAD, "output": {
            "title": "t", "summary": "s" * 65_536}})
    assert exc.value.status == 422


def test_a_fork_pull_request_is_found_for_a_workflow_run(
    tmp_path: Path, env: Path, ghapi: GhApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub leaves workflow_run.pull_requests empty for forks: the PR is looked up by the fork's
    owner:branch, and only one whose head is the tested commit gets the comment."""
    env.write_text(json.dumps({"workflow_run": {
        "event": "pull_request", "head_sha": HEAD, "head_branch": "fix-db", "pull_requests": [],
        "head_repository": {"owner": {"login": "contributor"}}}}))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "workflow_run")
    ghapi.state.pulls += [
        {"number": 11, "head": {"label": "contributor:fix-db", "sha": "d" * 40},
         "base": {"sha": BASE}},
        {"number": 12, "head": {"label": "contributor:fix-db", "sha": HEAD},
         "base": {"sha": BASE}},
    ]
    assert post(failing_dir(tmp_path)) == 0
    assert [c["issue_number"] for c in comments(ghapi)] == [12]
    assert [r["head_sha"] for r in ghapi.state.check_runs.values()] == [HEAD]


def test_the_tier_option_names_the_check_run_not_the_artifact(
        tmp_path: Path, env: Path, ghapi: GhApi, capsys: pytest.CaptureFixture[str]) -> None:
    """A fork's artifact says which tier it is; the workflow's --tier decides what is posted."""
    results = write_results_dir(tmp_path / "res", tier="evil\n::error::pwned",
                                failures=[("tests/test_bad.py::test_x", HOSTILE)])
    assert post(results, "--tier", "fast") == 0
    (check,) = ghapi.state.check_runs.values()
    assert check["name"] == "tiergate (fast)"
    (comment,) = comments(ghapi)
    assert comment["body"].startswith(marker("fast"))
    assert "tiergate · tier fast" in comment["body"]
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "tiergate post: input:" in line]
    assert len(notes) == 2  # the invalid name, and the tier it is reported as instead
    assert "they are reported as tier fast (--tier)" in notes[1]
    assert not [line for line in out.splitlines() if line.lstrip().startswith("::")]


def test_without_the_tier_option_an_invalid_name_is_replaced(tmp_path: Path, env: Path,
                                                             ghapi: GhApi) -> None:
    results = write_results_dir(tmp_path / "res", tier="evil\n::error::pwned",
                                failures=[("tests/test_bad.py::test_x", "boom")])
    assert post(results) == 0
    (check,) = ghapi.state.check_runs.values()
    assert check["name"] == "tiergate ((invalid tier name))"
    assert "replaced 1 invalid tier name" in comments(ghapi)[0]["body"]


def test_a_bad_tier_option_is_one_line_and_exit_0(tmp_path: Path, env: Path, ghapi: GhApi,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert post(failing_dir(tmp_path), "--tier", "a b\n::error::x") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "is not a tier name" in out
    assert not out.lstrip().startswith("::") and ghapi.writes() == []


def in_repository(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x = 1\n")


def test_a_monorepo_project_annotates_paths_from_the_repository_root(
        tmp_path: Path, env: Path, ghapi: GhApi, monkeypatch: pytest.MonkeyPatch) -> None:
    # The action runs post in its working-directory, services/api; GITHUB_WORKSPACE is tmp_path.
    project = tmp_path / "services" / "api"
    in_repository(project, "sample_app/__init__.py", "tests/test_bad.py")
    in_repository(tmp_path, "libs/shared/pool.py")  # a frame under the repository, not the project
    monkeypatch.chdir(project)
    side_effect = finding("import-side-effect", None, "sample_app starts a thread at import",
                          location={"path": "sample_app/__init__.py", "line": 3},
                          culprit={"path": "libs/shared/pool.py", "line": 12, "function": "start"})
    assert post(failing_dir(project, [side_effect, timeout_finding()])) == 0
    (check,) = ghapi.state.check_runs.values()
    places = {(n["path"], n["start_line"]) for n in check["output"]["annotations"]}
    assert places == {("services/api/sample_app/__init__.py", 3), ("libs/shared/pool.py", 12),
                      ("services/api/tests/test_bad.py", 10),
                      ("services/api/src/app/db.py", 88), ("services/api/tests/test_hang.py", 7)}


def test_a_huge_cjk_failure_gives_an_accepted_check_run_with_every_annotation(
        tmp_path: Path, env: Path, ghapi: GhApi) -> None:
    # 3 and 4 bytes a character: 64 K characters of it are ~200 KB, three times the limit
    text = "データベースに接続できません🙈" * 4_400
    failures = [(f"tests/test_bad.py::test_{i}", text) for i in range(60)]
    results = write_results_dir(tmp_path / "res", failures=failures)
    assert post(results) == 0
    refused = [r for r in ghapi.writes() if "check-runs" in r["path"] and r["status"] >= 400]
    assert refused == []
    (check,) = ghapi.state.check_runs.values()
    notes = check["output"]["annotations"]
    assert len(notes) == 60
    for note in notes:
        assert len(note["raw_details"].encode()) <= 65_535 and "\ufffd" not in note["raw_details"]
        assert note["raw_details"].endswith(text[-200:])  # the end, where the error is, is kept
        assert len(note["title"].encode()) <= 255 and len(note["message"].encode()) <= 65_535
    assert len(check["output"]["summary"].encode()) <= 65_535


def test_every_annotation_chunk_keeps_the_fingerprints(tmp_path: Path, env: Path,
                                                       ghapi: GhApi) -> None:
    # An update replaces the output it carries (the stand-in takes that stricter reading): the
    # fingerprints must survive the last PATCH, or the next commit sees every finding as new.
    results = failing_dir(tmp_path, [leak(i) for i in range(120)])
    assert post(results) == 0
    patches = [r for r in ghapi.writes() if r["method"] == "PATCH" and "check-runs" in r["path"]]
    assert len(patches) == 2
    (check,) = ghapi.state.check_runs.values()
    prints = fingerprint.of_run(load_run([results], []))
    assert set(prints) <= parse_prints(check["output"]["text"]) and prints


def test_the_stand_in_refuses_annotation_fields_over_their_limits(ghapi: GhApi) -> None:
    client = GitHubClient(ghapi.url, "t", retries=0)
    note = {"path": "a.py", "start_line": 1, "end_line": 1, "annotation_level": "failure",
            "message": "m"}
    for field, value in (("message", "名" * 21_846), ("raw_details", "é" * 32_768),
                         ("title", "x" * 256)):
        with pytest.raises(GitHubError) as exc:
            client.post("/repos/o/r/check-runs", {"name": "x", "head_sha": HEAD, "output": {
                "title": "t", "summary": "s", "annotations": [{**note, field: value}]}})
        assert exc.value.status == 422 and field in exc.value.message
    with pytest.raises(GitHubError) as exc:  # 21,846 characters, 65,538 bytes
        client.post("/repos/o/r/check-runs", {"name": "x", "head_sha": HEAD,
                                              "output": {"title": "t", "summary": "名" * 21_846}})
    assert exc.value.status == 422


def dispatch(env: Path, monkeypatch: pytest.MonkeyPatch, environment: str,
             branch: str = "main") -> None:
    env.write_text(json.dumps({"inputs": {"environment": environment},
                               "repository": {"default_branch": "main"}}))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "workflow_dispatch")
    monkeypatch.setenv("GITHUB_REF_NAME", branch)


def test_issues_are_kept_per_environment_and_per_branch(tmp_path: Path, env: Path, ghapi: GhApi,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    failing, green = failing_dir(tmp_path), write_results_dir(tmp_path / "green", passed=2)
    dispatch(env, monkeypatch, "production-canary")
    assert post(failing, "--tier", "staging") == 0
    (canary,) = ghapi.state.issues.values()
    assert canary["title"] == "tiergate: tier staging (production-canary) is failing"
    dispatch(env, monkeypatch, "staging")
    assert post(green, "--tier", "staging") == 0  # another environment passing closes nothing
    dispatch(env, monkeypatch, "production-canary", branch="feature-x")
    assert post(green, "--tier", "staging") == 0  # nor does the same one on another branch
    assert canary["state"] == "open" and len(ghapi.state.issues) == 1
    names = {run["name"] for run in ghapi.state.check_runs.values()}
    assert names == {"tiergate (staging · production-canary)", "tiergate (staging · staging)"}
    dispatch(env, monkeypatch, "production-canary")
    assert post(green, "--tier", "staging") == 0
    assert canary["state"] == "closed"
