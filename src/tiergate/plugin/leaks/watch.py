"""``LeakWatch``: the pytest plugin object that runs the probes around every test and fixture.

Fixture windows open and close in its own hooks. Test windows are a step of the per-test
pipeline (plugin/pertest.py, ``begin``/``end``), which whoever registers the watch adds it to:
one protocol wrapper for every part of the plugin, not one each.

Windows: each test is one window (setup + call + teardown, so function-scoped fixtures are the
test's own). A fixture of a wider scope (class, module, package, session) is its own window,
opened when pytest sets it up and checked when pytest finalizes it: what it made is *owned* by it,
never charged to the test that happened to trigger its setup, and what it leaves behind at its
scope's teardown is charged to the fixture.

A suspect must survive a settle before it is reported: pytest's reference to the last failure is
dropped, the garbage collector runs, threads get a short join and children a short wait, and the
probes look again. What that collection sets off (a ResourceWarning, an exception in a
``__del__``) is caught there (``quiet.py``) and reported on the window it came from, never in the
next test. What is still there is then a suspect, not yet a finding: a leak is growth, not first
use, so the test is run again (``repeat.py``), and only what the repeat leaves behind again is a
leak; memory is confirmed the same way with tracemalloc (``memory.py``). Each repeat is recorded
(the ``leak-check`` event, through ``record``). One leaked resource is one finding: the sockets and
files a leaked thread holds are named in the thread's.

Cost: a window's snapshots are not taken afresh. ``Current`` keeps the last snapshot of every
probe and takes a probe's again only when its cheap token moved (see each probe, and the
counters the wrappers in ``sites`` keep). A window holds references to the snapshots it started
with; when a probe's snapshot is the very same object at the end, nothing was created and its
diff is skipped. A trivial test therefore costs two RSS reads and a few token reads, not seven
listings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import re
import sys
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from tiergate.plugin.leaks.probes import (
    Leftover,
    Probe,
    client_in_process,
    default_probes,
    default_token,
    held_fds,
    keep_alive,
    memory_rss,
    open_memory_probe,
    server_key,
    thread_of,
)
from tiergate.plugin.leaks.sites import REGISTRY, Site
from tiergate.plugin.netguard import refused_fds
from tiergate.protocol.findings import Culprit, Finding, FindingKind, Location
from tiergate.settings.config import Tier

if TYPE_CHECKING:  # imported where used: the slow path, after a test that left something
    from tiergate.plugin.leaks import quiet, repeat

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
Record = Callable[[dict[str, Any]], None]  # the fields of a leak-check event


def _always_new() -> object:
    return object()


class Current:
    """The probes' snapshots of the process as it is now, re-taken only where something changed.

    Invariant: while a probe's token equals the one read before its last snapshot, that
    snapshot still describes the process. ``now()`` returns the same
    tuple object for as long as no snapshot changed (a re-taken snapshot equal to the last one
    keeps the last one's identity), so windows compare with ``is`` first.
    """

    def __init__(self, probes: Sequence[Probe],
                 token: Callable[[], Hashable] | None = None) -> None:
        self.probes = tuple(probes)
        # All the probes' tokens in one call (``default_token``), read first: while it has not
        # moved, no probe's own token has, and none is read.
        self._token = token
        self._last_token: object = _always_new()
        self._tokens_of = tuple(getattr(p, "token", None) or _always_new for p in self.probes)
        self._tokens: list[object] = [_always_new() for _ in self.probes]
        self._snapshots: list[Any] = [_always_new() for _ in self.probes]
        self.view: tuple[Any, ...] = tuple(self._snapshots)
        self._made = -1  # REGISTRY.made at the last now()

    def start(self) -> None:
        """The next ``now()`` takes every snapshot."""
        self.invalidate()

    def invalidate(self) -> None:
        """Take every snapshot again at the next ``now()``."""
        self._tokens = [_always_new() for _ in self.probes]
        self._last_token = _always_new()
        self._made = -1

    def now(self, force: bool = False) -> tuple[Any, ...]:
        REGISTRY.refresh()
        self._made = REGISTRY.made
        if self._token is not None:
            token = self._token()
            if token == self._last_token and not force:
                return self.view
            self._last_token = token
        tokens = [token_of() for token_of in self._tokens_of]
        if tokens == self._tokens and not force:
            return self.view  # the common case: nothing was created since the last look
        snapshots, changed = self._snapshots, False
        for index, token in enumerate(tokens):
            if token == self._tokens[index] and not force:
                continue
            # The token read before the snapshot: whatever happens during the snapshot moves it
            # again, and is looked at next time.
            self._tokens[index] = token
            snapshot = self.probes[index].snapshot()
            if snapshot != snapshots[index]:
                snapshots[index] = snapshot
                changed = True
        if changed:
            self.view = tuple(snapshots)
        return self.view

    def carried(self) -> tuple[Any, ...]:
        """``now()``, or the last one's view when nothing announced a change since: no thread,
        process or loop through the wrappers. For a window that opens just
        after another closed. What nothing announces (an ``os.pipe`` between two tests) is seen
        at the next ``now()``, and charged to the window open then, rather than to nobody."""
        if REGISTRY.made != self._made:
            return self.now()
        REGISTRY.refresh()
        return self.view


class _Window:
    def __init__(self, before: tuple[Any, ...], rss: int = 0, owned_rss: int = 0) -> None:
        self.before = before
        self.rss = rss  # RSS when it opened
        self.owned_rss = owned_rss  # LeakWatch._owned_rss when it opened


class _FixtureWindow(_Window):
    def __init__(self, current: Current, fixturedef: Any) -> None:
        super().__init__(current.now())
        self.fixturedef = fixturedef
        self.owned: set[Any] = set()


class LeakWatch:
    """Registered by the tiergate plugin when the tier's ``leaks`` is not ``off``."""

    def __init__(self, *, tier: Tier, emit: Emit, probes: Sequence[Probe] | None = None,
                 record: Record | None = None) -> None:
        self.tier = tier
        self.emit = emit
        # Where each confirmation run is recorded: under a tier, the leak-check event.
        self.record = record
        self.severity = "error" if tier.leaks == "fail" else "warning"
        self.thresholds: Mapping[str, float] = tier.leak_thresholds
        self._memory_threshold = self.thresholds.get("memory", DEFAULT_MEMORY_THRESHOLD)
        self.probes = tuple(probes) if probes is not None else default_probes()
        self.current = Current(self.probes, default_token if probes is None else None)
        self._fixtures: dict[int, _FixtureWindow] = {}
        self._fixture_stack: list[_FixtureWindow] = []
        self._rerunning = False
        self._leaked_processes: list[Leftover] = []
        self._owned_rss = 0  # RSS growth inside wider-scoped fixture setups, not the tests'
        self._rss = -1  # RSS at the end of the last test window, the next one's start (or -1)
        self._warning_filters: warnings.catch_warnings[Any] | None = None
        self._root: Path | None = None  # the project's root, for the paths in messages

    # -- session ----------------------------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers",
            "allow_leak(*kinds, reason, issue=None): tiergate reports this test's leaks of these "
            "kinds (thread, process, fd, socket, memory, task, env) as allowed notes, not failures",
        )
        self._root = config.rootpath
        REGISTRY.install()
        open_memory_probe()
        if not _user_filters_resource_warnings(config):
            # Python ignores ResourceWarning by default; a leak the garbage collector closed is
            # still a leak worth a note, and pytest maps each warning to its test for us. Set
            # once for the process, under the filters pytest applies around each test (which
            # copy this list), rather than as an ini line that pytest would re-apply three times
            # per test; any filter of the user's still comes first.
            self._warning_filters = warnings.catch_warnings()
            self._warning_filters.__enter__()
            warnings.filterwarnings("always", category=ResourceWarning)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        # The first window takes every snapshot afresh.
        self.current.start()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        REGISTRY.uninstall()
        if self._warning_filters is not None:
            self._warning_filters.__exit__(None, None, None)
            self._warning_filters = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        _kill_leaked(self._leaked_processes)

    # -- tests ------------------------------------------------------------------------------

    def begin(self, item: pytest.Item) -> _Window | None:
        """A test starts: its window (None during a memory confirmation's re-runs)."""
        if self._rerunning:
            return None
        # What the last test window saw at its end is this one's start, unless something was
        # announced in between (see Current.carried): no probe looks on a quiet test.
        return _Window(self.current.carried(), self._rss if self._rss >= 0 else memory_rss(),
                       self._owned_rss)

    def end(self, item: pytest.Item, nextitem: pytest.Item | None, window: _Window | None,
            reports: Sequence[pytest.TestReport]) -> None:
        """The test of *window* ended with *reports* (setup, call, teardown): report what it
        left behind."""
        if window is None:  # a memory confirmation's re-run
            return
        self._rss = memory_rss()
        grew = self._rss - window.rss - (self._owned_rss - window.owned_rss)
        # The quiet test: nothing created, memory within bounds. Nothing else to do.
        if self.current.now() is not window.before or grew > self._memory_threshold:
            self._after_test(item, nextitem, window, grew, reports)

    def _after_test(self, item: pytest.Item, nextitem: pytest.Item | None, window: _Window,
                    grew: int, reports: Sequence[pytest.TestReport]) -> None:
        from tiergate.plugin.leaks import repeat

        location = _item_location(item)
        leftovers = _merge_held(self._still_there(window, owned=True, test=item.nodeid,
                                                  location=location))
        failed = any(report.failed for report in reports)
        memory_suspect = (grew > self._memory_threshold and not failed
                          and not self._allowed_without_run(item, "leak-memory"))
        suspects: list[Leftover] = []
        for kind, group in _group(leftovers).items():
            allowance = _allowance(item, kind)
            if (kind in repeat.REPEATED_KINDS and allowance is None
                    and not self._within(kind, group)):
                suspects.extend(group)  # first use or growth: a repeat tells
            else:
                self._report(kind, group, item.nodeid, location, allowance)
        if not suspects and not memory_suspect:
            return
        if failed:
            # A failed test is not run again (it may hang, or fail differently): what it left
            # is a note, not a leak finding.
            for kind, group in _group(suspects).items():
                self._report(kind, group, item.nodeid, location, None,
                             unconfirmed="the test failed, so it was not run again to confirm")
            return
        check = self._confirm(item, nextitem, window, suspects, memory_suspect, grew, reports,
                              location)
        if check.inconclusive is not None:
            for kind, group in _group(suspects).items():
                self._report(kind, group, item.nodeid, location, None, check=check,
                             unconfirmed=check.inconclusive)
        else:
            for kind, group in _group(check.confirmed()).items():
                self._report(kind, group, item.nodeid, location, None, check=check)
        if check.memory_leak:
            self._report("leak-memory", [_memory_leftover(check)], item.nodeid, location, None,
                         check=check)

    def _within(self, kind: str, group: list[Leftover]) -> bool:
        """Within the tier's leak-thresholds for *kind*: never a finding, so never repeated."""
        return len(group) <= self.thresholds.get(_THRESHOLD_KEY.get(kind, ""), 0.0)

    def _confirm(self, item: pytest.Item, nextitem: pytest.Item | None, window: _Window,
                 suspects: list[Leftover], memory_suspect: bool, grew: int,
                 reports: Sequence[pytest.TestReport], location: Location) -> repeat.Check:
        """Run the suspect test again, quietly: once for what it left behind (a leak leaves it
        again, first use does not; a leak is also still there, and what someone closed or ended
        meanwhile was not leaked), ``memory.CONFIRM_RUNS`` times under tracemalloc for memory.
        The check is recorded whatever it comes to."""
        from tiergate.plugin.leaks import memory, quiet, repeat

        check = repeat.Check(item.nodeid, suspects, memory_suspect, grew)
        if not suspects:
            # The test's own garbage, not yet collected (no leftover made us look): its
            # finalisers' warnings are its own, before the repeats' garbage joins it.
            with quiet.caught() as caught:
                gc.collect()
            for found in caught:
                self._report_caught(found, item.nodeid, location, None)
        runs = memory.CONFIRM_RUNS if memory_suspect else 1
        expected = repeat.outcomes(reports)
        threshold = self._memory_threshold
        began = time.monotonic()
        self._rerunning = True
        try:
            with quiet.caught(repeat=True), (memory.Tracer() if memory_suspect
                                             else contextlib.nullcontext()) as tracer:
                for index in range(runs):
                    gc.collect()
                    before = _Window(self.current.now(force=True))
                    last = index == runs - 1
                    snapshot = tracer.snapshot() if tracer is not None and last else None
                    traced = tracer.traced() if tracer is not None else 0
                    rss = memory_rss()
                    check.repeats += 1
                    if not repeat.run_again(item, nextitem, expected):
                        check.inconclusive = "the test ended differently when run again"
                        break
                    # What each repeat leaves is kept and, for a child, killed at the end, as
                    # what a reported test left is; the first repeat's decides the suspects.
                    again = _merge_held(self._still_there(before, owned=True))
                    self._keep(again)
                    if index == 0:
                        check.again = again
                        # Since the test's own window opened: what of its is still there.
                        there = {left.key for left in self._compare(window, owned=True,
                                                                   force=True)}
                        check.released = [left for left in suspects if left.key not in there]
                    if tracer is None:
                        continue
                    gc.collect()
                    check.growth.append(tracer.traced() - traced)
                    check.rss.append(memory_rss() - rss)
                    if check.growth[-1] < threshold / 2:
                        break  # not retained: the RSS was the allocator's, or a warm-up
                    if last:
                        check.sites = tracer.sites(snapshot, tracer.snapshot())
                        check.memory_leak = True
        finally:
            self._rerunning = False
            # The re-runs are nobody's window: the next test starts from a fresh look.
            self.current.invalidate()
            self._rss = -1
            check.seconds = time.monotonic() - began
            self._record(check.fields())
        return check

    def _keep(self, leftovers: Iterable[Leftover]) -> None:
        """Leftovers stay alive (their collection would warn in some later test), and leaked
        children die with the run."""
        for left in leftovers:
            if left.obj is not None:
                keep_alive(left.obj)
            if left.kind == "leak-process":
                self._leaked_processes.append(left)

    def _record(self, fields: dict[str, Any]) -> None:
        if self.record is not None:
            try:
                self.record(fields)
            except Exception:  # a record that cannot be written must not break the run
                pass

    def _allowed_without_run(self, item: pytest.Item, kind: str) -> bool:
        return _allowance(item, kind) is not None

    @pytest.hookimpl(trylast=True)
    def pytest_warning_recorded(self, warning_message: Any, when: str, nodeid: str,
                                location: Any) -> None:
        category = warning_message.category
        if not (issubclass(category, ResourceWarning)
                or issubclass(category, pytest.PytestUnraisableExceptionWarning)):
            return
        from tiergate.plugin.leaks import quiet

        self.emit(resource_warning(
            category.__name__, str(warning_message.message), test=nodeid or None,
            location=Location(warning_message.filename, warning_message.lineno),
            site=quiet.made_at(warning_message.source), root=self._root,
        ))

    # -- fixtures of wider scope ------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Any:
        if self._rerunning or fixturedef.scope not in _WIDE_SCOPES:
            return (yield)
        window = _FixtureWindow(self.current, fixturedef)
        rss = memory_rss()
        executors = REGISTRY.executor_seq
        self._fixture_stack.append(window)
        try:
            return (yield)
        finally:
            self._fixture_stack.pop()
            REGISTRY.fixture_executors.update(range(executors + 1, REGISTRY.executor_seq + 1))
            self._owned_rss += max(0, memory_rss() - rss)
            after = self.current.now()
            claimed: set[int] = set()
            for probe, before, now in zip(self.probes, window.before, after, strict=True):
                if before is not now:
                    window.owned.update(left.key for left in probe.diff(before, now, claimed))
            if window.owned:
                window.owned -= self._owned_keys()  # a nested fixture's own things stay its own
            if window.owned:
                self._fixtures[id(fixturedef)] = window

    def pytest_fixture_post_finalizer(self, fixturedef: Any, request: Any) -> None:
        window = self._fixtures.pop(id(fixturedef), None)
        if window is None or self._rerunning:
            return
        name = getattr(fixturedef, "argname", "?")
        func = getattr(fixturedef, "func", None)
        code = getattr(func, "__code__", None)
        location = Location(code.co_filename, code.co_firstlineno) if code else None
        owner = f"fixture {name!r} ({fixturedef.scope} scope)"
        leftovers = _merge_held([
            left for left in self._still_there(window, owned=False, location=location,
                                               owner=owner)
            if left.key in window.owned])
        for kind, group in _group(leftovers).items():
            self._report(kind, group, None, location, None, owner=owner)

    def _owned_keys(self) -> set[Any]:
        keys: set[Any] = set()
        for window in self._fixtures.values():
            keys |= window.owned
        return keys

    # -- comparing and reporting ------------------------------------------------------------

    def _still_there(self, window: _Window, *, owned: bool, test: str | None = None,
                     location: Location | None = None, owner: str | None = None,
                     ) -> list[Leftover]:
        """What the window made that is still there after a settle; with *owned*, less what
        the wider-scoped fixtures set up inside it own. What the collection sets off (warnings,
        exceptions in finalisers) is kept from the tests and, when the window is named (*test*
        or *owner*), reported on it: not on a repeat, whose first run was reported already."""
        leftovers = self._compare(window, owned)
        if not leftovers:
            return []
        from tiergate.plugin.leaks import quiet

        with quiet.caught() as caught:
            _drop_last_failure()
            gc.collect()
            deadline = time.monotonic() + GRACE
            for probe in self.probes:
                kinds = getattr(probe, "kinds", (probe.kind,))
                probe.settle([left for left in leftovers if left.kind in kinds], deadline)
            # Look again, everywhere: the grace reaps children and joins threads, and the
            # collector closes files, none of which moves a counter.
            leftovers = self._compare(window, owned, force=True)
        if test is not None or owner is not None:
            for item in caught:
                self._report_caught(item, test, location, owner)
        return leftovers

    def _report_caught(self, caught: quiet.Caught, test: str | None, location: Location | None,
                       owner: str | None) -> None:
        if not (caught.unraisable or caught.category == "ResourceWarning"):
            return  # another warning a finaliser gave: kept from the tests, and dropped
        self.emit(resource_warning(
            caught.category, caught.text, test=test, location=location, site=caught.site,
            root=self._root, unraisable=caught.unraisable,
            collected_after=owner or "the test", owner=owner,
        ))

    def _compare(self, window: _Window, owned: bool, force: bool = False) -> list[Leftover]:
        now = self.current.now(force)
        if now is window.before:
            return []  # the common case: nothing a probe looks for was created
        changed = [(probe, before, after) for probe, before, after
                   in zip(self.probes, window.before, now, strict=True) if before is not after]
        claimed = refused_fds()  # the network-blocked finding's, not leaks
        out: list[Leftover] = []
        for probe, before, after in changed:
            out.extend(probe.diff(before, after, claimed))
        if out and owned:
            out = self._servers_own(out)
            excluded = self._owned_keys()
            out = [left for left in out if left.key not in excluded]
        return out

    def _servers_own(self, leftovers: list[Leftover]) -> list[Leftover]:
        """A connection a server accepted is the server's. A fixture's server's joins what the
        fixture owns (a finding if it outlives the fixture's teardown); one accepted by a server
        older than the window is not the window's; the window's own server's stays its own. One
        whose client end is open in this process goes with that client, judged on its own."""
        keys = {left.key for left in leftovers}
        out = []
        for left in leftovers:
            server = server_key(left)
            owner = next((window for window in self._fixtures.values()
                          if server in window.owned), None) if server is not None else None
            if owner is not None:
                if not client_in_process(left):
                    owner.owned.add(left.key)
            elif server is None or server in keys:
                out.append(left)
        return out

    def _report(self, kind: str, leftovers: list[Leftover], test: str | None,
                location: Location | None, allowance: Mapping[str, Any] | None,
                owner: str | None = None, check: repeat.Check | None = None,
                unconfirmed: str | None = None) -> None:
        if kind != "leak-memory" and self._within(kind, leftovers):
            return
        self._keep(leftovers)
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
        if check is not None:
            details["confirmation"] = check.fields()
            if unconfirmed is None and kind != "leak-memory":
                again = [left.what for left in check.again if
                         _signature(left) in {_signature(x) for x in leftovers}]
                details["again"] = again
                message += f" (left again when run again: {check.summary()})"
        if unconfirmed is not None:
            # Not confirmed as growth: a note, never an error finding.
            severity = "warning"
            details["confirmed"] = False
            details["reason"] = unconfirmed
            message = f"not confirmed: {message} ({unconfirmed})"
        if allowance is not None:
            severity = "warning"
            details.update({"allowed": True, **allowance})
            message = f"allowed: {message} (reason: {allowance.get('reason') or 'none given'})"
        self.emit(Finding(  # the probes' kinds are leak-* finding kinds (typed str in probes.py)
            kind=cast(FindingKind, kind), test=test, severity=severity, message=message[:2000],
            location=location,
            culprit=Culprit(site.path, site.line, site.function) if site else None, details=details,
        ))


# -- resource warnings: one finding per root cause ---------------------------------------------

# What differs between two warnings about the same leak made again: descriptors, addresses (ports
# are ephemeral), ids and pids. What is left names the kind of object and what it was. Compiled
# (and cached by re) at the first warning, not at the import every run pays.
_VOLATILE = (
    (r"\bfd=-?\d+", "fd=…"),
    (r"\b(laddr|raddr)=(\([^)]*\)|'[^']*'|\S+?)(?=[,>])", r"\1=…"),
    (r"\b0x[0-9a-fA-F]+\b", "0x…"),
    (r"\b(subprocess|pid) \d+", r"\1 …"),
)


def normalised(text: str) -> str:
    """*text* with what changes from one occurrence of the same leak to the next blanked out."""
    for pattern, blank in _VOLATILE:
        text = re.sub(pattern, blank, text)
    return text


def resource_warning(category: str, text: str, *, test: str | None,
                     location: Location | None, site: Site | None, root: Path | None,
                     unraisable: bool = False, collected_after: str | None = None,
                     owner: str | None = None) -> Finding:
    """The ``resource-warning`` finding for one warning (or exception in a finaliser).

    ``details.group`` names its root cause, so that readers make one finding of every test it
    hit: where the object was made when a wrapper or tracemalloc saw it; else the warning's text,
    normalised, and where it was raised (not for tiergate's own collection, whose location is
    the test's, a different one each time)."""
    lines = text.strip().splitlines() or [""]
    head = lines[0] if unraisable else f"{category}: {lines[0]}"
    made = _where_made(site, root) if site is not None else None
    message = head[:400] + (f", created at {made}" if made else "")
    if collected_after is not None:
        message += f" (finalised when tiergate collected garbage after {collected_after})"
    if made:
        group = f"{category} created at {made}"
    elif collected_after is not None or location is None:
        group = f"{category}: {normalised(lines[0])}"
    else:
        group = f"{category}: {normalised(lines[0])} at {location.path}:{location.line}"
    details: dict[str, Any] = {"category": category, "text": "\n".join(lines)[:4000],
                               "group": group[:600]}
    if collected_after is not None:
        details["collected_by"] = "tiergate"
    if owner:
        details["owner"] = owner
    if site is not None:
        details["created"] = str(site)
    return Finding(
        kind="resource-warning", test=test, severity="warning", message=message[:2000],
        location=location,
        culprit=Culprit(site.path, site.line, site.function) if site is not None else None,
        details=details,
    )


def _where_made(site: Site, root: Path | None) -> str:
    path = site.path
    if root is not None:
        try:
            path = Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return f"{path}:{site.line} ({site.function})"


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


def _signature(left: Leftover) -> Any:
    from tiergate.plugin.leaks import repeat

    return repeat.signature(left)


def _memory_leftover(check: repeat.Check) -> Leftover:
    mib = sum(check.growth) / len(check.growth) / 2**20
    rss = sum(check.rss) / len(check.rss) / 2**20 if check.rss else 0.0
    sites = [{"site": str(site), "bytes": size} for site, size in check.sites]
    top = check.sites[0][0] if check.sites else None
    where = f"; top allocation {top}" if top else ""
    return Leftover("leak-memory", ("memory",),
                    f"Python-level memory still allocated grew {mib:.1f} MiB per run over "
                    f"{len(check.growth)} repeat runs (RSS {rss:.1f} MiB per run; "
                    f"{check.seconds:.2f}s){where}",
                    top, {"growth": check.growth, "rss_growth": check.rss,
                          "allocations": sites})


def _merge_held(leftovers: list[Leftover]) -> list[Leftover]:
    """One leaked resource, one finding: a socket or file a leaked thread holds (a server
    thread and its listening socket) is named in the thread's leftover, not on its own."""
    threads = [left for left in leftovers if left.kind == "leak-thread"]
    by_fd = {left.details["fd"]: left for left in leftovers
             if left.kind in ("leak-socket", "leak-fd") and "fd" in left.details}
    if not threads or not by_fd:
        return leftovers
    merged: set[int] = set()
    replaced: dict[int, Leftover] = {}
    for left in threads:
        thread = thread_of(left)
        if thread is None:
            continue
        held = sorted((held_fds(thread) & by_fd.keys()) - merged)
        if not held:
            continue
        merged.update(held)
        parts = [by_fd[fd] for fd in held]
        replaced[id(left)] = dataclasses.replace(
            left, what=f"{left.what}, holding " + "; ".join(part.what for part in parts),
            details={**left.details, "holds": [{"kind": part.kind, "what": part.what,
                                                 **part.details} for part in parts]})
    dropped = {id(by_fd[fd]) for fd in merged}
    return [replaced.get(id(left), left) for left in leftovers if id(left) not in dropped]


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
    from tiergate.plugin.leaks.probes import _proc_stat

    stat = _proc_stat(left.details["pid"])
    return stat is not None and stat[1] == left.details.get("start") and stat[0] not in "ZX"
