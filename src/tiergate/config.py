"""Tiers: read once from ``[tool.tiergate]`` in pyproject.toml, validated, then passed inward as
plain frozen values. Every bad value becomes a ``ConfigError``: the one line a user sees.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiergate.errors import ConfigError
from tiergate.redact import use_names

LEAK_POLICIES = ("fail", "warn", "off")
NETWORK_WORDS = ("any", "loopback", "none")
MAX_DURATION = 7 * 24 * 3600.0  # no limit of a test or a tier is longer than a week
MAX_WORKERS = 512
_MAX_DIGITS = 18  # a longer run of digits is no sane count (and int() refuses 4300+ digits)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_NOT_FINITE = ("inf", "infinity", "nan")  # as the command line spells what TOML reads as floats
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib|%)?\s*$", re.IGNORECASE)
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
    elif isinstance(value, str) and (m := _DURATION.match(value)):
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
    if isinstance(value, str) and (m := _SIZE.match(value)):
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


@dataclasses.dataclass(frozen=True)
class Tier:
    """One cadence of the suite: what it selects and how hard it is held."""

    name: str
    markers: str = ""
    paths: tuple[str, ...] = ()
    test_timeout: float = 60.0
    budget: float = 900.0
    grace: float = 10.0
    network: str | tuple[str, ...] = "any"
    leaks: str = "warn"
    workers: int | str = 1
    memory_limit: str | None = None
    max_processes: int | None = None
    max_fds: int | None = None
    sample_interval: float = 0.5  # seconds between samples of the tree; 0 = off (limits too)
    leak_thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Seconds collecting (importing) one test module may take; 0 = no limit. Left out (negative),
    # it is the tier's test_timeout, resolved here once: the field is always a number of seconds.
    collect_timeout: float = -1.0
    allow_no_tests: bool = False  # a tier that selects no tests is not a failure

    def __post_init__(self) -> None:
        if self.collect_timeout < 0:
            object.__setattr__(self, "collect_timeout", self.test_timeout)

    def describe(self) -> dict[str, Any]:
        """The settings as a user would write them (used by ``tiergate tiers`` and events)."""
        return {
            "markers": self.markers,
            "paths": list(self.paths),
            "test-timeout": format_duration(self.test_timeout),
            "budget": format_duration(self.budget),
            "grace": format_duration(self.grace),
            "network": self.network if isinstance(self.network, str) else list(self.network),
            "leaks": self.leaks,
            "workers": self.workers,
            "memory-limit": self.memory_limit,
            "max-processes": self.max_processes,
            "max-fds": self.max_fds,
            "sample-interval": format_duration(self.sample_interval),
            "collect-timeout": format_duration(self.collect_timeout),
            "allow-no-tests": self.allow_no_tests,
        }

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


DEFAULT_TIERS: dict[str, Tier] = {
    "fast": Tier(
        name="fast",
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

# Keys a user may write in [tool.tiergate.tiers.NAME], and the Tier field each one sets.
_TIER_KEYS = {
    "markers": "markers",
    "paths": "paths",
    "test-timeout": "test_timeout",
    "budget": "budget",
    "grace": "grace",
    "network": "network",
    "leaks": "leaks",
    "workers": "workers",
    "memory-limit": "memory_limit",
    "max-processes": "max_processes",
    "max-fds": "max_fds",
    "sample-interval": "sample_interval",
    "leak-thresholds": "leak_thresholds",
    "collect-timeout": "collect_timeout",
    "allow-no-tests": "allow_no_tests",
}
LEAK_THRESHOLD_KEYS = ("memory", "threads", "processes", "fds", "sockets", "tasks")
REDACT_KEY = "redact"  # [tool.tiergate] redact = ["NAME", ...]: more variables holding secrets
# Every key [tool.tiergate] accepts: the check and its error message both read this one list.
_TOP_KEYS = ("tiers", REDACT_KEY)
COMMAND_LINE = "command line:"


@dataclasses.dataclass(frozen=True)
class Config:
    """All tiers of one project, and where they came from."""

    tiers: Mapping[str, Tier]
    source: Path | None
    root: Path
    redact: tuple[str, ...] = ()  # variables whose values are secrets, besides the known ones

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
    return Config(tiers=tiers, source=path, root=path.parent, redact=names)


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
    for key, raw in values.items():
        if raw is None:
            continue
        if key not in _TIER_KEYS:
            raise ConfigError(
                f"{where} unknown key {key!r}: allowed keys are {', '.join(_TIER_KEYS)}"
            )
        changes[_TIER_KEYS[key]] = _validate(key, raw, where)
    # collect-timeout not given follows the tier's test-timeout, also when that is overridden.
    if (
        "test_timeout" in changes
        and "collect_timeout" not in changes
        and base.collect_timeout == base.test_timeout
    ):
        changes["collect_timeout"] = changes["test_timeout"]
    return dataclasses.replace(base, **changes)


def _validate(key: str, raw: object, where: str) -> Any:
    def bad(allowed: str) -> ConfigError:
        if where == COMMAND_LINE:
            return ConfigError(f"--{key} {raw!r} is not valid: {allowed}")
        return ConfigError(f"{where} {key} = {raw!r} is not valid: {allowed}")

    if key in ("test-timeout", "budget", "grace", "sample-interval", "collect-timeout"):
        try:
            seconds = parse_duration(raw)
        except DurationRangeError:
            raise bad(
                f"a duration must be finite and at most {format_duration(MAX_DURATION)} (7 days)"
            ) from None
        except ValueError:
            raise bad("use a duration such as 90, 90s, 5m or 1h") from None
        if key in ("test-timeout", "budget") and seconds <= 0:
            raise bad("it must be more than zero")
        return seconds
    if key == "allow-no-tests":
        if not isinstance(raw, bool):
            raise bad("use true or false")
        return raw
    if key == "markers":
        if not isinstance(raw, str):
            raise bad('use a pytest -m expression in a string, e.g. "not slow"')
        if raw.strip():
            problem = marker_expression_error(raw)
            if problem:
                raise bad(f"not a pytest -m expression ({problem})")
        return raw.strip()
    if key == "paths":
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
            raise bad('use a list of paths relative to the project, e.g. ["tests/unit"]')
        return tuple(raw)
    if key == "network":
        return _validate_network(raw, bad)
    if key == "leaks":
        if raw not in LEAK_POLICIES:
            raise bad(f"use one of {', '.join(LEAK_POLICIES)}")
        return raw
    if key == "workers":
        if raw == "auto" or raw == "logical":
            return raw
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS:
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_WORKERS:
            raise bad(f'use 1 (no xdist), a number of workers up to {MAX_WORKERS}, or "auto"')
        return raw
    if key == "memory-limit":
        try:
            size = parse_size(raw, total=2**40)  # any total: "0.5%" of a small one would be 0
        except ValueError:
            raise bad(
                'use a size such as "2GB", "512MiB" or a share of the machine, "85%"'
            ) from None
        if size < 1:
            raise bad("it must be more than zero")
        return str(raw)
    if key in ("max-processes", "max-fds"):
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise bad("use a whole number above zero")
        return raw
    if key == "leak-thresholds":
        if not isinstance(raw, dict):
            raise bad(f"use a table with keys among {', '.join(LEAK_THRESHOLD_KEYS)}")
        out: dict[str, float] = {}
        for kind, value in raw.items():
            if kind not in LEAK_THRESHOLD_KEYS:
                raise bad(f"unknown kind {kind!r}: use {', '.join(LEAK_THRESHOLD_KEYS)}")
            if kind == "memory":
                try:
                    out[kind] = float(parse_size(value))
                except ValueError:
                    raise bad('memory needs a size of 0 or more, such as "20MB"') from None
                continue
            if isinstance(value, str) and value.isascii() and value.isdigit():
                value = int(value) if len(value) <= _MAX_DIGITS else -1
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(f"{kind} needs a whole number of 0 or more")
            out[kind] = float(value)
        return out
    raise AssertionError(key)  # pragma: no cover - _TIER_KEYS and this function move together


def _validate_network(raw: object, bad: Any) -> str | tuple[str, ...]:
    allowed = 'use "any", "loopback", "none" or a list of hosts, host:port and CIDRs'
    if isinstance(raw, str):
        if raw not in NETWORK_WORDS:
            raise bad(allowed)
        return raw
    if isinstance(raw, list) and not raw:
        raise bad('an empty list allows nothing: write "none" for that')
    if isinstance(raw, list) and all(isinstance(x, str) and x.strip() for x in raw):
        entries = tuple(x.strip() for x in raw)
        for entry in entries:
            problem = _network_entry_error(entry)
            if problem:
                raise bad(f"{entry!r} {problem}")
        return entries
    raise bad(allowed)


_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
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
    if not host or len(host) > 253 or not _HOST_NAME.fullmatch(host):
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
    from _pytest.mark.expression import Expression

    try:
        Expression.compile(expression)
    except Exception as exc:  # ParseError before pytest 9, SyntaxError since
        return str(getattr(exc, "msg", None) or exc)
    return None


def resolve_tier(config: Config, name: str, overrides: Mapping[str, object] | None = None) -> Tier:
    """The named tier with command-line *overrides* (config-style keys) applied over it."""
    tier = config.tier(name)
    if overrides:
        tier = apply_overrides(tier, overrides, COMMAND_LINE)
    return tier
