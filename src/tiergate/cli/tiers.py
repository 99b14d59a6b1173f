"""``tiergate tiers``: each tier's settings, how many tests it selects, and the tests none runs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tiergate.cli.options import add_project_option
from tiergate.errors import UsageError
from tiergate.settings.config import Config, load_config


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help="list the tiers, what each selects, and the tests no tier selects",
        description="List each tier with its settings and the number of tests it selects "
        "(one collection with pytest), and name the tests that no tier selects.",
    )
    add_project_option(parser)
    parser.add_argument(
        "--no-collect", action="store_true", help="only show the settings; do not collect tests"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def collect(config: Config, pytest_args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tiergate-tiers-") as tmp:
        spec = Path(tmp) / "tiers.json"
        out = Path(tmp) / "out.json"
        spec.write_text(json.dumps([t.to_json() for t in config.tiers.values()]))
        proc = subprocess.run(
            [sys.executable, "-m", "tiergate.plugin.tierlist", str(spec), str(out), *pytest_args],
            cwd=config.root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"collecting the tests in {config.root} failed: {tail[0]}")
        result: dict[str, Any] = json.loads(out.read_text())
        if result.get("exit") not in (0, 5):
            errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERROR")]
            result["collection_errors"] = errors
        return result


def run(args: argparse.Namespace) -> int:
    if not args.project.is_dir():
        raise UsageError(f"--project {args.project}: no such directory")
    config = load_config(args.project.resolve())
    collected = None if args.no_collect else collect(config, list(args.pytest_args))
    if args.json:
        print(
            json.dumps(
                {
                    "source": str(config.source) if config.source else None,
                    "tiers": {n: t.describe() for n, t in config.tiers.items()},
                    "selection": collected,
                },
                indent=2,
            )
        )
        return 0
    print(f"tiers from {config.source or 'the defaults (no [tool.tiergate] in pyproject.toml)'}")
    for name, tier in config.tiers.items():
        count = "" if collected is None else f"  {len(collected['tiers'][name])} tests"
        about = f" — {tier.description}" if tier.description else ""
        print(f"\n{name}{count}{about}")
        for key, value in tier.describe().items():
            if key == "description":
                continue  # shown beside the name
            if isinstance(value, bool):
                value = str(value).lower()  # as TOML writes it
            if value not in (None, [], ""):
                print(f"  {key:<14} {value}")
    if collected is not None:
        chosen = {n for ids in collected["tiers"].values() for n in ids}
        orphans = [n for n in collected["tests"] if n not in chosen]
        print(f"\n{len(collected['tests'])} tests collected; {len(orphans)} selected by no tier")
        for nodeid in orphans:
            print(f"  not in any tier: {nodeid}")
        for line in collected.get("collection_errors", []):
            print(f"  {line}")
    return 0
