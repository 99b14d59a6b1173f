"""The action, the workflow templates and this repository's workflows are clean for zizmor and valid
for GitHub's own JSON schemas, and no workflow pastes ``${{ }}`` into a script."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ACTION = REPO / "action.yml"
TEMPLATES = sorted((REPO / "workflows-templates").glob("*.yml"))
OWN_WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _tool(name: str) -> str:
    """The tool next to this Python (the test extra installs it there), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' installs it)")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_zizmor_finds_nothing() -> None:
    files = [str(p.relative_to(REPO)) for p in [ACTION, *TEMPLATES, *OWN_WORKFLOWS]]
    result = _run(_tool("zizmor"), "--offline", "--no-progress", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_action_matches_githubs_schema() -> None:
    result = _run(
        _tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", "action.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_match_githubs_schema() -> None:
    files = [str(p.relative_to(REPO)) for p in [*TEMPLATES, *OWN_WORKFLOWS]]
    result = _run(
        _tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _scripts(document: object) -> list[str]:
    """Every ``run:`` script in a workflow or action document."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "run" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_scripts(value))
    elif isinstance(document, list):
        for item in document:
            found.extend(_scripts(item))
    return found


@pytest.mark.parametrize(
    "path", [ACTION, *TEMPLATES, *OWN_WORKFLOWS], ids=lambda p: str(p.relative_to(REPO))
)
def test_inputs_reach_scripts_through_env_only(path: Path) -> None:
    for script in _scripts(yaml.safe_load(path.read_text())):
        assert not re.search(r"\$\{\{", script), f"{path.name}: ${{{{ }}}} inside run:\n{script}"


def test_every_remote_action_is_pinned_to_a_commit_sha() -> None:
    for path in [ACTION, *TEMPLATES, *OWN_WORKFLOWS]:
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if not match or match[1].startswith("./") or match[1].startswith("OWNER/tiergate@"):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match[1]), (path.name, line)
            assert re.match(r"\s*# v\d+\.\d+\.\d+$", match[2]), f"{path.name}: no version: {line}"


@pytest.mark.parametrize("command", ["report", "post"])
def test_the_action_names_the_tier_for_report_and_post(command: str) -> None:
    """The results may come from a fork's artifact (fork-report.yml): the tier in headings, the
    check run and the comment is the action's own input, passed as --tier, never the artifact's."""
    steps = yaml.safe_load(ACTION.read_text())["runs"]["steps"]
    (step,) = [s for s in steps if f"-m tiergate {command} " in s.get("run", "")]
    assert step["env"]["TIERGATE_TIER"] == "${{ inputs.tier }}"
    script = step["run"]
    (call,) = [line for line in script.splitlines() if f"-m tiergate {command} " in line]
    assert '"${args[@]}"' in call
    assert re.search(r'^\s*args=\("--tier=\$TIERGATE_TIER"\)$', script, re.MULTILINE), script
    assert not re.search(r"^\s*args=\(\)", script, re.MULTILINE)  # not reset after it
    # The setup step admits only names that `tiergate report --tier` takes (1 to 64 of
    # [A-Za-z0-9_.-]), so the two can never disagree.
    setup = next(s for s in steps if s.get("id") == "setup")["run"]
    assert "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$" in setup


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_the_cancelled_run_step_uses_what_the_action_used(path: Path) -> None:
    """With `working-directory` or `python`, a hard-coded .tiergate/TIER or `python` reports
    nothing: the step reads the interpreter, results dir and project the action wrote down."""
    steps = [step for job in yaml.safe_load(path.read_text())["jobs"].values()
             for step in job["steps"] if step.get("if") == "cancelled()"]
    if path.name == "fork-report.yml":
        assert steps == []  # it runs no tests
        return
    (step,) = steps
    assert "tiergate-last-run" in step["run"]
    assert ".tiergate/" not in step["run"] and "python -m" not in step["run"]
    setup = next(s for s in yaml.safe_load(ACTION.read_text())["runs"]["steps"]
                 if s.get("id") == "setup")["run"]
    assert '"${RUNNER_TEMP:-/tmp}/tiergate-last-run"' in setup


def _cache_steps(template: str, kind: str) -> list[dict[str, object]]:
    """The template's actions/cache/{restore,save} steps of the flake history, by job."""
    jobs = yaml.safe_load((REPO / "workflows-templates" / template).read_text())["jobs"]
    return [dict(step, job=name) for name, job in jobs.items() for step in job["steps"]
            if str(step.get("uses", "")).startswith(f"actions/cache/{kind}@")
            and step.get("with", {}).get("path") == ".tiergate-history"]


@pytest.mark.parametrize(("template", "saving_job"), [("pr.yml", "fast"),
                                                       ("nightly.yml", "report")])
def test_the_templates_keep_the_flake_history(template: str, saving_job: str) -> None:
    """Issue 20: the history is restored before it is read and saved where the run is counted,
    saved only where it exists (no cache warning for a tier without `history`)."""
    restores, saves = _cache_steps(template, "restore"), _cache_steps(template, "save")
    assert restores and [s["job"] for s in saves] == [saving_job]
    prefix = f"tiergate-history-{template.split('.')[0].replace('pr', 'fast')}-"
    assert all(r["with"]["restore-keys"] == prefix for r in restores)  # type: ignore[index]
    assert str(saves[0]["with"]["key"]).startswith(prefix)  # type: ignore[index]
    assert "hashFiles('.tiergate-history/flakes.json')" in str(saves[0]["if"])


def test_pull_requests_read_mains_history_and_never_save_their_own() -> None:
    [save] = _cache_steps("pr.yml", "save")
    assert "github.event_name == 'push'" in str(save["if"])
