"""Per-test leak findings: threads, processes, fds, sockets, memory, asyncio tasks, environment."""

from tiergate.plugin.leaks.watch import LeakWatch, WatchEveryTest

__all__ = ["LeakWatch", "WatchEveryTest"]
