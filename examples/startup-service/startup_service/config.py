"""Service configuration: a frozen value, read from the environment at the edge."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping


class ConfigError(ValueError):
    """A configuration value the service cannot start with."""


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    name: str = "startup-service"
    db_host: str = "127.0.0.1"
    # None: no database configured, the validation phase is skipped.
    db_port: int | None = None
    # None waits for the database's greeting as long as it takes. That is the historical default,
    # and the reason a silent database hangs start-up forever.
    db_timeout: float | None = None
    cache_mb: int = 30
    helper: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServiceConfig:
        """Read ``STARTUP_*`` variables; anything unset keeps its default."""
        values: dict[str, object] = {}
        try:
            if "STARTUP_DB_HOST" in environ:
                values["db_host"] = environ["STARTUP_DB_HOST"]
            if "STARTUP_DB_PORT" in environ:
                values["db_port"] = int(environ["STARTUP_DB_PORT"])
            if "STARTUP_DB_TIMEOUT" in environ:
                values["db_timeout"] = float(environ["STARTUP_DB_TIMEOUT"])
            if "STARTUP_CACHE_MB" in environ:
                values["cache_mb"] = int(environ["STARTUP_CACHE_MB"])
        except ValueError as exc:
            raise ConfigError(f"bad STARTUP_* variable: {exc}") from None
        if "STARTUP_HELPER" in environ:
            values["helper"] = environ["STARTUP_HELPER"].lower() not in ("0", "false", "no")
        return cls(**values)  # type: ignore[arg-type]

    def validate(self) -> None:
        # This service is a demo that only ever talks to a database on this machine.
        try:
            loopback = ipaddress.ip_address(self.db_host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"db_host {self.db_host!r}: the database must be on 127.0.0.0/8")
        if self.db_port is not None and not 0 < self.db_port < 65536:
            raise ConfigError(f"db_port {self.db_port}: use a TCP port, 1-65535")
        if self.db_timeout is not None and self.db_timeout <= 0:
            raise ConfigError(f"db_timeout {self.db_timeout}: use seconds above zero, or None")
        if self.cache_mb < 0:
            raise ConfigError(f"cache_mb {self.cache_mb}: use zero or more")
