"""Per-test leak findings: threads, processes, fds, sockets, memory, asyncio tasks, environment."""

from tiergate.plugin.leaks.watch import LeakWatch

__all__ = ["LeakWatch"]
