"""``LeakWatch``: the pytest plugin object that runs the probes around every test and fixture.

Windows: each test is one window (setup + call + teardown, so function-scoped fixtures are the
test's own). A fixture of a wider scope (class, module, package, session) is its own window,
opened when pytest sets it up and checked when pytest finalizes it: what it made is *owned* by it,
never charged to the test that happened to trigger its setup, and what it leaves behind at its
scope's teardown is charged to the fixture.

A suspect must survive a settle before it is reported: pytest's reference to the last failure is
dropped, the garbage collector runs, threads get a short join and children a short wait, and the
probes look again. Only what is still there is a finding.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest

from tiergate.config import Tier
from tiergate.findings import Culprit, Finding, Location
from tiergate.leaks import memory
from tiergate.leaks.probes import (
    KEEP_ALIVE,
    Leftover,
    Probe,
    default_probes,
    memory_rss,
    open_memory_probe,
)
from tiergate.leaks.sites import REGISTRY

GRACE = 0.1  # seconds a suspect thread or child gets to finish before it is called leaked
DEFAULT_MEMORY_THRESHOLD = 10 * 2**20

# Marker words and finding kinds users may name in @pytest.mark.allow_leak(...).
_ALIASES = {
    "thread": "leak-thread", "threads": "leak-thread",
    "process": "leak-process", "processes": "leak-process",
    "fd": "leak-fd", "fds": "leak-fd", "file": "leak-fd",
    "socket": "leak-socket", "sockets": "leak-socket",
    "memory": "leak-memory", "task": "leak-task", "tasks": "leak-task",
    "env": "env-changed", "environ": "env-changed", "cwd": "env-changed",
    "resource-warning": "resource-warning", "warning": "resource-warning",
}
# leak-thresholds keys (config.LEAK_THRESHOLD_KEYS) per finding kind
_THRESHOLD_KEY = {
    "leak-thread": "threads", "leak-process": "processes", "leak-fd": "fds",
    "leak-socket": "sockets", "leak-task": "tasks", "leak-memory": "memory",
}
_WIDE_SCOPES = frozenset({"class", "module", "package", "session"})

Emit = Callable[[Finding], None]


class _Window:
    def __init__(self, probes: Sequence[Probe]) -> None:
        REGISTRY.refresh()
        self.before = [probe.snapshot() for probe in probes]


class _FixtureWindow(_Window):
    def __init__(self, probes: Sequence[Probe], fixturedef: Any) -> None:
        super().__init__(probes)
        self.fixturedef = fixturedef
        self.owned: set[Any] = set()


class LeakWatch:
    """Registered by the tiergate plugin when the tier's ``leaks`` is not ``off``."""

    def __init__(self, *, tier: Tier, emit: Emit, probes: Sequence[Probe] | None = None) -> None:
        self.tier = tier
        self.emit = emit
        self.severity = "error" if tier.leaks == "fail" else "warning"
        self.thresholds: Mapping[str, float] = tier.leak_thresholds
        self.probes = tuple(probes) if probes is not None else default_probes()
        self._fixtures: dict[int, _FixtureWindow] = {}
        self._fixture_stack: list[_FixtureWindow] = []
        self._failed: set[str] = set()
        self._rerunning = False
        self._leaked_processes: list[Leftover] = []
        self._owned_rss = 0  # RSS growth inside wider-scoped fixture setups, not the tests'

    # -- session ----------------------------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers",
            "allow_leak(*kinds, reason, issue=None): tiergate reports this test's leaks of these "
            "kinds (thread, process, fd, socket, memory, task, env) as allowed notes, not failures",
        )
        REGISTRY.install()
        open_memory_probe()
        if not _user_filters_resource_warnings(config):
            # Python ignores ResourceWarning by default; a leak the garbage collector closed is
            # still a leak worth a note, and pytest maps each warning to its test for us.
            config.addinivalue_line("filterwarnings", "always::ResourceWarning")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        REGISTRY.uninstall()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        _kill_leaked(self._leaked_processes)

    # -- tests ------------------------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        if self._rerunning:
            yield
            return
        window = _Window(self.probes)
        rss = memory_rss()
        owned_rss = self._owned_rss
        yield
        grew = memory_rss() - rss - (self._owned_rss - owned_rss)
        leftovers = self._still_there(window, self._owned_keys())
        by_kind = _group(leftovers)
        threshold = self.thresholds.get("memory", DEFAULT_MEMORY_THRESHOLD)
        if grew > threshold and item.nodeid not in self._failed and not self._allowed_without_run(
                item, "leak-memory"):
            leak = self._confirm_memory(item, nextitem, threshold)
            if leak is not None:
                by_kind["leak-memory"] = [_memory_leftover(leak)]
        for kind, group in by_kind.items():
            self._report(kind, group, item.nodeid, _item_location(item), _allowance(item, kind))

    def _confirm_memory(self, item: pytest.Item, nextitem: pytest.Item | None,
                        threshold: float) -> memory.MemoryLeak | None:
        self._rerunning = True
        try:
            return memory.confirm(item, nextitem, threshold)
        finally:
            self._rerunning = False

    def _allowed_without_run(self, item: pytest.Item, kind: str) -> bool:
        return _allowance(item, kind) is not None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._failed.add(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_warning_recorded(self, warning_message: Any, when: str, nodeid: str,
                                location: Any) -> None:
        category = warning_message.category
        if not (issubclass(category, ResourceWarning)
                or issubclass(category, pytest.PytestUnraisableExceptionWarning)):
            return
        text = str(warning_message.message).strip().splitlines()
        finding = Finding(
            kind="resource-warning",
            test=nodeid or None,
            severity="warning",
            message=f"{category.__name__}: {text[0] if text else ''}"[:500],
            location=Location(warning_message.filename, warning_message.lineno),
            details={"category": category.__name__, "text": "\n".join(text)[:4000]},
        )
        self.emit(finding)

    # -- fixtures of wider scope ------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Any:
        if self._rerunning or fixturedef.scope not in _WIDE_SCOPES:
            yield
            return
        window = _FixtureWindow(self.probes, fixturedef)
        rss = memory_rss()
        self._fixture_stack.append(window)
        try:
            yield
        finally:
            self._fixture_stack.pop()
            self._owned_rss += max(0, memory_rss() - rss)
            after = [probe.snapshot() for probe in self.probes]
            claimed: set[int] = set()
            for probe, before, now in zip(self.probes, window.before, after, strict=True):
                window.owned.update(left.key for left in probe.diff(before, now, claimed))
            window.owned -= self._owned_keys()  # a nested fixture's own things stay its own
            if window.owned:
                self._fixtures[id(fixturedef)] = window

    def pytest_fixture_post_finalizer(self, fixturedef: Any, request: Any) -> None:
        window = self._fixtures.pop(id(fixturedef), None)
        if window is None or self._rerunning:
            return
        leftovers = [left for left in self._still_there(window, set())
                     if left.key in window.owned]
        name = getattr(fixturedef, "argname", "?")
        func = getattr(fixturedef, "func", None)
        code = getattr(func, "__code__", None)
        location = Location(code.co_filename, code.co_firstlineno) if code else None
        for kind, group in _group(leftovers).items():
            self._report(kind, group, None, location, None,
                         owner=f"fixture {name!r} ({fixturedef.scope} scope)")

    def _owned_keys(self) -> set[Any]:
        keys: set[Any] = set()
        for window in self._fixtures.values():
            keys |= window.owned
        return keys

    # -- comparing and reporting ------------------------------------------------------------

    def _still_there(self, window: _Window, excluded: set[Any]) -> list[Leftover]:
        leftovers = self._compare(window, excluded)
        if not leftovers:
            return []
        _drop_last_failure()
        gc.collect()
        deadline = time.monotonic() + GRACE
        for probe in self.probes:
            probe.settle([left for left in leftovers if left.kind == probe.kind], deadline)
        return self._compare(window, excluded)

    def _compare(self, window: _Window, excluded: set[Any]) -> list[Leftover]:
        claimed = _guard_claimed_fds()
        out: list[Leftover] = []
        for probe, before in zip(self.probes, window.before, strict=True):
            after = probe.snapshot()
            out.extend(left for left in probe.diff(before, after, claimed)
                       if left.key not in excluded)
        return out

    def _report(self, kind: str, leftovers: list[Leftover], test: str | None,
                location: Location | None, allowance: Mapping[str, Any] | None,
                owner: str | None = None) -> None:
        limit = self.thresholds.get(_THRESHOLD_KEY.get(kind, ""), 0.0)
        if kind != "leak-memory" and len(leftovers) <= limit:
            return
        KEEP_ALIVE.extend(left.obj for left in leftovers if left.obj is not None)
        if kind == "leak-process":
            self._leaked_processes.extend(leftovers)
        who = owner or "test"
        what = "; ".join(_with_site(left) for left in leftovers[:5])
        more = f" (and {len(leftovers) - 5} more)" if len(leftovers) > 5 else ""
        message = f"{who} {_VERB[kind]}: {what}{more}"
        site = next((left.site for left in leftovers if left.site is not None), None)
        details: dict[str, Any] = {
            "leaks": [{"what": left.what, **left.details,
                       **({"site": str(left.site)} if left.site else {})} for left in leftovers],
        }
        if kind == "leak-memory":
            details.update(leftovers[0].details)  # growth per run, allocation sites
        if owner:
            details["owner"] = owner
        severity = self.severity
        if allowance is not None:
            severity = "warning"
            details.update({"allowed": True, **allowance})
            message = f"allowed: {message} (reason: {allowance.get('reason') or 'none given'})"
        self.emit(Finding(
            kind=kind, test=test, severity=severity, message=message[:2000], location=location,
            culprit=Culprit(site.path, site.line, site.function) if site else None, details=details,
        ))


_VERB = {
    "leak-thread": "left threads running",
    "leak-process": "left child processes running",
    "leak-fd": "left file descriptors open",
    "leak-socket": "left sockets open",
    "leak-task": "left asyncio tasks pending",
    "leak-memory": "keeps growing memory",
    "env-changed": "changed the environment",
}


def _with_site(left: Leftover) -> str:
    if left.site is None or left.kind == "leak-memory":
        return left.what
    return f"{left.what}, started at {left.site}"


def _group(leftovers: Iterable[Leftover]) -> dict[str, list[Leftover]]:
    out: dict[str, list[Leftover]] = {}
    for left in leftovers:
        out.setdefault(left.kind, []).append(left)
    return out


def _memory_leftover(leak: memory.MemoryLeak) -> Leftover:
    mib = sum(leak.growth) / len(leak.growth) / 2**20
    sites = [{"site": str(site), "bytes": size} for site, size in leak.sites]
    top = leak.sites[0][0] if leak.sites else None
    where = f"; top allocation {top}" if top else ""
    return Leftover("leak-memory", ("memory",),
                    f"RSS grew {mib:.1f} MiB per run over {len(leak.growth)} repeat runs{where}",
                    top, {"growth": leak.growth, "allocations": sites})


def _allowance(item: pytest.Item, kind: str) -> dict[str, Any] | None:
    for mark in item.iter_markers("allow_leak"):
        kinds = {_ALIASES.get(str(k), str(k)) for k in mark.args}
        if not kinds or kind in kinds:
            return {"reason": mark.kwargs.get("reason"), "issue": mark.kwargs.get("issue")}
    return None


def _item_location(item: pytest.Item) -> Location:
    path, line, _ = item.location
    return Location(path, line + 1 if line is not None else None)


def _drop_last_failure() -> None:
    # pytest keeps the last failure for post-mortem debugging; its frames hold the failed test's
    # locals (a socket, a file) alive, which would read as a leak.
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            setattr(sys, name, None)


def _guard_claimed_fds() -> set[int]:
    """Sockets the network guard refused belong to the network-blocked finding, not to leaks."""
    guard = sys.modules.get("_tiergate_netguard") or sys.modules.get(
        "tiergate.boot.site._tiergate_netguard")
    if guard is None:
        return set()
    fds: set[int] = set()
    for sock in getattr(guard, "BLOCKED_SOCKETS", ()):
        try:
            fds.add(sock.fileno())
        except (OSError, ValueError):
            continue
    fds.discard(-1)
    return fds


def _user_filters_resource_warnings(config: pytest.Config) -> bool:
    lines = [*config.getini("filterwarnings"), *(config.known_args_namespace.pythonwarnings or []),
             *sys.warnoptions]
    return any("ResourceWarning" in str(line) for line in lines)


def _kill_leaked(leftovers: list[Leftover]) -> None:
    """Leaked children die with the run: they would otherwise hold the CI job's pipes open."""
    if not leftovers:
        return
    import psutil

    victims = []
    for left in leftovers:
        try:
            process = psutil.Process(left.details["pid"])
            if _same_start(left):
                victims.extend([process, *process.children(recursive=True)])
        except psutil.Error:
            continue
    for process in victims:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(victims, timeout=2)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass


def _same_start(left: Leftover) -> bool:
    from tiergate.leaks.probes import _proc_stat

    stat = _proc_stat(left.details["pid"])
    return stat is not None and stat[1] == left.details.get("start") and stat[0] not in "ZX"
