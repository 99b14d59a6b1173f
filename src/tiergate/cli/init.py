"""``tiergate init``: write the workflow templates into a project's ``.github/workflows/``, adapted
to its tiers (each job's backstop timeout follows its tier's budget), its number of nightly shards
and the tiergate action reference it uses.

The templates are kept once, in ``workflows-templates/`` at the repository root. Building a wheel
puts them into the package as ``tiergate/templates/`` (``pyproject.toml``, hatchling's
``force-include``); an editable install or a source checkout reads them where they are.
"""

from __future__ import annotations

import argparse
import math
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from tiergate.cli.options import add_project_option
from tiergate.errors import TiergateError, UsageError
from tiergate.protocol.environ import EXPECT_SHARDS
from tiergate.settings.config import Config, format_duration, load_config

# template file -> the name it gets in .github/workflows/ (prefixed: users have their own pr.yml)
TEMPLATES = {
    "pr.yml": "tiergate-pr.yml",
    "nightly.yml": "tiergate-nightly.yml",
    "staging.yml": "tiergate-staging.yml",
    "fork-report.yml": "tiergate-fork-report.yml",
}
PLACEHOLDER_ACTION = "OWNER/tiergate@v1"
_PIN_NOTE = " # pin to the full commit SHA of the release you adopt"
_BACKSTOP_MARGIN_MINUTES = 10
_TIMEOUT_LINE = re.compile(
    r"^(?P<head>\s*timeout-minutes: )\d+(?P<mid> # the (?P<tier>[\w.-]+) tier's budget \()"
    r"[^)]*(?P<tail>\) \+ grace \+ \d+ minutes)$",
    re.MULTILINE,
)
_SHARD_LINE = re.compile(r"^(?P<head>\s*shard: )\[[\d, ]+\]$", re.MULTILINE)
_TOTAL_LINE = re.compile(
    r"^(?P<head>\s*total: )\[\d+\](?P<tail> # the number of shards above)$", re.MULTILINE
)
_EXPECT_LINE = re.compile(rf'^(?P<head>\s*{EXPECT_SHARDS}: )"\d+"$', re.MULTILINE)
_ACTION_REF = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[\w./-]+$|^\./[\w./-]*$")


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help="write the PR, nightly, staging and fork-report workflows into .github/workflows/",
        description="Write tiergate's workflow templates into the project's .github/workflows/, "
        "adapted to its tiers.",
    )
    parser.add_argument("--force", action="store_true", help="overwrite workflows that exist")
    parser.add_argument(
        "--action",
        default=PLACEHOLDER_ACTION,
        metavar="OWNER/REPO@REF",
        help="how the workflows name the tiergate action; pin it to a full commit SHA "
        f"(default: the placeholder {PLACEHOLDER_ACTION})",
    )
    parser.add_argument(
        "--shards", type=int, default=4, metavar="N", help="nightly shards (default 4)"
    )
    add_project_option(parser)
    parser.set_defaults(handler=run)


def template_text(name: str) -> str:
    return (templates_dir() / name).read_text(encoding="utf-8")


def templates_dir() -> Traversable:
    """The templates: in the installed package (a wheel), else in the checkout the package is
    imported from (``src/tiergate`` -> the repository's ``workflows-templates/``)."""
    packaged = resources.files("tiergate") / "templates"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "workflows-templates"  # cli, tiergate, src
    if checkout.is_dir():
        return checkout
    raise TiergateError(f"the workflow templates are missing from this installation of tiergate "
                        f"(neither {packaged} nor {checkout}); reinstall it")


def adapt(text: str, config: Config, *, action: str, shards: int) -> str:
    """One template adapted to the project: timeouts, shards and the action reference."""

    def timeout(match: re.Match[str]) -> str:
        tier = config.tier(match["tier"])
        minutes = math.ceil((tier.budget + tier.grace) / 60) + _BACKSTOP_MARGIN_MINUTES
        return (
            f"{match['head']}{minutes}{match['mid']}{format_duration(tier.budget)}{match['tail']}"
        )

    text = _TIMEOUT_LINE.sub(timeout, text)
    text = _SHARD_LINE.sub(
        lambda m: m["head"] + "[" + ", ".join(str(k) for k in range(1, shards + 1)) + "]", text
    )
    text = _TOTAL_LINE.sub(lambda m: f"{m['head']}[{shards}]{m['tail']}", text)
    text = _EXPECT_LINE.sub(lambda m: f'{m["head"]}"{shards}"', text)  # the merge's gate
    pinned = re.search(r"@[0-9a-f]{40}$", action) is not None
    text = text.replace(PLACEHOLDER_ACTION + _PIN_NOTE, action + ("" if pinned else _PIN_NOTE))
    return text


def run(args: argparse.Namespace) -> int:
    project: Path = args.project.resolve()
    if not project.is_dir():
        raise UsageError(f"--project {args.project}: no such directory")
    if not 1 <= args.shards <= 256:
        raise UsageError(f"--shards {args.shards}: use 1 to 256 (GitHub's matrix limit)")
    if not _ACTION_REF.match(args.action):
        raise UsageError(f"--action {args.action!r}: use OWNER/REPO@REF, e.g. acme/tiergate@<sha>")
    config = load_config(project)
    target = config.root / ".github" / "workflows"
    planned = {target / dest: src for src, dest in TEMPLATES.items()}
    existing = [path for path in planned if path.exists()]
    if existing and not args.force:
        names = ", ".join(str(p.relative_to(config.root)) for p in existing)
        raise UsageError(f"{names} already exist: use --force to overwrite")
    target.mkdir(parents=True, exist_ok=True)
    for path, src in planned.items():
        text = adapt(template_text(src), config, action=args.action, shards=args.shards)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(config.root)}")
    if args.action == PLACEHOLDER_ACTION:
        print(f"next: replace {PLACEHOLDER_ACTION} with the tiergate repository pinned to a commit "
              "SHA (or run again with --action OWNER/REPO@SHA --force)")
    return 0
