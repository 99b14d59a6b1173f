"""The configuration and CLI references in docs/ are generated from the code by
scripts/gen_docs.py; this fails when a committed page differs, so the docs cannot drift. The
README's commands for a newcomer are the ones .ci/run runs, so they cannot drift either."""

from __future__ import annotations

import re

import pytest
from scripts_loader import REPO, load_script

GEN_DOCS = load_script("gen_docs")


@pytest.mark.parametrize("page", sorted(GEN_DOCS.PAGES))
def test_committed_page_matches_the_code(page: str) -> None:
    path = REPO / "docs" / page
    expected = GEN_DOCS.PAGES[page]()
    assert path.exists(), f"docs/{page} is missing: run python scripts/gen_docs.py"
    assert path.read_text(encoding="utf-8") == expected, (
        f"docs/{page} is out of date with the code: run python scripts/gen_docs.py and commit it"
    )


def test_every_config_key_and_subcommand_is_documented() -> None:
    from tiergate.cli import COMMANDS
    from tiergate.settings.config import TIER_KEYS

    config_md = GEN_DOCS.render_config()
    cli_md = GEN_DOCS.render_cli()
    for key in TIER_KEYS:
        assert f"| `{key}` |" in config_md
    for command in COMMANDS:
        assert f"## tiergate {command}" in cli_md


def test_the_documented_error_lines_are_one_line_each() -> None:
    config_md = GEN_DOCS.render_config()
    errors = [line for line in config_md.splitlines() if "`tiergate: error:" in line]
    assert len(errors) >= 13
    assert all(line.count("tiergate: error:") == 1 for line in errors)


@pytest.mark.parametrize(
    ("guide", "template"),
    [
        ("guide-pr.md", "pr.yml"),
        ("guide-pr.md", "fork-report.yml"),
        ("guide-nightly.md", "nightly.yml"),
        ("guide-staging.md", "staging.yml"),
    ],
)
def test_each_guide_shows_its_template_as_it_is(guide: str, template: str) -> None:
    text = (REPO / "docs" / guide).read_text(encoding="utf-8")
    source = (REPO / "workflows-templates" / template).read_text(encoding="utf-8")
    block = "```yaml\n" + source.rstrip("\n") + "\n```"
    assert block in text, f"docs/{guide} no longer shows workflows-templates/{template} as it is"


def _readme_commands() -> list[str]:
    """The commands of the README's first code block, comments and blank lines left out."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```[a-z]*\n(.*?)^```", readme, re.S | re.M)
    assert block is not None, "README.md has no code block"
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_the_readmes_commands_as_written() -> None:
    commands = _readme_commands()
    assert any(".venv/bin/pip install -e" in c for c in commands), commands  # the set-up
    assert any(re.search(r"&& \.venv/bin/pytest(?: |$)", c) for c in commands), commands  # tests
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    run = [line for line in ci.splitlines() if not line.lstrip().startswith("#")]
    for command in commands:  # a whole command of a line: nothing added to its arguments
        whole = re.compile(r"^\s*" + re.escape(command) + r"\s*(?:$|\|\||&&|;)")
        assert any(whole.match(line) for line in run), (
            f".ci/run no longer runs the README's command as written: {command}")
