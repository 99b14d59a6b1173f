"""What tiergate's own garbage collection and repeats set off, kept away from the tests.

The probes run ``gc.collect()`` to tell a leak from garbage, and a suspect test is run again to
tell a leak from first use. Finalisers then run inside tiergate: an unclosed file's or socket's
``ResourceWarning``, an exception raised in a ``__del__``. Left alone these reach the tests: under
``filterwarnings = error`` the warning becomes an exception in the finaliser, CPython hands it to
``sys.unraisablehook``, and pytest's hook raises it in whichever test runs next (an innocent one).

So tiergate collects inside ``caught()``: warnings are recorded instead of shown or raised, and
unraisable exceptions are recorded instead of passed on to pytest. The caller turns what was
recorded into ``resource-warning`` findings on the window the objects came from, or drops it (the
garbage of a repeat, whose original run was reported already).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

from tiergate.plugin.leaks.sites import REGISTRY, Site, site_of_traceback


@dataclasses.dataclass(frozen=True)
class Caught:
    category: str  # the warning's category, or the unraisable exception's type
    text: str  # what Python would have printed (first line first)
    site: Site | None  # where the object was allocated, when tracemalloc traces it
    unraisable: bool = False  # an exception in a finaliser, not a warning


def made_at(obj: object) -> Site | None:
    """Where *obj* was made: as the wrappers in ``sites`` saw it, else as tracemalloc did."""
    if obj is None:
        return None
    return REGISTRY.site_of(obj) or _allocated_at(obj)


def _allocated_at(obj: object) -> Site | None:
    import _tracemalloc  # built in; PYTHONTRACEMALLOC traces without importing tracemalloc

    if not _tracemalloc.is_tracing():
        return None
    import tracemalloc

    try:
        return site_of_traceback(tracemalloc.get_object_traceback(obj))
    except Exception:  # pragma: no cover - an object tracemalloc cannot look at
        return None


def _from_unraisable(unraisable: Any) -> Caught:
    err_msg = unraisable.err_msg or "Exception ignored in"
    try:
        what = repr(unraisable.object)
    except Exception:
        what = f"<{type(unraisable.object).__name__} object>"
    lines = traceback.format_exception(unraisable.exc_type, unraisable.exc_value,
                                       unraisable.exc_traceback)
    name = getattr(unraisable.exc_type, "__name__", "Exception")
    head = f"{name}: {unraisable.exc_value}" if unraisable.exc_value is not None else name
    text = f"{head} ({err_msg.lower()} {what})\n" + "".join(lines)
    # The object is often the finaliser itself (a __del__ that raised): where a function was
    # made is no place to fix anything.
    obj = unraisable.object
    site = None if callable(obj) and not isinstance(obj, type) else made_at(obj)
    return Caught(name, text[:4000], site, unraisable=True)


def _from_warning(message: warnings.WarningMessage) -> Caught:
    # The record holds the source (the object being finalised) alive, so its id is still its
    # own and tracemalloc still knows where it was allocated.
    return Caught(message.category.__name__, str(message.message)[:4000],
                  made_at(message.source))


@contextlib.contextmanager
def caught(*, repeat: bool = False) -> Iterator[list[Caught]]:
    """Record, and keep from the tests, the warnings and unraisable exceptions raised inside.

    Without *repeat* (tiergate's own collection): every warning is recorded, whatever the
    filters say, and only unraisable exceptions raised in this thread are taken (the collection
    runs finalisers here; another thread's are its own business). With *repeat* (a test run again
    under its own filters, so that it behaves as it did): the filters in force still decide,
    warnings that would be shown are recorded, and every thread's unraisable exceptions and
    uncaught thread exceptions are taken: the whole repeat is tiergate's doing."""
    out: list[Caught] = []
    me = threading.get_ident()
    previous_unraisable = sys.unraisablehook
    previous_excepthook = threading.excepthook

    def unraisable_hook(unraisable: Any) -> None:
        if not repeat and threading.get_ident() != me:
            previous_unraisable(unraisable)
            return
        try:
            out.append(_from_unraisable(unraisable))
        except Exception:  # pragma: no cover
            pass

    def thread_hook(args: Any) -> None:
        out.append(Caught(getattr(args.exc_type, "__name__", "Exception"),
                          "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                             args.exc_traceback))[:4000], None))

    with warnings.catch_warnings(record=True) as log:
        if not repeat:
            warnings.simplefilter("always")
        sys.unraisablehook = unraisable_hook
        if repeat:
            threading.excepthook = thread_hook
        try:
            yield out
        finally:
            if sys.unraisablehook is unraisable_hook:
                sys.unraisablehook = previous_unraisable
            if threading.excepthook is thread_hook:
                threading.excepthook = previous_excepthook
            out.extend(_from_warning(message) for message in log)
            log.clear()
