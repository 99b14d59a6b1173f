import time

import pytest
from startup_service import DatabaseUnavailable, cache, fakedb, telemetry, validate_database
from startup_service.helper import count_primes


def test_telemetry_aggregates_recorded_values():
    before = telemetry.totals().get("test.requests", 0.0)

    telemetry.record("test.requests")
    telemetry.record("test.requests", 2)

    assert telemetry.flush()
    assert telemetry.totals()["test.requests"] == before + 3


def test_database_validation_reads_version_and_schema(database):
    info = validate_database(*database, timeout=2)

    assert info.version == fakedb.VERSION
    assert info.schema == fakedb.SCHEMA


def test_database_validation_with_timeout_gives_up_on_a_silent_database(silent_database):
    # The same silent database as the demonstration that hangs, but with a timeout: a clear error.
    began = time.monotonic()

    with pytest.raises(DatabaseUnavailable, match=r"did not answer within 0\.2s"):
        validate_database(*silent_database, timeout=0.2)

    assert time.monotonic() - began < 5  # gave up, not hung: a bound, not a benchmark


def test_database_validation_rejects_an_old_schema():
    with (
        fakedb.serving(schema=2) as (host, port),
        pytest.raises(DatabaseUnavailable, match="schema 2, need 3"),
    ):
        validate_database(host, port, timeout=2)


def test_database_validation_reports_a_closed_port():
    with fakedb.serving() as (host, port):
        pass  # stopped: nothing listens on the port any more

    with pytest.raises(DatabaseUnavailable, match="unreachable"):
        validate_database(host, port, timeout=2)


def test_cache_warm_up_registers_until_released():
    before = cache.registered_bytes()

    warm = cache.warm_up(2)
    assert warm.size_bytes == 2 * cache.BLOCK_BYTES
    assert cache.registered_bytes() == before + warm.size_bytes

    cache.release(warm)
    assert cache.registered_bytes() == before


def test_helper_counts_primes():
    assert count_primes(10) == 4
    assert count_primes(100) == 25
