"""The record of each event kind: its fields and their types, defined once.

The writers (supervisor, plugin, treewatch) emit these fields; ``results/model.py`` reads them,
and ``results/inputs.py`` checks them when the log is untrusted. Each field's type says two
things: its Python type (for mypy, in the readers' handlers) and, through ``Annotated``, what
kind of value it is (a short name, a long text, a count...), which is how a reader of untrusted
input checks and cuts it. ``Required`` fields are those a reader cannot do without; a record
missing one is skipped and counted (``results/model.py``, the one place). Every other field may
be missing: an older writer may not know it, and None is the same as missing.

Not imported on the per-test path: writers use the kind constants in ``events.py``.
"""

# No ``from __future__ import annotations``: TypedDict reads NotRequired from the evaluated
# annotations, and with string annotations Python 3.11 takes every field as required.
import types
import typing
from typing import Annotated, Any, Literal, NotRequired, TypedDict, Union

from tiergate.protocol import events as ev


class Value:
    """What a field holds beyond its Python type: how an untrusted value of it is checked."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Value({self.name!r})"


NAME = Value("name")  # a node id, path, tier, signal: short, cut at a reader's name limit
TEXT = Value("text")  # a message, traceback or captured output: long, its middle may be cut
INT = Value("int")  # a count, pid, line, exit status
NUMBER = Value("number")  # a finite number: wall-clock seconds, bytes, a limit
DURATION = Value("duration")  # seconds something took: a value that is none reads as 0
OUTCOME = Value("outcome")  # one of OUTCOMES
TIER = Value("tier")  # a tier name
SETTINGS = Value("settings")  # a tier's settings: scalars by key
NAMES = Value("names")  # node ids, as many as a run has tests
VERDICTS = Value("verdicts")  # a leak check's verdict per kind of leak
RSS_PER_TEST = Value("rss per test")  # bytes by node id
CULPRIT = Value("culprit")  # a findings.json culprit
FINDING = Value("finding")  # a findings.json entry
JSON = Value("json")  # any small JSON no report reads field by field
FLAG = Value("flag")  # true or false

Name = Annotated[str, NAME]
Text = Annotated[str, TEXT]
Int = Annotated[int, INT]
Number = Annotated[float, NUMBER]
Duration = Annotated[float, DURATION]
Json = Annotated[Any, JSON]

# A test's outcome, as the plugin writes it in test-finish and every report reads it.
Outcome = Literal["passed", "failed", "skipped", "xfailed", "xpassed", "timeout", "error"]
OUTCOMES: tuple[Outcome, ...] = typing.get_args(Outcome)


class Event(TypedDict):
    """What every event has."""

    event: Name  # its kind
    t: Number  # wall-clock seconds
    pid: NotRequired[Int]
    worker: NotRequired[Name | None]  # the xdist worker ("gw0") that wrote it


class RunStart(Event):
    tier: NotRequired[Annotated[str, TIER]]
    settings: NotRequired[Annotated[dict[str, Any], SETTINGS]]
    args: NotRequired[Json]  # pytest's arguments (supervisor only)
    root: NotRequired[Name]  # the project root (supervisor only)
    shard: NotRequired[Json]  # [index, count], or None
    supervised: NotRequired[Annotated[bool, FLAG]]


class AttemptStart(Event):
    attempt: NotRequired[Int]
    argv: NotRequired[Json]
    only: NotRequired[Int | None]  # how many tests are left to run, or None for all


class SessionStart(Event):
    attempt: NotRequired[Int]


class CollectStart(Event):
    nodeid: Name  # the module being collected
    path: NotRequired[Name]
    timeout: NotRequired[Number | None]  # the tier's collect-timeout


class CollectFinish(Event):
    nodeid: Name


class Collected(Event):
    tests: NotRequired[Annotated[list[str], NAMES]]
    # A shard's plan: every test the tier selected before the split (the merge checks that
    # each is in exactly one shard).
    selected: NotRequired[Annotated[list[str], NAMES]]


class TestStart(Event):
    nodeid: Name
    path: NotRequired[Name | None]
    line: NotRequired[Int | None]
    timeout: NotRequired[Number | None]  # the test's limit, None for none


class TestFinish(Event):
    nodeid: Name
    path: NotRequired[Name | None]
    line: NotRequired[Int | None]
    outcome: NotRequired[Annotated[Outcome, OUTCOME]]  # missing reads as failed
    duration: NotRequired[Duration]
    timeout: NotRequired[Number | None]  # the limit applied, None for none
    phase: NotRequired[Name]  # setup, call, teardown or collect: where it failed
    message: NotRequired[Text]  # one line: why it failed or was skipped
    longrepr: NotRequired[Text]
    stdout: NotRequired[Text]
    stderr: NotRequired[Text]
    dump: NotRequired[Name | None]  # results-dir-relative path of the hang dump
    peak_rss: NotRequired[Int]
    reproduces: NotRequired[Name]  # the bug id of a @pytest.mark.reproduces test


class TestAttempt(Event):  # plugin/retries.py: an attempt that failed and is run again
    nodeid: Name
    attempt: NotRequired[Int]  # 1 for the first run of the test
    outcome: NotRequired[Annotated[Outcome, OUTCOME]]  # failed, error or timeout
    duration: NotRequired[Duration]
    phase: NotRequired[Name]
    message: NotRequired[Text]
    longrepr: NotRequired[Text]
    stdout: NotRequired[Text]
    stderr: NotRequired[Text]
    dump: NotRequired[Name | None]


class QuarantineEvent(Event):  # plugin/retries.py: [tool.tiergate.quarantine], once per run
    entries: NotRequired[Json]  # [{test, reason, issue, owner, until, expired}]


class Slow(Event):  # supervisor: the test passed half of its limit
    nodeid: Name
    elapsed: NotRequired[Number]
    limit: NotRequired[Number | None]
    culprit: NotRequired[Annotated[dict[str, Any] | None, CULPRIT]]
    dump: NotRequired[Name | None]


class FindingEvent(Event):
    finding: Annotated[dict[str, Any], FINDING]


class LeakCheck(Event):  # plugin: a suspect test run again
    nodeid: Name
    repeats: NotRequired[Int]
    seconds: NotRequired[Duration]
    kinds: NotRequired[Annotated[dict[str, str], VERDICTS]]
    result: NotRequired[Name]  # leak, no leak or inconclusive
    suspected: NotRequired[Json]  # what was suspected, in words
    again: NotRequired[Json]  # what was left again by the repeats
    released: NotRequired[Json]  # the suspects someone closed or ended meanwhile, in words
    reason: NotRequired[Text]  # why inconclusive
    memory: NotRequired[Json]  # rss_grew, traced, rss


class HardTimeout(Event):
    nodeid: Name
    test_pid: NotRequired[Int]
    message: NotRequired[Text]
    dump: NotRequired[Name | None]


class SessionFinish(Event):
    exitstatus: NotRequired[Int]
    blocking: NotRequired[Json]  # non-daemon threads alive, with where they are; or None


class CollectTimeout(Event):
    nodeid: Name  # the module
    path: NotRequired[Name]
    message: NotRequired[Text]
    dump: NotRequired[Name | None]


class ExitHang(Event):
    waited: NotRequired[Number]
    blocking: NotRequired[Json]
    dump: NotRequired[Name | None]


class PytestExit(Event):
    attempt: NotRequired[Int]
    returncode: NotRequired[Int]
    signal: NotRequired[Name | None]


class BudgetExpired(Event):
    budget: NotRequired[Number]
    nodeid: NotRequired[Name | None]  # the test in flight
    dump: NotRequired[Name | None]


class MaxFail(Event):  # supervisor: the tier's max-fail reached, pytest stopped
    failures: Int
    limit: Int
    nodeids: NotRequired[Annotated[list[str], NAMES]]  # in flight: stopped, not run


class NetworkPolicy(Event):  # plugin/netmarker.py: a test run under its own network policy
    nodeid: Name
    policy: NotRequired[Name]  # as TIERGATE_NETWORK carries it
    tier_policy: NotRequired[Name]  # the tier's, which it replaced


class Cancelled(Event):
    signal: NotRequired[Name]
    nodeid: NotRequired[Name | None]  # the test in flight
    dump: NotRequired[Name | None]


class Sample(Event):  # treewatch: the process tree now
    attempt: NotRequired[Int]
    nodeid: NotRequired[Name | None]  # the test blamed, if any
    tests: NotRequired[Annotated[dict[str, int], RSS_PER_TEST]]  # tree RSS per test in flight
    rss: NotRequired[Number]
    cpu: NotRequired[Number]
    cpu_percent: NotRequired[Number]
    threads: NotRequired[Int]
    fds: NotRequired[Int]
    processes: NotRequired[Int]
    biggest: NotRequired[Json]  # pid, rss, cmdline of the biggest process


class ResourcePressure(Event):  # treewatch: pytest was killed for the tree outgrowing a limit
    nodeid: NotRequired[Name | None]  # the test blamed
    resource: NotRequired[Name]
    value: NotRequired[Number]
    limit: NotRequired[Number]
    dump: NotRequired[Name | None]
    message: NotRequired[Text]


class Debugger(Event):  # plugin: a debugger became active in a test, or went away
    nodeid: Name
    active: NotRequired[Annotated[bool, FLAG]]  # the supervisor's limit waits while it is


class RunFinish(Event):
    exit_code: NotRequired[Int | None]
    duration: NotRequired[Number]


# The record of every kind: ev.KINDS, each with its fields.
RECORDS: dict[str, type[Event]] = {
    ev.RUN_START: RunStart,
    ev.ATTEMPT_START: AttemptStart,
    ev.SESSION_START: SessionStart,
    ev.COLLECT_START: CollectStart,
    ev.COLLECT_FINISH: CollectFinish,
    ev.COLLECTED: Collected,
    ev.TEST_START: TestStart,
    ev.TEST_FINISH: TestFinish,
    ev.TEST_ATTEMPT: TestAttempt,
    ev.QUARANTINE: QuarantineEvent,
    ev.SLOW: Slow,
    ev.FINDING: FindingEvent,
    ev.LEAK_CHECK: LeakCheck,
    ev.HARD_TIMEOUT: HardTimeout,
    ev.SESSION_FINISH: SessionFinish,
    ev.COLLECT_TIMEOUT: CollectTimeout,
    ev.EXIT_HANG: ExitHang,
    ev.PYTEST_EXIT: PytestExit,
    ev.BUDGET_EXPIRED: BudgetExpired,
    ev.CANCELLED: Cancelled,
    ev.SAMPLE: Sample,
    ev.RESOURCE_PRESSURE: ResourcePressure,
    ev.RUN_FINISH: RunFinish,
    ev.DEBUGGER: Debugger,
    ev.MAX_FAIL: MaxFail,
    ev.NETWORK_POLICY: NetworkPolicy,
}


def fields_of(record: type[Event]) -> dict[str, Value]:
    """Each field of a record with what it holds (the ``Annotated`` mark of its type)."""
    # A TypedDict's __annotations__ already holds its bases' fields too, evaluated (this module
    # has no `from __future__ import annotations`): what get_type_hints(include_extras=True)
    # returns, without its walk of every class, which a report's start paid for each record.
    hints: dict[str, Any] = record.__annotations__
    return {name: _value_of(name, hint) for name, hint in hints.items()}


def _value_of(name: str, hint: Any) -> Value:
    while typing.get_origin(hint) in (NotRequired, typing.Required):
        (hint,) = typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):  # X | None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is Annotated:
        for mark in hint.__metadata__:
            if isinstance(mark, Value):
                return mark
    raise TypeError(f"event field {name!r}: its type says no Value (Name, Text, ...)")


# The fields a record of each kind cannot be read without (``event`` is how it was found).
REQUIRED: dict[str, frozenset[str]] = {
    kind: frozenset(vars(record)["__required_keys__"]) - {"event"}
    for kind, record in RECORDS.items()
}
