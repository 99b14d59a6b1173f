"""Fingerprints: the identity of a finding or a failure across commits, for "new vs. known".

A fingerprint leaves out what moves when unrelated code changes (line numbers, pids, sizes, times)
and keeps what the problem is: its kind, the test, and where it happens (file and function)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection

from tiergate.protocol.findings import Finding
from tiergate.results.model import RunResult, TestResult

LENGTH = 12  # hex digits: 48 bits, no collisions to speak of among a few thousand findings


def _digest(*parts: str | None) -> str:
    data = "\x1f".join(p or "" for p in parts).encode("utf-8", "replace")
    return hashlib.sha256(data).hexdigest()[:LENGTH]


def of_finding(finding: Finding) -> str:
    where = ""
    if finding.culprit is not None:
        where = f"{finding.culprit.path}:{finding.culprit.function}"
    elif finding.location is not None:
        where = finding.location.path
    return _digest("finding", finding.kind, finding.test, where)


def of_failure(test: TestResult) -> str:
    return _digest("test", test.outcome, test.nodeid)


def of_run(run: RunResult) -> list[str]:
    """Every fingerprint of the run, deduplicated, in a stable order."""
    prints = [of_finding(f) for f in run.sorted_findings()]
    prints += [of_failure(t) for t in run.tests.values() if t.failing]
    return list(dict.fromkeys(prints))


def state(run: RunResult) -> str:
    """The verdict and the findings, as one hash: what `comment: changes` compares."""
    return _digest("state", run.outcome, str(run.ok), *sorted(of_run(run)))


@dataclasses.dataclass(frozen=True)
class Delta:
    """The run against its base commit, in the units the counts line uses: failing tests and
    findings, each counted once, so "new" + "still" is every problem the run reports."""

    new_failures: int
    new_findings: int
    still: int  # failing tests and findings the base commit had too
    fixed: int  # problems the base commit had that this run does not

    @property
    def any(self) -> bool:
        return bool(self.new_failures or self.new_findings or self.still or self.fixed)


def compare(run: RunResult, known: Collection[str]) -> Delta:
    """Counted per failing test and per finding (not per distinct fingerprint), as the counts
    line counts them."""
    known = set(known)
    failures = [of_failure(t) for t in run.tests.values() if t.failing]
    findings = [of_finding(f) for f in run.findings]
    items = failures + findings
    return Delta(new_failures=sum(1 for p in failures if p not in known),
                 new_findings=sum(1 for p in findings if p not in known),
                 still=sum(1 for p in items if p in known),
                 fixed=len(known - set(items)))
