"""One test's peak memory in its own process, for its ``test-finish`` event.

``ru_maxrss`` is the process's high-water mark: read once at the end of each test (one
``getrusage`` call), a value above the last test's gives that test's peak, and nothing otherwise;
the supervisor's samples of the whole tree give the rest. No /proc
read: that would be an ``open`` audit event per test, which the leak probes would have to treat
as "something may have leaked". Standard library only: the plugin imports this on every run.
"""

from __future__ import annotations

import resource


def maxrss() -> int:
    """This process's peak resident set size so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
