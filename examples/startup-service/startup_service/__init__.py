"""startup-service: a small service whose start-up runs in phases.

config → telemetry → database validation → cache warm-up → worker helper
"""

from startup_service.config import ConfigError, ServiceConfig
from startup_service.database import DatabaseInfo, DatabaseUnavailable, validate_database
from startup_service.service import Service

__all__ = [
    "ConfigError",
    "DatabaseInfo",
    "DatabaseUnavailable",
    "Service",
    "ServiceConfig",
    "validate_database",
]
