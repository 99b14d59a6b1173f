"""The gate of a sharded tier: the merge step's check that every shard it expects reported, once,
and that together they ran each selected test exactly once. A required status check sits on the
merge job, so a shard that never reported (cancelled, its artifact lost) must fail it: otherwise
the check is green for a quarter of the suite.

Each results dir says which shard it was (``run-start``'s ``shard``) and which tests it had
(``collected``); where a shard recorded its plan (``selected``: the tier's tests before the
split), a test in no shard is caught too.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.protocol.findings import Finding
from tiergate.results.model import RunResult

SHOWN = 5  # shards or tests a finding names; the rest are counted


def shard_findings(runs: Sequence[RunResult], expected: int) -> list[Finding]:
    """Error findings for what the *runs* (one per results dir) lack as *expected* shards."""
    found: list[Finding] = []
    reported: dict[int, RunResult] = {}
    for run in runs:
        where = run.sources[0] if run.sources else "a result"
        if run.shard is None:
            found.append(_error(f"shards: {where} is not a shard's result (no shard recorded); "
                                f"expected shards 1 to {expected}"))
        elif run.shard[1] != expected:
            found.append(_error(f"shards: {where} is shard {run.shard[0]}/{run.shard[1]}, but "
                                f"{expected} shards are expected (--expect-shards)"))
        elif run.shard[0] in reported:
            found.append(_error(f"shards: shard {run.shard[0]}/{expected} reported twice "
                                f"({_source(reported[run.shard[0]])} and {where})"))
        else:
            reported[run.shard[0]] = run
            if run.cancelled:
                found.append(_error(f"shards: shard {run.shard[0]}/{expected} was cancelled "
                                    f"({run.cancelled}) before its tests ended"))
    missing = [k for k in range(1, expected + 1) if k not in reported]
    if missing:
        named = ", ".join(f"{k}/{expected}" for k in missing[:SHOWN])
        more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
        word = "shard" if len(missing) == 1 else "shards"
        found.append(_error(f"shards: {expected - len(missing)} of {expected} reported; "
                            f"{word} {named}{more} missing", details={"missing": missing}))
    return found + _coverage(reported, expected)


def _coverage(reported: dict[int, RunResult], expected: int) -> list[Finding]:
    """Each test in one shard only; with a plan, each selected test in some shard."""
    owners: dict[str, list[int]] = {}
    for k, run in sorted(reported.items()):
        for nodeid in dict.fromkeys([*run.tests, *run.not_run]):
            owners.setdefault(nodeid, []).append(k)
    found = []
    twice = {n: ks for n, ks in owners.items() if len(ks) > 1}
    if twice:
        shown = "; ".join(f"{n} (shards {', '.join(map(str, ks))})"
                          for n, ks in list(twice.items())[:SHOWN])
        found.append(_error(f"shards: {_tests(len(twice))} ran in more than one shard: "
                            f"{shown}{_more(len(twice))}", tests=list(twice)))
    plan = dict.fromkeys(n for run in reported.values() for n in run.selected)
    if plan and len(reported) == expected:  # a missing shard is reported above, once
        nowhere = [n for n in plan if n not in owners]
        if nowhere:
            found.append(_error(f"shards: {_tests(len(nowhere))} selected but in no shard: "
                                f"{', '.join(nowhere[:SHOWN])}{_more(len(nowhere))}",
                                tests=nowhere))
    return found


def _error(message: str, *, tests: list[str] | None = None,
           details: dict[str, object] | None = None) -> Finding:
    extra = dict(details or {})
    if tests:
        extra["tests"] = tests[:50]
    return Finding(kind="shards", test=None, severity="error", message=message, details=extra)


def _source(run: RunResult) -> str:
    return run.sources[0] if run.sources else "a result"


def _tests(count: int) -> str:
    return f"{count} test" + ("" if count == 1 else "s")


def _more(count: int) -> str:
    return f" and {count - SHOWN} more" if count > SHOWN else ""
