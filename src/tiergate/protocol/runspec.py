"""What the supervisor tells pytest about the run it is part of.

The supervisor writes one JSON file and passes its path with ``--tiergate-run``; a command-line
option rather than an environment variable, so a pytest started *by a test* (pytester, a nested
run) never mistakes itself for part of this run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from tiergate.protocol import layout
from tiergate.settings.config import Tier


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What one pytest run under a tier is asked to do, as the supervisor hands it over (or as
    a plain ``pytest --tier`` run works it out)."""

    tier: Tier
    results_dir: Path
    run_dir: Path  # scratch space of this run: stacks files of registered processes, resume lists
    attempt: int = 1
    only: tuple[str, ...] | None = None  # resume: run just these node ids
    shard: tuple[int, int] | None = None  # (k, n), 1-based
    durations_from: tuple[str, ...] = ()  # earlier results dirs / files that balance shards
    supervised: bool = True
    events_path: Path | None = None  # where writers append; default results_dir/events.jsonl
    # resume after a hard timeout or crash that is retried: node id -> its failed attempts so
    # far ({attempt, outcome, message}), so the resumed pytest numbers and tells the next one
    attempts_before: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    @property
    def events_file(self) -> Path:
        """The event log to append to: under the supervisor, the descriptor it holds (so a
        deleted or replaced file name loses nothing), else the file in the results dir."""
        return self.events_path or self.results_dir / layout.EVENTS_FILE

    def write(self, path: Path) -> Path:
        data: dict[str, Any] = {
            "tier": self.tier.to_json(),
            "results_dir": str(self.results_dir),
            "run_dir": str(self.run_dir),
            "attempt": self.attempt,
            "only": list(self.only) if self.only is not None else None,
            "shard": list(self.shard) if self.shard else None,
            "durations_from": list(self.durations_from),
            "supervised": self.supervised,
            "events_path": str(self.events_path) if self.events_path else None,
            "attempts_before": self.attempts_before,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        data = json.loads(path.read_text(encoding="utf-8"))
        shard = data.get("shard")
        return cls(
            tier=Tier.from_json(data["tier"]),
            results_dir=Path(data["results_dir"]),
            run_dir=Path(data["run_dir"]),
            attempt=int(data.get("attempt", 1)),
            only=tuple(data["only"]) if data.get("only") is not None else None,
            shard=(int(shard[0]), int(shard[1])) if shard else None,
            durations_from=tuple(data.get("durations_from") or ()),
            supervised=bool(data.get("supervised", True)),
            events_path=Path(data["events_path"]) if data.get("events_path") else None,
            attempts_before=dict(data.get("attempts_before") or {}),
        )


def _allowance_file(run_dir: Path) -> Path:
    return run_dir / "retry-allowance.json"


def _write_json(path: Path, data: object) -> None:
    scratch = path.with_name(f"{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(data), encoding="utf-8")
    scratch.replace(path)  # a reader never sees half a file


def write_retry_allowance(run_dir: Path, allowed: dict[str, int]) -> None:
    """pytest tells the supervisor how many retries each test has (markers override the
    tier), so a test the supervisor kills is handed back only while it has one left."""
    _write_json(_allowance_file(run_dir), allowed)


def read_retry_allowance(run_dir: Path) -> dict[str, int] | None:
    """The retries per test that pytest wrote, or None where it wrote none (then the tier's
    ``retries`` is every test's)."""
    try:
        data = json.loads(_allowance_file(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else None


def _killed_file(run_dir: Path) -> Path:
    return run_dir / "xdist-killed-attempts.json"


def write_killed_attempts(run_dir: Path, attempts: dict[str, list[dict[str, Any]]]) -> None:
    """The xdist controller tells the workers the attempts so far of each test it handed back
    after its worker died (plugin/crashretry.py): whichever worker gets it goes on from there."""
    _write_json(_killed_file(run_dir), attempts)


def read_killed_attempts(run_dir: Path, nodeid: str) -> list[dict[str, Any]]:
    """The failed attempts of *nodeid* before its worker died, as the controller wrote them."""
    try:
        data = json.loads(_killed_file(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    attempts = data.get(nodeid) if isinstance(data, dict) else None
    return [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
