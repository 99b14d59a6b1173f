"""Retries of a test the supervisor had to end: a hard timeout, or pytest dying in it.

pytest cannot run such a test again itself (it is gone), so the supervisor decides: where the
tier retries that kind (``retry-kinds`` has ``timeout`` for a hard timeout, ``crash`` for a
crash), the message matches ``retry-on`` and the test has a retry left, the killed attempt is
a ``test-attempt`` event (with its dump) and the test is not finished: the resumed pytest runs
it first, told its attempts so far (RunSpec.attempts_before), and plugin/retries.py goes on
from there as for an attempt that failed in-process.

Under xdist pytest is not resumed (only the stuck worker is killed, xdist replaces it): the
xdist controller hands the test back to a worker by the same rules (plugin/crashretry.py).

How many retries a test has is pytest's to say (markers override the tier); it writes them
to the run dir (protocol/runspec.py) and this reads them only when a test is killed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tiergate.protocol.runspec import read_retry_allowance
from tiergate.settings.config import Tier


class KillRetries:
    def __init__(self, tier: Tier, run_dir: Path) -> None:
        self.tier = tier
        self.run_dir = run_dir
        self._patterns = [re.compile(p) for p in tier.retry_on]
        # node id -> attempt number -> what it ended in; from the log and from kills
        self._failed: dict[str, dict[int, dict[str, Any]]] = {}
        self.pending: set[str] = set()  # killed, and to run again in the resumed pytest

    def noted(self, record: dict[str, Any]) -> None:
        """A ``test-attempt`` read from the log (pytest's own retries, or ours read back)."""
        number = int(record.get("attempt") or len(self._failed.get(record["nodeid"], {})) + 1)
        self._failed.setdefault(record["nodeid"], {})[number] = {
            "attempt": number, "outcome": record.get("outcome") or "failed",
            "message": record.get("message")}

    def again(self, nodeid: str, kind: str, message: str) -> int | None:
        """The number of the killed attempt when the test gets another, else None."""
        if kind not in self.tier.retry_kinds:
            return None
        if self._patterns and not any(p.search(message) for p in self._patterns):
            return None
        used = len(self._failed.get(nodeid, {})) + 1  # the attempts before, and this one
        allowance = read_retry_allowance(self.run_dir)
        allowed = self.tier.retries if allowance is None else allowance.get(nodeid, 0)
        if used > allowed:
            return None
        self.noted({"nodeid": nodeid, "attempt": used,
                    "outcome": "timeout" if kind == "timeout" else "failed", "message": message})
        self.pending.add(nodeid)
        return used

    def before(self, left: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
        """What the resumed pytest is told: the failed attempts of the tests run again."""
        return {n: [self._failed[n][k] for k in sorted(self._failed[n])]
                for n in left if n in self.pending}
