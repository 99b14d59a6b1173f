"""Fingerprints: the identity of a finding or a failure across commits, for "new vs. known".

A fingerprint leaves out what moves when unrelated code changes (line numbers, pids, sizes, times)
and keeps what the problem is: its kind, the test, and where it happens (file and function)."""

from __future__ import annotations

import hashlib

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
