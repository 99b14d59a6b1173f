"""Taking a process-tree dump on behalf of the supervisor and turning it into a dump file and a
culprit. The dump itself lives in ``tiergate.diagnose.dump``; this is the one place the
supervisor asks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from tiergate.protocol.findings import Culprit

if TYPE_CHECKING:  # the culprit code is imported when a dump is taken, not at the start of a run
    from tiergate.diagnose.culprit import FixtureInFlight


@dataclasses.dataclass(frozen=True)
class SavedDump:
    path: str | None  # relative to the results dir
    culprit: Culprit | None
    problem: str | None = None  # why there is no dump, when there is none
    fixture: FixtureInFlight | None = None  # the fixture the stuck test was in (its stack)


def dump_tree(
    root_pid: int,
    *,
    results_dir: Path,
    run_dir: Path,
    project_root: Path,
    name: str,
    reason: str,
    stuck_pid: int | None = None,
) -> SavedDump:
    try:
        from tiergate.diagnose.dump import save_dump, take_tree_dump

        dump = take_tree_dump(
            root_pid, run_dir=run_dir, project_root=project_root, reason=reason, stuck_pid=stuck_pid
        )
        return SavedDump(save_dump(results_dir, name, dump), dump.culprit, fixture=dump.fixture)
    except Exception as exc:  # a dump that fails must not stop the escalation that asked for it
        return SavedDump(None, None, f"{type(exc).__name__}: {exc}")


def dump_name(kind: str, nodeid: str | None, attempt: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in (nodeid or "run"))[-120:]
    return f"{kind}-{attempt}-{safe}"
