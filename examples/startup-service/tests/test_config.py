import pytest
from startup_service import ConfigError, ServiceConfig


def test_defaults_need_no_environment():
    config = ServiceConfig.from_env({})

    assert config == ServiceConfig()
    assert config.db_port is None
    assert config.db_timeout is None


def test_environment_overrides_defaults():
    config = ServiceConfig.from_env(
        {"STARTUP_DB_PORT": "5433", "STARTUP_DB_TIMEOUT": "2.5", "STARTUP_HELPER": "no"}
    )

    assert config.db_port == 5433
    assert config.db_timeout == 2.5
    assert config.helper is False


def test_monkeypatched_environment_is_read_and_restored(monkeypatch):
    # The clean way to test environment handling: monkeypatch puts the variable back afterwards.
    monkeypatch.setenv("STARTUP_CACHE_MB", "4")

    assert ServiceConfig.from_env().cache_mb == 4


def test_bad_number_in_environment_is_a_config_error():
    with pytest.raises(ConfigError, match="STARTUP_"):
        ServiceConfig.from_env({"STARTUP_DB_PORT": "five"})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("db_host", "10.0.0.5", "127.0.0.0/8"),
        ("db_host", "db.internal", "127.0.0.0/8"),
        ("db_port", 70000, "TCP port"),
        ("db_timeout", 0, "above zero"),
        ("cache_mb", -1, "zero or more"),
    ],
)
def test_validate_rejects(field, value, message):
    config = ServiceConfig(**{field: value})

    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_validate_accepts_any_loopback_address():
    ServiceConfig(db_host="127.0.0.2", db_port=5432, db_timeout=1.0).validate()
