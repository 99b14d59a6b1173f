"""Against a real database server process on 127.0.0.1 (nightly tier)."""

import pytest
from startup_service import Service, ServiceConfig, cache, fakedb, telemetry, validate_database

pytestmark = pytest.mark.integration


def test_validate_against_the_database_server(database_server):
    info = validate_database(*database_server, timeout=5)

    assert (info.version, info.schema) == (fakedb.VERSION, fakedb.SCHEMA)


def test_full_startup_against_the_database_server(database_server):
    host, port = database_server
    config = ServiceConfig(db_host=host, db_port=port, db_timeout=5, cache_mb=4)

    with Service(config, strict_shutdown=True) as service:
        assert service.database.info is not None
        assert service.helper.process.poll() is None

    assert telemetry.flush()
    assert telemetry.totals().get("startup.database.seconds", 0) > 0


@pytest.mark.slow
def test_repeated_strict_restarts_release_everything(database_server):
    host, port = database_server
    service = Service(
        ServiceConfig(db_host=host, db_port=port, db_timeout=5, cache_mb=10),
        strict_shutdown=True,
    )
    before = cache.registered_bytes()

    for _ in range(5):
        service.start()
        service.stop()

    assert cache.registered_bytes() == before
