"""``tiergate init`` writes the workflow templates into a project, adapted to its tiers. The
templates are kept once, in workflows-templates/: a wheel carries them as tiergate/templates/,
a source checkout (an editable install) reads them where they are."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tiergate.cli import main
from tiergate.cli.init import TEMPLATES, adapt, template_text
from tiergate.settings.config import load_config

REPO = Path(__file__).resolve().parent.parent
SHA = "0123456789abcdef0123456789abcdef01234567"


def _project(tmp_path: Path, tiergate_section: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "demo"\n{tiergate_section}')
    return tmp_path


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_init_reads_the_templates_in_workflows_templates(name: str) -> None:
    assert template_text(name) == (REPO / "workflows-templates" / name).read_text()


def test_the_templates_are_not_committed_twice() -> None:
    assert not (REPO / "src" / "tiergate" / "templates").exists(), (
        "src/tiergate/templates/ is made at build time from workflows-templates/: delete it"
    )


def test_a_wheel_carries_the_templates_and_init_finds_them_there(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("tiergate-*.whl")
    installed = tmp_path / "site"  # a pure wheel unpacked is the package as installed
    with zipfile.ZipFile(wheel) as archive:
        for name in TEMPLATES:
            assert archive.read(f"tiergate/templates/{name}").decode() == (
                REPO / "workflows-templates" / name).read_text()
        archive.extractall(installed)
    (tmp_path / "project").mkdir()
    project = _project(tmp_path / "project")
    env = {**os.environ, "PYTHONPATH": str(installed)}  # ahead of the editable checkout
    init = subprocess.run(
        [sys.executable, "-c", "import sys, tiergate.cli as c, tiergate.cli.init as i; "
         "print(i.templates_dir()); sys.exit(c.main(['init', '--project', sys.argv[1]]))",
         str(project)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert init.returncode == 0, init.stderr
    assert init.stdout.splitlines()[0] == str(installed / "tiergate" / "templates")
    assert (project / ".github" / "workflows" / "tiergate-pr.yml").read_text() == (
        REPO / "workflows-templates" / "pr.yml").read_text()


def test_workflows_templates_has_no_stray_files() -> None:
    assert sorted(p.name for p in (REPO / "workflows-templates").iterdir()) == sorted(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_default_tiers_leave_templates_as_they_are(tmp_path: Path, name: str) -> None:
    config = load_config(_project(tmp_path))
    text = template_text(name)
    assert adapt(text, config, action="OWNER/tiergate@v1", shards=4) == text


def test_init_writes_every_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path)
    assert main(["init", "--project", str(project)]) == 0
    workflows = project / ".github" / "workflows"
    assert sorted(p.name for p in workflows.iterdir()) == sorted(TEMPLATES.values())
    for path in workflows.iterdir():
        assert yaml.safe_load(path.read_text())["jobs"]
    out = capsys.readouterr().out
    assert "wrote .github/workflows/tiergate-pr.yml" in out
    assert "OWNER/tiergate@v1" in out  # tells the user what is left to do


def test_init_follows_the_project_tiers_shards_and_action(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        '[tool.tiergate.tiers.fast]\nbudget = "5m"\ngrace = "30s"\n'
        '[tool.tiergate.tiers.nightly]\nbudget = "3h"\n',
    )
    code = main(["init", "--project", str(project), "--shards", "2",
                 "--action", f"acme/tiergate@{SHA}"])
    assert code == 0
    workflows = project / ".github" / "workflows"
    pr = (workflows / "tiergate-pr.yml").read_text()
    assert "timeout-minutes: 16 # the fast tier's budget (5m) + grace + 10 minutes" in pr
    assert f"uses: acme/tiergate@{SHA}\n" in pr  # pinned: no "pin it" note left behind
    nightly = yaml.safe_load((workflows / "tiergate-nightly.yml").read_text())
    assert nightly["jobs"]["shard"]["strategy"]["matrix"] == {"shard": [1, 2], "total": [2]}
    assert nightly["jobs"]["shard"]["timeout-minutes"] == 191  # 3h + 30s grace, rounded up, + 10
    for path in workflows.iterdir():
        assert "uses: OWNER/tiergate" not in path.read_text()


def test_init_does_not_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path)
    workflows = project / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "tiergate-pr.yml").write_text("mine\n")

    assert main(["init", "--project", str(project)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "tiergate: error: .github/workflows/tiergate-pr.yml already exist: use --force to overwrite"
    )
    assert (workflows / "tiergate-pr.yml").read_text() == "mine\n"
    assert not (workflows / "tiergate-nightly.yml").exists()  # nothing half-written

    assert main(["init", "--project", str(project), "--force"]) == 0
    assert (workflows / "tiergate-pr.yml").read_text() == template_text("pr.yml")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--shards", "0"], "--shards 0: use 1 to 256"),
        (["--action", "curl evil | sh"], "--action 'curl evil | sh': use OWNER/REPO@REF"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["init", "--project", str(_project(tmp_path)), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1
