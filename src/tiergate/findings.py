"""Findings: what tiergate tells a person beyond pass/fail, and ``findings.json``, the contract that
other tools read (schema in DESIGN.md)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = 1
FINDINGS_FILE = "findings.json"

KINDS = (
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
)
LEAK_KINDS = frozenset(k for k in KINDS if k.startswith("leak-"))
TIMEOUT_KINDS = frozenset({"timeout", "job-timeout", "collect-timeout", "exit-hang"})

# Importance for ordering reports: what stops a pipeline first, then what corrupts the next run.
_RANK = {
    kind: rank
    for rank, kind in enumerate(
        (
            "run-error",
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
            "reproduction-fixed",
        )
    )
}


@dataclasses.dataclass(frozen=True)
class Location:
    path: str
    line: int | None


@dataclasses.dataclass(frozen=True)
class Culprit:
    path: str
    line: int | None
    function: str
    reason: str | None = None  # why it is stuck, where that can be read ("recv on 127.0.0.1:5432")
    pid: int | None = None


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str
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
        location = data.get("location")
        culprit = data.get("culprit")
        return cls(
            kind=str(data["kind"]),
            test=data.get("test"),
            severity="warning" if data.get("severity") == "warning" else "error",
            message=str(data.get("message", "")),
            location=Location(str(location["path"]), location.get("line")) if location else None,
            culprit=Culprit(
                path=str(culprit.get("path", "")),
                line=culprit.get("line"),
                function=str(culprit.get("function", "")),
                reason=culprit.get("reason"),
                pid=culprit.get("pid"),
            )
            if culprit
            else None,
            dump=data.get("dump"),
            details=dict(data.get("details") or {}),
        )


def write_findings(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
