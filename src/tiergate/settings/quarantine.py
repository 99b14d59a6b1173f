"""``[tool.tiergate.quarantine]``: tests known to be flaky or broken, with who owns them and
until when. A quarantined test still runs and its result is reported, but its failure does not
fail the tier; an entry past its ``until`` date is an error (``quarantine-expired``), so a
quarantine cannot become permanent by neglect.

```toml
[tool.tiergate.quarantine."tests/test_api.py::test_upload"]
reason = "the upload mock races the server"
issue = "https://github.com/o/r/issues/12"
owner = "@alice"
until = 2026-07-01
```

The table's keys are node ids or ``fnmatch`` patterns (``tests/test_api.py::test_upload*``).
"""

from __future__ import annotations

import datetime
import fnmatch
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tiergate.errors import ConfigError

FIELDS = ("reason", "issue", "owner", "until")
REQUIRED = ("reason", "until")  # an entry nobody can explain or that never ends is no quarantine


class QuarantineEntry:
    """One entry. A plain class, not a dataclass: the plugin imports this on every run, and
    making a dataclass costs more than the rest of the module."""

    __slots__ = ("issue", "owner", "reason", "test", "until")

    def __init__(self, test: str, reason: str, until: datetime.date, issue: str = "",
                 owner: str = "") -> None:
        self.test = test  # a node id or an fnmatch pattern of node ids
        self.reason = reason
        self.until = until
        self.issue = issue
        self.owner = owner

    def _fields(self) -> tuple[object, ...]:
        return self.test, self.reason, self.until, self.issue, self.owner

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuarantineEntry) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"QuarantineEntry(test={self.test!r}, reason={self.reason!r}, "
                f"until={self.until!r}, issue={self.issue!r}, owner={self.owner!r})")

    def matches(self, nodeid: str) -> bool:
        return nodeid == self.test or fnmatch.fnmatchcase(nodeid, self.test)

    def expired(self, today: datetime.date) -> bool:
        return today > self.until

    def to_json(self, today: datetime.date) -> dict[str, Any]:
        return {"test": self.test, "reason": self.reason, "issue": self.issue,
                "owner": self.owner, "until": self.until.isoformat(),
                "expired": self.expired(today)}


def parse_quarantine(section: object, path: Path) -> tuple[QuarantineEntry, ...]:
    """The entries of ``[tool.tiergate.quarantine]`` in *section* (``[tool.tiergate]``)."""
    table = section.get("quarantine", {}) if isinstance(section, dict) else {}
    where = f"{path}: [tool.tiergate.quarantine]"
    if not isinstance(table, dict):
        raise ConfigError(f'{where} must be a table of tests, such as ["tests/test_a.py::t"]')
    return tuple(_entry(test, fields, f'{where}."{test}"') for test, fields in table.items())


def _entry(test: str, fields: object, where: str) -> QuarantineEntry:
    if not isinstance(fields, dict):
        raise ConfigError(f"{where} must be a table with {', '.join(FIELDS)}")
    unknown = [key for key in fields if key not in FIELDS]
    if unknown:
        raise ConfigError(f"{where} unknown key {unknown[0]!r}: allowed keys are "
                          f"{', '.join(FIELDS)}")
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        raise ConfigError(f"{where} needs {' and '.join(missing)} (until = 2026-07-01: the date "
                          "the quarantine ends)")
    until = fields["until"]
    if isinstance(until, datetime.datetime):
        until = until.date()
    if not isinstance(until, datetime.date):
        try:
            until = datetime.date.fromisoformat(str(until))
        except ValueError:
            raise ConfigError(f"{where} until = {until!r} is not valid: use a date such as "
                              "2026-07-01") from None
    texts = {key: fields.get(key, "") for key in ("reason", "issue", "owner")}
    for key, value in texts.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where} {key} = {value!r} is not valid: use a string")
    return QuarantineEntry(test=test, until=until, **texts)


def load_quarantine(pyproject: Path | None) -> tuple[QuarantineEntry, ...]:
    """The project's entries (none without a pyproject.toml)."""
    if pyproject is None:
        return ()
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{pyproject}: cannot read it as TOML: {exc}") from None
    return parse_quarantine(data.get("tool", {}).get("tiergate"), pyproject)


def entry_for(nodeid: str, entries: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first entry (as the ``quarantine`` event carries it) that covers *nodeid*."""
    for entry in entries:
        test = str(entry.get("test", ""))
        if nodeid == test or fnmatch.fnmatchcase(nodeid, test):
            return entry
    return None
