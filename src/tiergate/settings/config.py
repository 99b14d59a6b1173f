"""Tiers: read once from ``[tool.tiergate]`` in pyproject.toml, validated, then passed inward as
plain frozen values. Every bad value becomes a ``ConfigError``: the one line a user sees.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tiergate.errors import ConfigError
from tiergate.protocol.redact import use_names
from tiergate.settings.quarantine import QuarantineEntry, parse_quarantine

LEAK_POLICIES = ("fail", "warn", "off")
NETWORK_WORDS = ("any", "loopback", "none")
LEAK_THRESHOLD_KEYS = ("memory", "threads", "processes", "fds", "sockets", "tasks")
MAX_DURATION = 7 * 24 * 3600.0  # no limit of a test or a tier is longer than a week
MAX_WORKERS = 512
MAX_DESCRIPTION = 200  # characters of a tier's one-line description
_MAX_DIGITS = 18  # a longer run of digits is no sane count (and int() refuses 4300+ digits)

# Patterns, not compiled regexes: re compiles each on its first use (and caches it), so a run
# that parses no duration, size or host pays nothing for them at start-up.
_DURATION = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$"
_NOT_FINITE = ("inf", "infinity", "nan")  # as the command line spells what TOML reads as floats
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = r"(?i)^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib|%)?\s*$"
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class DurationRangeError(ValueError):
    """A duration that reads as one but is not finite, or is longer than ``MAX_DURATION``."""


def parse_duration(value: object) -> float:
    """``90``, ``"90"``, ``"90s"``, ``"5m"``, ``"1h"``, ``"250ms"`` → seconds. Raises ValueError
    (``DurationRangeError`` for nan, inf and anything over ``MAX_DURATION``)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := re.match(_DURATION, value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    elif isinstance(value, str) and value.strip().lower().lstrip("+-") in _NOT_FINITE:
        raise DurationRangeError(value)
    else:
        raise ValueError(value)
    if seconds < 0:
        raise ValueError(value)
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise DurationRangeError(value)
    return seconds


def parse_size(value: object, *, total: int | None = None) -> int:
    """``"2GB"``, ``"512MiB"``, ``1000000`` or ``"85%"`` (of *total*) → bytes. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return value
    if isinstance(value, str) and (m := re.match(_SIZE, value)):
        unit = m.group(2).lower() if m.group(2) else None
        number = float(m.group(1))
        if not math.isfinite(number):  # hundreds of digits
            raise ValueError(value)
        if unit == "%":
            if total is None or not 0 < number <= 100:
                raise ValueError(value)
            return int(total * number / 100)
        return int(number * _SIZE_UNITS[unit])
    raise ValueError(value)


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"


# -- the value each key takes: small parsers, named for what they accept ----------------------


class BadValue(Exception):
    """A value a key does not take. The message says what it does take: the end of the user's
    one line. *read_as* is the value as the parser had read it when that differs from what was
    written (``"2"`` read as a count shows as ``2``, a lone path as a list)."""

    def __init__(self, allowed: str, *, read_as: object = None) -> None:
        super().__init__(allowed)
        self.read_as = read_as


def _duration(raw: object) -> float:
    try:
        return parse_duration(raw)
    except DurationRangeError:
        raise BadValue(
            f"a duration must be finite and at most {format_duration(MAX_DURATION)} (7 days)"
        ) from None
    except ValueError:
        raise BadValue("use a duration such as 90, 90s, 5m or 1h") from None


def _duration_above_zero(raw: object) -> float:
    seconds = _duration(raw)
    if seconds <= 0:
        raise BadValue("it must be more than zero")
    return seconds


def _count_of(what: str, low: int, high: int) -> Callable[[object], int]:
    """A parser of a whole number of *what* from *low* to *high* (a TOML integer, not a bool)."""
    def parse(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise BadValue(f"use a whole number of {what} from {low} to {high}")
        return raw
    return parse


def _one_of(*choices: str) -> Callable[[object], str]:
    """A parser of one word among *choices*: "use a, b or c" otherwise."""
    said = ", ".join(choices[:-1]) + " or " + choices[-1]
    def parse(raw: object) -> str:
        if raw not in choices:
            raise BadValue(f"use {said}")
        return str(raw)
    return parse


def _history_folder(raw: object) -> str:
    # a folder the project keeps between runs; "" keeps no history
    if not isinstance(raw, str) or not raw.isprintable() or "\x00" in raw:
        raise BadValue('use a folder of the project, such as ".tiergate-history"')
    return raw.strip()


def _patterns(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise BadValue('use a list of regular expressions, such as ["ConnectionError"]')
    for pattern in raw:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise BadValue(f"{pattern!r} is not a regular expression ({exc})") from None
    return tuple(raw)


RETRY_KINDS = ("failure", "error", "timeout", "crash")  # what a retried attempt ended in


def _retry_kinds(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(k in RETRY_KINDS for k in raw):
        raise BadValue(f"use a list of {', '.join(RETRY_KINDS)}")
    return tuple(raw)


COMMENT_MODES = ("always", "on-failure", "changes", "off")


def _true_or_false(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise BadValue("use true or false")
    return raw


def _marker_expression(raw: object) -> str:
    if not isinstance(raw, str):
        raise BadValue('use a pytest -m expression in a string, e.g. "not slow"')
    if raw.strip():
        problem = marker_expression_error(raw)
        if problem:
            raise BadValue(f"not a pytest -m expression ({problem})")
    return raw.strip()


def _paths(raw: object) -> tuple[str, ...]:
    paths = [raw] if isinstance(raw, str) else raw  # one path may be written without a list
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise BadValue('use a list of paths relative to the project, e.g. ["tests/unit"]',
                       read_as=paths)
    return tuple(paths)


def _leak_policy(raw: object) -> str:
    if raw not in LEAK_POLICIES:
        raise BadValue(f"use one of {', '.join(LEAK_POLICIES)}")
    return str(raw)



def _workers(raw: object) -> int | str:
    if raw == "auto" or raw == "logical":
        return str(raw)
    count = raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS:
        count = int(raw)  # the command line gives every value as a string
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_WORKERS:
        raise BadValue(f'use 1 (no xdist), a number of workers up to {MAX_WORKERS}, or "auto"',
                       read_as=count)
    return count


def _memory_limit(raw: object) -> str:
    """Kept as written: a share of the machine ("85%") is resolved where the tree is watched."""
    try:
        size = parse_size(raw, total=2**40)  # any total: "0.5%" of a small one would be 0
    except ValueError:
        raise BadValue(
            'use a size such as "2GB", "512MiB" or a share of the machine, "85%"'
        ) from None
    if size < 1:
        raise BadValue("it must be more than zero")
    return str(raw)


def _whole_number_above_zero(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise BadValue("use a whole number above zero")
    return raw


def _failures(raw: object) -> int:
    count = raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS:
        count = int(raw)  # the command line gives every value as a string
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BadValue("use a whole number of failures above zero", read_as=count)
    return count


def _leak_thresholds(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise BadValue(f"use a table with keys among {', '.join(LEAK_THRESHOLD_KEYS)}")
    out: dict[str, float] = {}
    for kind, value in raw.items():
        if kind not in LEAK_THRESHOLD_KEYS:
            raise BadValue(f"unknown kind {kind!r}: use {', '.join(LEAK_THRESHOLD_KEYS)}")
        out[kind] = _leak_tolerance(kind, value)
    return out


def _leak_tolerance(kind: str, value: object) -> float:
    if kind == "memory":
        try:
            return float(parse_size(value))
        except ValueError:
            raise BadValue('memory needs a size of 0 or more, such as "20MB"') from None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value) if len(value) <= _MAX_DIGITS else -1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadValue(f"{kind} needs a whole number of 0 or more")
    return float(value)


def _one_line(raw: object) -> str:
    # printable only: the text goes to terminals, where a newline or an escape would forge output
    if not isinstance(raw, str) or not raw.isprintable() or len(raw) > MAX_DESCRIPTION:
        raise BadValue(f"use one line of printable text, at most {MAX_DESCRIPTION} characters")
    return raw.strip()


def _network(raw: object) -> str | tuple[str, ...]:
    allowed = 'use "any", "loopback", "none" or a list of hosts, host:port and CIDRs'
    if isinstance(raw, str):
        if raw not in NETWORK_WORDS:
            raise BadValue(allowed)
        return raw
    if isinstance(raw, list) and not raw:
        raise BadValue('an empty list allows nothing: write "none" for that')
    if isinstance(raw, list) and all(isinstance(x, str) and x.strip() for x in raw):
        entries = tuple(x.strip() for x in raw)
        for entry in entries:
            problem = _network_entry_error(entry)
            if problem:
                raise BadValue(f"{entry!r} {problem}")
        return entries
    raise BadValue(allowed)


_HOST_NAME = (r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
              r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")


def _network_entry_error(entry: str) -> str | None:
    """What is wrong with one allow-list entry (a host, host:port, IP, CIDR, ``[v6]:port``), read
    the way the guard reads it (``_split_host_port`` in boot/site/_tiergate_netguard.py)."""
    host: str = entry
    port: str | None = None
    if entry.startswith("["):
        host, closed, rest = entry[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return "is not valid: write an IPv6 address with a port as [::1]:5432"
        port = rest[1:] if rest else None
        if not _is_ip_or_network(host) or ":" not in host:
            return "is not an IPv6 address or network"
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    if port is not None and not (
        port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535
    ):
        return "has a bad port: a port is a number from 1 to 65535"
    if "/" in host or ":" in host:
        if not _is_ip_or_network(host):
            return "is not a valid IP network: write a CIDR such as 10.0.0.0/8 or fd00::/8"
        return None
    if re.fullmatch(r"[0-9.]+", host):
        if not _is_ip_or_network(host):
            return "is not a valid IPv4 address"
        return None
    if not host or len(host) > 253 or not re.fullmatch(_HOST_NAME, host):
        return "is not a host name, IP address or CIDR"
    return None


def _is_ip_or_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def marker_expression_error(expression: str) -> str | None:
    """Why *expression* is not a valid ``-m`` expression, or None when it is."""
    try:
        _marker_grammar().Expression.compile(expression)
    except Exception as exc:  # ParseError before pytest 9, SyntaxError since
        return str(getattr(exc, "msg", None) or exc)
    return None


_GRAMMAR = "_tiergate_pytest_mark_expression"


def _marker_grammar() -> Any:
    """pytest's own ``-m`` grammar (``_pytest/mark/expression.py``, standard library only). Inside
    pytest, its module; elsewhere (the supervisor, ``tiergate tiers``) the same file loaded on its
    own: importing it as ``_pytest.mark.expression`` runs ``_pytest/mark/__init__.py`` first, which
    imports most of pytest, about a third of ``tiergate run``'s own start-up."""
    loaded = sys.modules.get("_pytest.mark.expression") or sys.modules.get(_GRAMMAR)
    if loaded is not None:
        return loaded
    import importlib.util

    try:
        package = importlib.util.find_spec("_pytest")  # finds it, imports nothing
        folders = list(package.submodule_search_locations or ()) if package else []
        spec = importlib.util.spec_from_file_location(
            _GRAMMAR, Path(folders[0], "mark", "expression.py")) if folders else None
        if spec is None or spec.loader is None:
            raise ImportError(_GRAMMAR)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_GRAMMAR] = module  # dataclasses looks its module up while it runs
        spec.loader.exec_module(module)
        module.Expression  # noqa: B018 - a layout this does not know: take the package's
    except Exception:
        sys.modules.pop(_GRAMMAR, None)
        import _pytest.mark.expression as module
    return module

# -- the table of keys ---------------------------------------------------------------------


def _as_is(value: Any) -> Any:
    return value


def _optional_duration(value: float | None) -> str | None:
    return None if value is None else format_duration(value)


def _word_or_list(value: Any) -> Any:
    return value if isinstance(value, str) else list(value)


# Flag, TierKey and Config are plain classes, not dataclasses: every pytest --tier run imports
# this module, a dataclass costs about a millisecond to create, and nothing compares, copies or
# prints these (Tier stays one: its fields are the table of keys).


class Flag:
    """A key's ``tiergate run --KEY`` option. No *metavar*: an on/off switch. *help* is an
    argparse help string (so a literal % is written %%)."""

    __slots__ = ("help", "metavar")

    def __init__(self, help: str, metavar: str | None = None) -> None:
        self.help = help
        self.metavar = metavar


class TierKey:
    """One key of ``[tool.tiergate.tiers.NAME]``. The validator, ``tiergate run``'s options,
    ``Tier.describe()`` and docs/config.md all read these; nothing else spells a key."""

    __slots__ = ("doc", "field", "flag", "listed", "name", "parse", "rejects", "show")

    def __init__(self, name: str, parse: Callable[[object], Any], doc: str,
                 rejects: tuple[object, ...], show: Callable[[Any], Any] = _as_is,
                 listed: bool = True, flag: Flag | None = None) -> None:
        self.name = name  # as the user writes it
        self.parse = parse  # a TOML or command-line value -> the field's, or BadValue
        self.doc = doc  # what the key means, in the user's words (docs/config.md)
        self.rejects = rejects  # bad values docs/config.md shows with their error lines
        self.show = show  # the field's value as a user would write it
        self.listed = listed  # in Tier.describe(): `tiergate tiers`, the run's recorded settings
        self.flag = flag
        self.field = ""  # the Tier attribute, filled in from the class below

    def written(self, tier: Tier) -> Any:
        return self.show(getattr(tier, self.field))


_KEY = "tiergate.key"


def tier_key(name: str, parse: Callable[[object], Any], *, default: object = None,
             factory: Callable[[], object] | None = None, doc: str,
             rejects: tuple[object, ...], show: Callable[[Any], Any] = _as_is,
             listed: bool = True, flag: Flag | None = None) -> Any:
    """A ``Tier`` field that is also a row of the table of keys (see ``TierKey``)."""
    entry = {_KEY: TierKey(name, parse, doc, rejects, show, listed, flag)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=entry)
    return dataclasses.field(default=default, metadata=entry)


@dataclasses.dataclass(frozen=True)
class Tier:
    """One cadence of the suite: what it selects and how hard it is held.

    Every field but ``name`` is a key users write in ``[tool.tiergate.tiers.NAME]``, and its
    ``tier_key`` is that key's one entry in the table: name, parser (with the range it allows),
    default, ``tiergate run`` option and the text docs/config.md shows. Adding a key is adding a
    field here, plus whatever reads the field."""

    name: str
    markers: str = tier_key(
        "markers", _marker_expression, default="", rejects=(42, "not ("),
        flag=Flag("pytest -m expression for the tier", "EXPR"),
        doc="which tests the tier runs: a pytest `-m` expression, combined with any `-m` given "
            "to pytest")
    paths: tuple[str, ...] = tier_key(
        "paths", _paths, default=(), show=list, rejects=(3,),
        doc="only tests under these paths, relative to the project (default: pytest's own "
            "`testpaths`)")
    test_timeout: float = tier_key(
        "test-timeout", _duration_above_zero, default=60.0, show=format_duration,
        rejects=("5x",), flag=Flag("per-test limit, e.g. 30s (overrides the tier)", "DURATION"),
        doc="limit per test (setup + call + teardown); a `@pytest.mark.timeout(N)` wins for its "
            "test. At the limit the process tree is dumped and the test fails; `grace` later the "
            "supervisor kills and resumes")
    budget: float = tier_key(
        "budget", _duration_above_zero, default=900.0, show=format_duration,
        rejects=("soon", "0"), flag=Flag("the tier's hard limit, e.g. 15m", "DURATION"),
        doc="hard limit for the whole tier; then SIGTERM to pytest's group, `grace`, SIGKILL, "
            "and a `job-timeout` finding")
    grace: float = tier_key(
        "grace", _duration, default=10.0, show=format_duration, rejects=("soon",),
        flag=Flag("time between a polite stop and a kill, e.g. 10s", "DURATION"),
        doc="time between a polite stop (soft timeout, SIGTERM) and a kill")
    network: str | tuple[str, ...] = tier_key(
        "network", _network, default="any", show=_word_or_list,
        rejects=("internet", [], ["db:99999"]),
        doc="what tests may connect to: `any`, `loopback`, `none`, or a list of hosts, "
            "`host:port` and CIDRs; anything else raises at once with a `network-blocked` "
            "finding")
    leaks: str = tier_key(
        "leaks", _leak_policy, default="warn", rejects=("maybe",),
        doc="what a confirmed leak finding does: `fail` the run, `warn`, or `off` (no probes)")
    workers: int | str = tier_key(
        "workers", _workers, default=1, rejects=(0,),
        flag=Flag("xdist workers (1 = no xdist)", "N|auto"),
        doc="`1` (no xdist), a number of xdist workers, or `auto`")
    memory_limit: str | None = tier_key(
        "memory-limit", _memory_limit, default=None, rejects=("lots",),
        flag=Flag("the process tree's memory limit, e.g. 2GB or 85%%", "SIZE"),
        doc="the process tree's RSS limit (a size or a share of the machine); at 80 % a warning "
            "finding, past it a dump, a kill and a `resource-pressure` finding")
    max_processes: int | None = tier_key(
        "max-processes", _whole_number_above_zero, default=None, rejects=(0,),
        doc="limit on the number of processes in pytest's tree")
    max_fds: int | None = tier_key(
        "max-fds", _whole_number_above_zero, default=None, rejects=("many",),
        doc="limit on open file descriptors in pytest's tree")
    sample_interval: float = tier_key(
        "sample-interval", _duration, default=0.5, show=format_duration, rejects=("often",),
        flag=Flag("how often the process tree is sampled (0 turns sampling off)", "DURATION"),
        doc="seconds between samples of the process tree (RSS, CPU, threads, fds); `0` turns "
            "sampling and the limits off")
    # Left out of describe(): a table, and the run's recorded settings keep scalars only.
    leak_thresholds: Mapping[str, float] = tier_key(
        "leak-thresholds", _leak_thresholds, factory=dict, show=dict, listed=False,
        rejects=({"cpu": 1},),
        doc="per-kind tolerance before a leak is reported, e.g. "
            '`{ memory = "20MB", threads = 0 }`')
    # Left out (negative), it is the tier's test_timeout, resolved in __post_init__ once: the
    # field is always a number of seconds.
    collect_timeout: float = tier_key(
        "collect-timeout", _duration, default=-1.0, show=format_duration,
        rejects=("soon", float("inf")),
        flag=Flag("limit on collecting (importing) one test module (0 = no limit)", "DURATION"),
        doc="limit on collecting (importing) one test module (default: the tier's "
            "`test-timeout`; `0` = no limit); at the limit the tree is dumped and the run "
            "resumes without that module, with a `collect-timeout` finding")
    allow_no_tests: bool = tier_key(
        "allow-no-tests", _true_or_false, default=False, rejects=("yes",),
        flag=Flag("a tier that selects no tests is not a failure"),
        doc="`true`: a tier that selects no tests passes instead of failing with exit code 5")
    # Left out (None): a quarter of each test's own limit (supervisor/progress.py).
    slow_after: float | None = tier_key(
        "slow-after", _duration, default=None, show=_optional_duration, rejects=("soon",),
        flag=Flag("print a SLOW line for a test running longer than this (0 = never)",
                  "DURATION"),
        doc="a test running longer than this gets a `SLOW [>60s] test_id` line in the log while "
            "it runs (default: a quarter of its limit; `0` = never)")
    progress_interval: float = tier_key(
        "progress-interval", _duration, default=30.0, show=format_duration, rejects=("often",),
        flag=Flag("seconds between progress lines in the log (0 = none)", "DURATION"),
        doc="seconds between progress lines in the log: the tests in flight with their ages, "
            "how many are done and left, and the budget left (`0` = none)")
    max_fail: int | None = tier_key(
        "max-fail", _failures, default=None, rejects=(0, "some"),
        flag=Flag("stop the tier after this many failures", "N"),
        doc="stop the tier right after this many failed tests (the tests in flight are ended as "
            "at the budget); the rest are reported as not run, and the run is not resumed")
    order: str = tier_key(
        "order", _one_of("slowest-first", "pytest"), default="slowest-first", rejects=("random",),
        doc="`slowest-first`: with a durations history (`--durations-from`), the tier's tests "
            "run longest first, a module or class with module- or class-scoped fixtures kept "
            "together, so xdist workers finish together; `pytest`: pytest's order")
    retries: int = tier_key(
        "retries", _count_of("retries", 0, 10), default=0, rejects=(-1, "2"),
        flag=Flag("run a failed test again up to N times", "N"),
        doc="run a failed test again up to this many times; one that then passes is `flaky` "
            "(see `flaky`), one that fails every attempt is failed; every attempt is kept in "
            "the events, the report and junit.xml (`@pytest.mark.tiergate_retries(n)` and "
            "`@pytest.mark.flaky(reruns=n)` set it per test)")
    retry_delay: float = tier_key(
        "retry-delay", _duration, default=0.0, show=format_duration, rejects=("later",),
        flag=Flag("wait before the first retry; doubled, with jitter, for each next one",
                  "DURATION"),
        doc="wait before the first retry; each next retry waits twice as long, with up to "
            "half of it again added at random (jitter), so retries of tests sharing a "
            "service do not arrive together")
    retry_on: tuple[str, ...] = tier_key(
        "retry-on", _patterns, factory=tuple, show=list, rejects=("(",),
        doc="retry only failures whose message or traceback matches one of these regular "
            "expressions (default: any failure of the kinds in `retry-kinds`)")
    retry_kinds: tuple[str, ...] = tier_key(
        "retry-kinds", _retry_kinds, default=("failure",), show=list, rejects=(["leak"],),
        doc="which endings are retried: `failure` (the test itself failed), `error` (its "
            "setup or teardown failed), `timeout` (the soft timeout, and the hard timeout: "
            "the resumed pytest runs the test again), `crash` (pytest died in the test: "
            "again, in the resumed pytest); leaks are findings, never retried")
    flaky: str = tier_key(
        "flaky", _one_of("warn", "fail", "pass"), default="warn", rejects=("maybe",),
        flag=Flag("what a test that passed on a retry does to the verdict", "warn|fail|pass"),
        doc="what a flaky test (failed, then passed on a retry) does: `warn` (the tier passes "
            "with a warning finding), `fail` (an error finding fails the tier), `pass` "
            "(reported as flaky, no finding)")
    history: str = tier_key(
        "history", _history_folder, default="", rejects=(3,),
        doc="a folder, relative to the project, where `tiergate report` keeps each test's "
            "flake history across runs (`flakes.json`: attempts, failures, flaky passes, last "
            "seen); cache it between runs as the nightly template caches the durations. The "
            "report then says how often a flaky test flaked before, `tiergate flakes` lists "
            "the worst, and `new-test-runs` knows which tests are new (default: no history)")
    new_test_runs: int = tier_key(
        "new-test-runs", _count_of("runs", 1, 10), default=1, rejects=(0, "3"),
        doc="run a test that is not in the `history` (new in this change) this many times; "
            "every run must pass, so a flaky test is caught before it lands (its extra runs "
            "are attempts; with no history yet, no test counts as new)")
    comment: str = tier_key(
        "comment", _one_of(*COMMENT_MODES), default="on-failure", rejects=("sometimes",),
        doc="when `tiergate post` writes the sticky PR comment: `always`, `on-failure` (none on "
            "a green PR, but an earlier one is updated to say it is green again), `changes` "
            "(only when the verdict or the findings changed), `off`; `tiergate post --comment` "
            "and the action's `comment` input win")
    description: str = tier_key(
        "description", _one_line, default="", rejects=("runs\nnightly",),
        doc="one line that `tiergate tiers` shows beside the tier's name: what the tier is for "
            "and when it runs")

    def __post_init__(self) -> None:
        if self.collect_timeout < 0:
            object.__setattr__(self, "collect_timeout", self.test_timeout)

    def describe(self) -> dict[str, Any]:
        """The settings as a user would write them (used by ``tiergate tiers`` and events)."""
        return {key.name: key.written(self) for key in TIER_KEYS.values() if key.listed}

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["paths"] = list(self.paths)
        if isinstance(self.network, tuple):
            data["network"] = list(self.network)
        data["leak_thresholds"] = dict(self.leak_thresholds)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tier:
        values = dict(data)
        values["paths"] = tuple(values.get("paths", ()))
        if isinstance(values.get("network"), list):
            values["network"] = tuple(values["network"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# Every key a user may write in [tool.tiergate.tiers.NAME], in the order docs and errors list them.
def _named_keys() -> dict[str, TierKey]:
    keys = {}
    for f in dataclasses.fields(Tier):
        entry = f.metadata.get(_KEY)
        if entry is not None:
            entry.field = f.name
            keys[entry.name] = entry
    return keys


TIER_KEYS: dict[str, TierKey] = _named_keys()


DEFAULT_TIERS: dict[str, Tier] = {
    "fast": Tier(
        name="fast",
        description="every pull request: unit tests, no outside services, minutes",
        markers="not (integration or e2e or staging or slow)",
        test_timeout=60.0,
        budget=15 * 60.0,
        grace=10.0,
        network="loopback",
        leaks="fail",
        workers=1,
    ),
    "nightly": Tier(
        name="nightly",
        description="every night: integration and slow tests, real infrastructure",
        markers="integration or slow",
        test_timeout=10 * 60.0,
        budget=2 * 3600.0,
        grace=30.0,
        network="any",
        leaks="warn",
        workers="auto",
    ),
    "staging": Tier(
        name="staging",
        description="on demand: end-to-end tests against a staging system",
        markers="e2e or staging",
        test_timeout=5 * 60.0,
        budget=3600.0,
        grace=30.0,
        network="any",
        leaks="off",
        workers=1,
    ),
}

# The markers that the default tiers select on; the plugin registers them so `--strict-markers`
# suites can use them without declaring them again.
TIER_MARKERS = {
    "integration": "talks to real infrastructure started by the test or a fixture (nightly tier)",
    "slow": "takes long enough to keep it off the pull-request tier (nightly tier)",
    "e2e": "end-to-end against a deployed system (staging tier)",
    "staging": "needs a staging environment (staging tier)",
}

REDACT_KEY = "redact"  # [tool.tiergate] redact = ["NAME", ...]: more variables holding secrets
# Every key [tool.tiergate] accepts: the check and its error message both read this one list.
QUARANTINE_KEY = "quarantine"  # [tool.tiergate.quarantine]: settings/quarantine.py
_TOP_KEYS = ("tiers", REDACT_KEY, QUARANTINE_KEY)
COMMAND_LINE = "command line:"


class Config:
    """All tiers of one project, and where they came from."""

    __slots__ = ("quarantine", "redact", "root", "source", "tiers")

    def __init__(self, tiers: Mapping[str, Tier], source: Path | None, root: Path,
                 redact: tuple[str, ...] = (),
                 quarantine: tuple[QuarantineEntry, ...] = ()) -> None:
        self.tiers = tiers
        self.source = source
        self.root = root
        self.redact = redact  # variables whose values are secrets, besides the known ones
        self.quarantine = quarantine  # [tool.tiergate.quarantine]

    def tier(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            where = self.source.name if self.source else "the default tiers"
            raise ConfigError(
                f"unknown tier {name!r} in {where}: choose one of {', '.join(sorted(self.tiers))}"
            ) from None


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(start: Path) -> Config:
    """Find the project's pyproject.toml from *start* upward and read its tiers."""
    path = find_pyproject(start.resolve())
    if path is None:
        use_names(())
        return Config(tiers=dict(DEFAULT_TIERS), source=None, root=start.resolve())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as TOML: {exc}") from None
    section = data.get("tool", {}).get("tiergate")
    tiers = parse_tiers(section, path)
    names = parse_redact(section, path)
    use_names(names)  # every redaction in this process (and, through the env, its children)
    return Config(tiers=tiers, source=path, root=path.parent, redact=names,
                  quarantine=parse_quarantine(section, path))


def parse_redact(section: object, path: Path) -> tuple[str, ...]:
    """``[tool.tiergate] redact``: names of environment variables whose values are secrets."""
    raw = section.get(REDACT_KEY, []) if isinstance(section, dict) else []
    if not isinstance(raw, list) or not all(
            isinstance(n, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in raw):
        raise ConfigError(f"{path}: [tool.tiergate] {REDACT_KEY} is not valid: use a list of "
                          'environment variable names (not their values), such as ["DB_PASS"]')
    return tuple(raw)


def parse_tiers(section: object, path: Path) -> dict[str, Tier]:
    tiers = dict(DEFAULT_TIERS)
    if section is None:
        return tiers
    where = f"{path}: [tool.tiergate]"
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a table")
    for key in section:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{where} unknown key {key!r}: allowed keys are {', '.join(_TOP_KEYS)}"
            )
    declared = section.get("tiers", {})
    if not isinstance(declared, dict):
        raise ConfigError(f"{where} 'tiers' must be a table of tables, one per tier")
    for name, table in declared.items():
        tier_where = f"{path}: [tool.tiergate.tiers.{name}]"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ConfigError(f"{tier_where} tier names use letters, digits, '-', '_' and '.'")
        if not isinstance(table, dict):
            raise ConfigError(f"{tier_where} must be a table")
        base = tiers.get(name, Tier(name=name))
        tiers[name] = apply_overrides(base, table, tier_where)
    return tiers


def apply_overrides(base: Tier, values: Mapping[str, object], where: str) -> Tier:
    """Validate user-written *values* (keys as in the config file) and merge them over *base*."""
    changes: dict[str, Any] = {}
    for name, raw in values.items():
        if raw is None:
            continue
        key = TIER_KEYS.get(name)
        if key is None:
            raise ConfigError(
                f"{where} unknown key {name!r}: allowed keys are {', '.join(TIER_KEYS)}"
            )
        try:
            changes[key.field] = key.parse(raw)
        except BadValue as exc:
            shown = raw if exc.read_as is None else exc.read_as
            raise _not_valid(name, shown, exc, where) from None
    # collect-timeout not given follows the tier's test-timeout, also when that is overridden.
    if (
        "test_timeout" in changes
        and "collect_timeout" not in changes
        and base.collect_timeout == base.test_timeout
    ):
        changes["collect_timeout"] = changes["test_timeout"]
    return dataclasses.replace(base, **changes)


def _not_valid(name: str, value: object, problem: BadValue, where: str) -> ConfigError:
    """The user's one line: where the value was written, the key, the value, what is allowed."""
    if where == COMMAND_LINE:
        return ConfigError(f"--{name} {value!r} is not valid: {problem}")
    return ConfigError(f"{where} {name} = {value!r} is not valid: {problem}")


def resolve_tier(config: Config, name: str, overrides: Mapping[str, object] | None = None) -> Tier:
    """The named tier with command-line *overrides* (config-style keys) applied over it."""
    tier = config.tier(name)
    if overrides:
        tier = apply_overrides(tier, overrides, COMMAND_LINE)
    return tier
