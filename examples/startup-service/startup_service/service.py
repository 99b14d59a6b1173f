"""The start-up orchestrator: phases run in order on start, and are stopped in reverse on stop.

config → telemetry → database validation → cache warm-up → worker helper

``Service(strict_shutdown=True)`` releases everything a start acquired. The default keeps the warm
cache registered "for a fast restart" — but every start warms a new one, so each start/stop cycle
leaves another ``cache_mb`` behind.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import IO, Protocol

from startup_service import cache, telemetry
from startup_service.config import ServiceConfig
from startup_service.database import DatabaseInfo, validate_database
from startup_service.launch import module_command

HELPER_READY_TIMEOUT = 10.0
HELPER_STOP_TIMEOUT = 5.0
WARM_UP_JOB = 20_000


class Phase(Protocol):
    name: str

    def start(self, config: ServiceConfig) -> None: ...

    def stop(self, *, strict: bool) -> None: ...


class ConfigPhase:
    name = "config"

    def start(self, config: ServiceConfig) -> None:
        config.validate()

    def stop(self, *, strict: bool) -> None:
        pass


class TelemetryPhase:
    name = "telemetry"

    def start(self, config: ServiceConfig) -> None:
        telemetry.record(f"{config.name}.starts")

    def stop(self, *, strict: bool) -> None:
        telemetry.flush()


class DatabasePhase:
    name = "database"

    def __init__(self) -> None:
        self.info: DatabaseInfo | None = None

    def start(self, config: ServiceConfig) -> None:
        if config.db_port is None:
            return
        self.info = validate_database(config.db_host, config.db_port, timeout=config.db_timeout)

    def stop(self, *, strict: bool) -> None:
        self.info = None


class CachePhase:
    name = "cache"

    def __init__(self) -> None:
        self.warm: cache.WarmCache | None = None

    def start(self, config: ServiceConfig) -> None:
        self.warm = cache.warm_up(config.cache_mb)

    def stop(self, *, strict: bool) -> None:
        if strict and self.warm is not None:
            cache.release(self.warm)
        # Not strict: the cache stays registered for a fast restart, and the next start warms a
        # new one anyway. This is the memory that grows across restarts.
        self.warm = None


class HelperPhase:
    """Starts the worker helper and a thread that reads its replies into telemetry."""

    name = "helper"

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self._monitor: threading.Thread | None = None

    def start(self, config: ServiceConfig) -> None:
        if not config.helper:
            return
        argv, env = module_command("startup_service.helper")
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.process = process
        if _read_line(process.stdout, HELPER_READY_TIMEOUT) != "ready":
            self.stop(strict=True)
            raise RuntimeError("the worker helper did not start")
        self._monitor = threading.Thread(target=self._watch, name="helper-monitor", daemon=True)
        self._monitor.start()
        self._send(f"job {WARM_UP_JOB}")

    def stop(self, *, strict: bool) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        self._send_to(process, "quit")
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(HELPER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._monitor is not None:
            self._monitor.join(HELPER_STOP_TIMEOUT)
            self._monitor = None
        if process.stdout:
            process.stdout.close()

    def _send(self, line: str) -> None:
        if self.process is not None:
            self._send_to(self.process, line)

    @staticmethod
    def _send_to(process: subprocess.Popen[str], line: str) -> None:
        try:
            assert process.stdin is not None
            process.stdin.write(line + "\n")
            process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the helper is gone already; stop() will reap it

    def _watch(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            if line.startswith("done "):
                telemetry.record("helper.jobs_done")


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    """One line from *stream*, or "" when it ends or nothing arrives within *timeout*."""
    if stream is None:
        return ""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].strip() if result else ""


class Service:
    def __init__(self, config: ServiceConfig, *, strict_shutdown: bool = False) -> None:
        self.config = config
        self.strict_shutdown = strict_shutdown
        self.database = DatabasePhase()
        self.cache = CachePhase()
        self.helper = HelperPhase()
        self.phases: list[Phase] = [
            ConfigPhase(),
            TelemetryPhase(),
            self.database,
            self.cache,
            self.helper,
        ]
        self.started: list[Phase] = []

    @property
    def running(self) -> bool:
        return bool(self.started)

    def start(self) -> None:
        if self.started:
            raise RuntimeError(f"{self.config.name} is already running")
        for phase in self.phases:
            began = time.perf_counter()
            try:
                phase.start(self.config)
            except BaseException:
                self.stop()  # roll back the phases that did start
                raise
            self.started.append(phase)
            telemetry.record(f"startup.{phase.name}.seconds", time.perf_counter() - began)

    def stop(self) -> None:
        while self.started:
            self.started.pop().stop(strict=self.strict_shutdown)

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
