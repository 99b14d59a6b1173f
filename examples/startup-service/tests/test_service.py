import threading

import pytest
from startup_service import DatabaseUnavailable, Service, ServiceConfig, cache, telemetry


def test_start_runs_every_phase_in_order_and_stop_cleans_up(database):
    host, port = database
    config = ServiceConfig(db_host=host, db_port=port, db_timeout=2, cache_mb=2)
    service = Service(config, strict_shutdown=True)
    threads_before = set(threading.enumerate())

    service.start()
    try:
        assert [phase.name for phase in service.started] == [
            "config",
            "telemetry",
            "database",
            "cache",
            "helper",
        ]
        assert service.database.info is not None
        helper = service.helper.process
        assert helper is not None and helper.poll() is None
    finally:
        service.stop()

    assert not service.running
    assert helper.returncode == 0
    # (The fake database's session threads belong to the fixture, which joins them at teardown.)
    new_threads = set(threading.enumerate()) - threads_before
    assert "helper-monitor" not in {thread.name for thread in new_threads}


def test_context_manager_stops_the_service():
    before = cache.registered_bytes()

    with Service(ServiceConfig(cache_mb=1), strict_shutdown=True) as service:
        assert service.running
        helper = service.helper.process

    assert helper.returncode == 0
    assert cache.registered_bytes() == before


def test_strict_restarts_keep_memory_flat():
    before = cache.registered_bytes()
    service = Service(ServiceConfig(cache_mb=2, helper=False), strict_shutdown=True)

    for _ in range(3):
        service.start()
        service.stop()

    assert cache.registered_bytes() == before


def test_startup_records_phase_timings():
    with Service(ServiceConfig(cache_mb=0, helper=False), strict_shutdown=True):
        pass

    assert telemetry.flush()
    assert "startup.cache.seconds" in telemetry.totals()


def test_failed_database_validation_rolls_back(silent_database):
    host, port = silent_database
    service = Service(ServiceConfig(db_host=host, db_port=port, db_timeout=0.2, cache_mb=1))

    with pytest.raises(DatabaseUnavailable):
        service.start()

    assert not service.running
    assert service.helper.process is None  # the helper phase never ran


def test_starting_twice_is_an_error():
    service = Service(ServiceConfig(cache_mb=0, helper=False), strict_shutdown=True)

    with service, pytest.raises(RuntimeError, match="already running"):
        service.start()
