"""One module per ``tiergate`` subcommand: ``add_parser(subparsers, name)`` and a handler."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_project_option(parser: argparse.ArgumentParser) -> None:
    """``--project DIR``: the commands that read a project's tiers share it."""
    parser.add_argument(
        "--project",
        type=Path,
        default=Path.cwd(),
        metavar="DIR",
        help="the project directory (default: the current directory)",
    )
