"""Findings: what tiergate tells a person beyond pass/fail, and ``findings.json``, the contract that
other tools read (schema in DESIGN.md)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast, get_args

from tiergate.protocol.layout import EVENTS_FILE
from tiergate.protocol.layout import FINDINGS_FILE as FINDINGS_FILE

SCHEMA = 1

# What a finding is about. findings.json and the finding event carry it as a string; a kind
# from a newer writer is kept as it came (the reports show it and rank it last).
FindingKind = Literal[
    "timeout",
    "job-timeout",
    "collect-timeout",
    "exit-hang",
    "crash",
    "run-error",
    "leak-thread",
    "leak-process",
    "leak-fd",
    "leak-socket",
    "leak-memory",
    "leak-task",
    "env-changed",
    "network-blocked",
    "import-side-effect",
    "resource-pressure",
    "reproduction-fixed",
    "leftover-process",
    "resource-warning",
    "shards",
    "flaky",
    "quarantine-expired",
]
KINDS: tuple[FindingKind, ...] = get_args(FindingKind)
LEAK_KINDS: frozenset[FindingKind] = frozenset(k for k in KINDS if k.startswith("leak-"))
TIMEOUT_KINDS: frozenset[FindingKind] = frozenset(
    {"timeout", "job-timeout", "collect-timeout", "exit-hang"})

# Importance for ordering reports: what stops a pipeline first, then what corrupts the next run.
_ORDER: tuple[FindingKind, ...] = (
    "run-error",
    "shards",
    "job-timeout",
    "collect-timeout",
    "timeout",
    "exit-hang",
    "crash",
    "resource-pressure",
    "network-blocked",
    "leak-memory",
    "leak-process",
    "leak-thread",
    "leak-socket",
    "leak-fd",
    "leak-task",
    "leftover-process",
    "import-side-effect",
    "env-changed",
    "resource-warning",
    "quarantine-expired",
    "flaky",
    "reproduction-fixed",
)
_RANK = {kind: rank for rank, kind in enumerate(_ORDER)}


@dataclasses.dataclass(frozen=True)
class Location:
    """A place in the project: a path relative to its root, and a line when known."""

    path: str
    line: int | None


@dataclasses.dataclass(frozen=True)
class Culprit:
    """The line a hang or a kill is blamed on, and why it is stuck there when that is known."""

    path: str
    line: int | None
    function: str
    reason: str | None = None  # why it is stuck, where that can be read ("recv on 127.0.0.1:5432")
    pid: int | None = None


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing the run found, of a kind from ``FindingKind``: what every report lists."""

    kind: FindingKind
    test: str | None
    severity: str  # "error" | "warning"
    message: str
    location: Location | None = None
    culprit: Culprit | None = None
    dump: str | None = None  # path relative to the results dir
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def culprit_label(self) -> str:
        """How a report introduces the culprit: where a hang is stuck, where a leak was made."""
        if self.kind in TIMEOUT_KINDS or self.kind in ("crash", "resource-pressure"):
            return "stuck at"
        if self.kind in LEAK_KINDS or self.kind == "leftover-process":
            return "created at"
        return "at"

    @property
    def rank(self) -> tuple[int, int]:
        return (0 if self.severity == "error" else 1, _RANK.get(self.kind, len(_RANK)))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "test": self.test,
            "severity": self.severity,
            "message": self.message,
            "location": dataclasses.asdict(self.location) if self.location else None,
        }
        if self.culprit:
            data["culprit"] = {
                k: v for k, v in dataclasses.asdict(self.culprit).items() if v is not None
            }
        if self.dump:
            data["dump"] = self.dump
        if self.details:
            data["details"] = dict(self.details)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """The finding in a ``findings.json`` entry or a ``finding`` event. A field of the wrong
        type (a list for a message, an int for a test, a string for a location) raises TypeError:
        what is read from a file is untrusted, and its reader skips the record and counts it."""
        if not isinstance(data, Mapping):
            raise TypeError("a finding is a JSON object")
        location = _opt(data.get("location"), Mapping, "location")
        culprit = _opt(data.get("culprit"), Mapping, "culprit")
        details = _opt(data.get("details"), Mapping, "details")
        return cls(
            # A newer writer's kind stays the string it is (see FindingKind).
            kind=cast(FindingKind, _req(data["kind"], str, "kind")),
            test=_opt(data.get("test"), str, "test"),
            severity="warning" if data.get("severity") == "warning" else "error",
            message=_opt(data.get("message"), str, "message") or "",
            location=Location(_req(location.get("path"), str, "location.path"),
                              _line(location.get("line"))) if location else None,
            culprit=Culprit(
                path=_opt(culprit.get("path"), str, "culprit.path") or "",
                line=_line(culprit.get("line")),
                function=_opt(culprit.get("function"), str, "culprit.function") or "",
                reason=_opt(culprit.get("reason"), str, "culprit.reason"),
                pid=_line(culprit.get("pid")),
            )
            if culprit
            else None,
            dump=_opt(data.get("dump"), str, "dump"),
            details=dict(details or {}),
        )


def event_log_lost(how: str) -> Finding:
    """The finding of a run whose ``events.jsonl`` a test, a fixture or a cleanup step deleted,
    replaced (both: the run's events were kept and put back) or truncated (what was cut is gone,
    and the results may miss tests): an error, so the verdict is never green for it."""
    where = f"{EVENTS_FILE} was {how} during the run (by a test, a fixture or a cleanup step)"
    if how == "truncated":
        message = (f"{where}: the events written before the cut are lost, so tests that ran "
                   "before it can be missing from the results; the suite overwrites files it "
                   "did not make")
    else:
        message = (f"{where}; tiergate kept the run's events and restored the file, but the "
                   "suite deletes files it did not make")
    return Finding(kind="run-error", test=None, severity="error", message=message)


def _req(value: Any, kind: type[Any], what: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"finding: {what} is {type(value).__name__}, not {kind.__name__}")
    return value


def _opt(value: Any, kind: type[Any], what: str) -> Any:
    return None if value is None else _req(value, kind, what)


def _line(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise TypeError(f"finding: a line or pid is {type(value).__name__}, not int")
    return value


def write_findings(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
