"""``tiergate quarantine list|add|remove``: the ``[tool.tiergate.quarantine]`` entries of
pyproject.toml, for people who prefer a command to editing the file.

The file is edited as text (an entry is one table, appended or cut out whole), so the rest of
it, comments and layout included, stays as the user wrote it; it is read back after each edit,
and an edit that would leave it unreadable is not written.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path
from typing import Any

from tiergate.cli.options import add_project_option
from tiergate.errors import ConfigError, UsageError
from tiergate.settings.config import find_pyproject
from tiergate.settings.quarantine import QuarantineEntry, load_quarantine


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help="list, add or remove quarantined tests ([tool.tiergate.quarantine])",
        description="Quarantined tests run and are reported, but their failures do not fail "
        "the tier until their `until` date; then the entry is a quarantine-expired error.")
    add_project_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the entries, expired ones marked")
    add = actions.add_parser("add", help="quarantine a test (a node id or an fnmatch pattern)")
    add.add_argument("test")
    add.add_argument("--reason", required=True, help="why it is quarantined")
    add.add_argument("--until", required=True, type=_date, metavar="YYYY-MM-DD",
                     help="the last day of the quarantine")
    add.add_argument("--issue", default="", help="the issue that tracks the fix")
    add.add_argument("--owner", default="", help="who fixes it")
    remove = actions.add_parser("remove", help="end a test's quarantine")
    remove.add_argument("test")
    parser.set_defaults(handler=run)


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date such as 2026-07-01") from None


def run(args: argparse.Namespace) -> int:
    pyproject = find_pyproject(args.project.resolve())
    if pyproject is None:
        raise UsageError(f"no pyproject.toml in {args.project} or above it: create one first")
    if args.action == "list":
        return _list(load_quarantine(pyproject))
    if args.action == "add":
        entry = QuarantineEntry(test=args.test, reason=args.reason, until=args.until,
                                issue=args.issue, owner=args.owner)
        _add(pyproject, entry)
        print(f"tiergate: quarantined {args.test} until {args.until} in {pyproject}")
    else:
        _remove(pyproject, args.test)
        print(f"tiergate: {args.test} is no longer quarantined in {pyproject}")
    return 0


def _list(entries: tuple[QuarantineEntry, ...]) -> int:
    if not entries:
        print("no quarantined tests")
        return 0
    today = datetime.date.today()
    for entry in entries:
        ended = " (EXPIRED)" if entry.expired(today) else ""
        extra = "".join(f", {v}" for v in (entry.owner, entry.issue) if v)
        print(f"{entry.test}  until {entry.until}{ended}{extra}: {entry.reason}")
    return 0


def _header(test: str) -> str:
    return f"[tool.tiergate.quarantine.{json.dumps(test, ensure_ascii=False)}]"


def _add(pyproject: Path, entry: QuarantineEntry) -> None:
    if any(e.test == entry.test for e in load_quarantine(pyproject)):
        raise UsageError(f"{entry.test} is already quarantined in {pyproject}: remove it first "
                         "to change it")
    lines = [_header(entry.test), f"reason = {json.dumps(entry.reason, ensure_ascii=False)}"]
    lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}"
              for key, value in (("issue", entry.issue), ("owner", entry.owner)) if value]
    lines.append(f"until = {entry.until.isoformat()}")
    text = pyproject.read_text(encoding="utf-8")
    _write_checked(pyproject, text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n",
                   lambda entries: any(e.test == entry.test for e in entries))


def _remove(pyproject: Path, test: str) -> None:
    text = pyproject.read_text(encoding="utf-8")
    header = re.compile(r"^\s*\[\s*tool\s*\.\s*tiergate\s*\.\s*quarantine\s*\.\s*"
                        + re.escape(json.dumps(test, ensure_ascii=False)) + r"\s*\]\s*$")
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        if any(e.test == test for e in load_quarantine(pyproject)):
            raise UsageError(f"{test} is quarantined in {pyproject} in a form this command "
                             "does not edit: remove it by hand")
        raise UsageError(f"{test} is not quarantined in {pyproject} (see tiergate quarantine "
                         "list)")
    end = start + 1
    while end < len(lines) and not lines[end].lstrip().startswith("["):
        end += 1
    before = "".join(lines[:start]).rstrip("\n")
    after = "".join(lines[end:]).strip("\n")
    kept = "\n\n".join(part for part in (before, after) if part)
    kept = kept + "\n" if kept else ""
    _write_checked(pyproject, kept, lambda entries: all(e.test != test for e in entries))


def _write_checked(pyproject: Path, text: str, wanted: Any) -> None:
    """Write *text*, read it back, and put the old file back unless *wanted* holds."""
    old = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text, encoding="utf-8")
    try:
        ok = wanted(load_quarantine(pyproject))
    except ConfigError:
        ok = False
    if not ok:
        pyproject.write_text(old, encoding="utf-8")
        raise UsageError(f"{pyproject}: the edit did not read back as intended; the file is "
                         "unchanged, edit [tool.tiergate.quarantine] by hand")
