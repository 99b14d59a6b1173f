"""Demonstrations: each test here shows one failure mode on purpose. Do not fix them.

They are what tiergate is for. Under ``tiergate run --tier fast`` each one becomes a finding (see
README.md); under plain pytest, the first one hangs forever and the others pass without a word —
which is the problem.
"""

import os

from startup_service import Service, ServiceConfig, validate_database


def test_database_validation_without_timeout(silent_database):
    # DEMONSTRATION: hangs. The database accepts the connection and never greets; with no timeout,
    # validate_database() waits in recv() forever. tiergate times the test out after 3 s and names
    # the culprit line, in startup_service/database.py.
    validate_database(*silent_database)


def test_service_started_and_never_stopped():
    # DEMONSTRATION: leaks. Nothing calls stop(), so the worker helper process (and its pipes) and
    # the "helper-monitor" thread outlive the test.
    service = Service(ServiceConfig(cache_mb=1))
    service.start()

    assert service.helper.process.poll() is None


def test_restarts_grow_memory():
    # DEMONSTRATION: leaks memory. Without strict_shutdown, stop() keeps each warm cache registered
    # and the next start() warms a new one: about 30 MB more after every start/stop cycle.
    service = Service(ServiceConfig(cache_mb=30, helper=False))

    for _ in range(3):
        service.start()
        service.stop()


def test_config_from_environment_without_restoring():
    # DEMONSTRATION: changes the environment for every later test. The variable is set and never
    # put back (test_config.py shows the clean way, with monkeypatch).
    os.environ["STARTUP_DB_TIMEOUT"] = "2.5"

    assert ServiceConfig.from_env().db_timeout == 2.5
