"""The dirty set: one PEP 578 audit hook that says which probes may see something new.

Taking every probe's snapshot around every test is most of what leak-watching costs, and on a
typical test nothing a probe looks for is created at all. So the watch keeps the last snapshot of
each probe and takes a new one only when that probe is *dirty*: an audit event that can create what
it looks for was raised (``open``, ``socket.__new__``, ``subprocess.Popen``, ``os.putenv`` ...), or
the probe's cheap token changed (a counter, a length: what no audit event announces).

The hook is installed once per process and never removed (PEP 578 hooks cannot be); its body is
one dict lookup for every event it does not watch, which is nearly all of them. Where the network
guard's hook is already in the process it is called from that one (``observe``), so the process
has one hook: the guard's decides whether an operation may happen, this function only notes that
it did, and each can be on without the other.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

# Probes (by the names ``watch.Current`` gives them) marked dirty since their last snapshot.
# ``set.update`` and ``set.discard`` are single calls under the GIL: the hook may run in any thread.
DIRTY: set[str] = set()

# audit event -> the probes it marks. Filled by ``watch()``; empty (so the hook does nothing) when
# no watch is active, e.g. after an in-process pytest run ended.
_WATCHED: dict[str, tuple[str, ...]] = {}

# First arguments of watched events that mark nothing: what pytest and tiergate themselves do
# around every test (``Probe.quiet``): PYTEST_CURRENT_TEST set and unset, /proc/self/statm read.
_QUIET: frozenset[object] = frozenset()

_installed = False


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event in _WATCHED:
        try:
            if args[0] in _QUIET:
                return
        except Exception:  # no argument, or an unhashable one: never fail the audited call
            pass
        DIRTY.update(_WATCHED[event])


def watch(events: Mapping[str, tuple[str, ...]], quiet: Iterable[object] = ()) -> None:
    """Watch *events* (audit event -> the probes it marks) from now on; all start dirty."""
    global _installed, _QUIET
    _QUIET = frozenset(quiet)
    _WATCHED.clear()
    _WATCHED.update(events)
    for names in events.values():
        DIRTY.update(names)
    if not _installed:
        _installed = True
        if not _share_guard_hook():
            sys.addaudithook(_hook)


def _share_guard_hook() -> bool:
    """Ride on the network guard's hook when it is in this process: one audit hook, not two
    (each costs a Python call on every audited event, about twenty per test)."""
    from tiergate.plugin.netguard import core

    return bool(core().observe(_WATCHED, _hook))


def unwatch() -> None:
    _WATCHED.clear()
